"""The JSONL reader/writer (xlt/io.py): the library contract, plus property tests of the round trip.

The CLI side of the same contract (stdin, exit codes, `| head`) is in test_pair.py and test_cli.py.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlt.errors import InputError, OutputExistsError, RecordError, UsageError, XltError
from xlt.io import (SkipReport, atomic_path, check_output, dumps, iter_located, open_output, parse_shard,
                    read_records, take_shard, write_records)


def write_lines(path, lines: list[str | bytes]) -> str:
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else line.encode("utf-8"))
            fh.write(b"\n")
    return str(path)


def rec(i: int, **extra) -> dict:
    return {"id": f"r-{i}", "lang": "en", "text": f"text number {i}", **extra}


def leftovers(directory) -> list[str]:
    """Temporary files `atomic_path` might have left behind."""
    return [name for name in os.listdir(directory) if ".tmp-" in name or ".old-" in name]


# --- reading ---------------------------------------------------------------------------------

def test_reads_records_in_order_and_ignores_blank_lines(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0)), "", "   ", json.dumps(rec(1))])
    assert list(read_records([path])) == [rec(0), rec(1)]


def test_locations_count_blank_lines(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0)), "", json.dumps(rec(1))])
    assert [where for where, _ in iter_located([path])] == [f"{path}:1", f"{path}:3"]


def test_empty_file_yields_nothing(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert list(read_records([str(path)])) == []


def test_several_files_are_concatenated(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0))])
    b = write_lines(tmp_path / "b.jsonl", [json.dumps(rec(1)), json.dumps(rec(2))])
    assert [r["id"] for r in read_records([a, b])] == ["r-0", "r-1", "r-2"]


def test_crlf_and_byte_order_mark_are_accepted(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec(0)).encode() + b"\r\n" + json.dumps(rec(1)).encode() + b"\r\n")
    assert list(read_records([str(path)])) == [rec(0), rec(1)]


def test_utf8_text_is_decoded(tmp_path):
    r = {"id": "x", "lang": "hi", "text": "और उसने कहा, माँ, मैं घर आया हूं।"}
    path = tmp_path / "hi.jsonl"
    path.write_text(json.dumps(r, ensure_ascii=False) + "\n", encoding="utf-8")
    assert list(read_records([str(path)])) == [r]


@pytest.mark.parametrize("line, message", [
    (b'{"id": "a", "text": ', "invalid JSON: Expecting value at column 21"),
    (b'{"id": "a"} trailing', "invalid JSON: Extra data at column 13"),
    (b'{"id": "a", "text": "caf\xe9"}', "invalid UTF-8 at byte 24"),
    (b'["id", "a"]', "expected a JSON object, got list"),
    (b'"just a string"', "expected a JSON object, got str"),
    (b"42", "expected a JSON object, got int"),
    (b"null", "expected a JSON object, got null"),
])
def test_bad_line_is_an_input_error_with_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(rec(0)), line])
    with pytest.raises(InputError) as err:
        list(read_records([path]))
    assert str(err.value) == f"{path}:2: {message}"
    assert err.value.exit_code == 2


def test_reading_is_lazy(tmp_path):
    # Streaming: the first record comes out before the reader ever looks at the bad line.
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0)), "not json"])
    records = read_records([path])
    assert next(records) == rec(0)
    with pytest.raises(InputError, match=":2: invalid JSON"):
        next(records)


def test_validate_errors_get_the_location(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0)), json.dumps({"id": "r-1"})])

    def validate(r):
        if "text" not in r:
            raise RecordError('missing field "text"')

    with pytest.raises(InputError) as err:
        list(read_records([path], validate=validate))
    assert str(err.value) == f'{path}:2: missing field "text"'


def test_skip_mode_counts_and_locates_bad_records(tmp_path):
    lines = [json.dumps(rec(0)), "{oops", json.dumps(rec(2)), b"\xff\xfe", "[1]", json.dumps(rec(5))]
    path = write_lines(tmp_path / "a.jsonl", lines)
    skipped = SkipReport()
    got = list(read_records([path], on_error="skip", skipped=skipped))
    assert [r["id"] for r in got] == ["r-0", "r-2", "r-5"]
    assert skipped.count == 3
    assert [e.split(": ")[0] for e in skipped.examples] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    summary = skipped.summary()
    assert summary is not None and summary.startswith("skipped 3 bad record(s): ")
    assert f"{path}:4: invalid UTF-8 at byte 0" in summary


def test_skip_report_keeps_only_the_first_examples():
    report = SkipReport(max_examples=2)
    for i in range(5):
        report.add(f"f:{i + 1}", "bad")
    assert report.count == 5
    assert report.summary() == "skipped 5 bad record(s) (first 2 shown): f:1: bad; f:2: bad"
    assert SkipReport().summary() is None


def test_skip_mode_without_a_report_still_skips(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", ["{oops", json.dumps(rec(1))])
    assert [r["id"] for r in read_records([path], on_error="skip")] == ["r-1"]


def test_unknown_on_error_is_a_usage_error(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0))])
    with pytest.raises(UsageError, match="--on-error must be one of fail, skip"):
        list(read_records([path], on_error="ignore"))


def test_stdin_only_once():
    with pytest.raises(UsageError, match="stdin"):
        list(read_records(["-", "-"]))


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        list(read_records([missing]))


def test_missing_second_file_fails_before_any_record(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0))])
    records = read_records([a, str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="no such file"):
        next(records)


def test_directory_is_not_an_input(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        list(read_records([str(tmp_path)]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file_is_an_input_error(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec(0))])
    os.chmod(path, 0)
    with pytest.raises(InputError, match="cannot open"):
        list(read_records([path]))


def test_gzip_input(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(3):
            fh.write(json.dumps(rec(i)) + "\n")
    assert list(read_records([str(path)])) == [rec(0), rec(1), rec(2)]


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    gz = tmp_path / "compressed.jsonl"
    gz.write_bytes(gzip.compress((json.dumps(rec(0)) + "\n").encode()))
    plain = write_lines(tmp_path / "plain.jsonl.gz", [json.dumps(rec(1))])
    assert list(read_records([str(gz), plain])) == [rec(0), rec(1)]


def test_bad_json_inside_gzip_names_the_line(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": "a"}\n{bad\n'))
    with pytest.raises(InputError) as err:
        list(read_records([str(path)]))
    assert str(err.value).startswith(f"{path}:2: invalid JSON")


def test_truncated_gzip_is_an_input_error(tmp_path):
    data = gzip.compress(("\n".join(json.dumps(rec(i)) for i in range(200)) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        list(read_records([str(path)]))


# --- writing ---------------------------------------------------------------------------------

def test_write_records_returns_the_count_and_writes_utf8_lines(tmp_path):
    out = tmp_path / "out.jsonl"
    records = [rec(0), {"id": "x", "lang": "ru", "text": "Привет, мир"}]
    with open_output(str(out), force=False) as fh:
        assert write_records(records, fh) == 2
    raw = out.read_bytes()
    assert raw.decode("utf-8").splitlines() == [json.dumps(r, ensure_ascii=False) for r in records]
    assert "Привет".encode() in raw  # UTF-8 as is, not \u-escaped
    assert raw.endswith(b"\n") and b"\r" not in raw


def test_output_file_gets_ordinary_permissions(tmp_path):
    out = tmp_path / "out.jsonl"
    with open_output(str(out), force=False) as fh:
        write_records([rec(0)], fh)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 & ~mask


def test_gzip_output(tmp_path):
    out = tmp_path / "out.jsonl.gz"
    with open_output(str(out), force=False) as fh:
        write_records([rec(0), rec(1)], fh)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_records([str(out)])) == [rec(0), rec(1)]


def test_failed_write_leaves_no_file_and_no_temp(tmp_path):
    out = tmp_path / "out.jsonl"

    def records():
        yield rec(0)
        raise InputError("in.jsonl:2: invalid JSON")

    with pytest.raises(InputError):
        with open_output(str(out), force=False) as fh:
            write_records(records(), fh)
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with open_output(str(out), force=True) as fh:
            fh.write("new\n")
            raise KeyboardInterrupt
    assert out.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(OutputExistsError) as err:
        with open_output(str(out), force=False):
            pytest.fail("the body must not run")
    assert err.value.exit_code == 2
    assert str(err.value) == f"output {out} exists; pass --force to overwrite it"
    assert out.read_text() == "old\n"
    with pytest.raises(OutputExistsError):
        check_output(str(out), force=False)
    check_output(str(out), force=True)
    check_output(None, force=False)
    check_output("-", force=False)


def test_force_overwrites(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with open_output(str(out), force=True) as fh:
        write_records([rec(0)], fh)
    assert list(read_records([str(out)])) == [rec(0)]
    assert leftovers(tmp_path) == []


def test_output_appearing_meanwhile_is_not_clobbered(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(OutputExistsError):
        with open_output(str(out), force=False) as fh:
            fh.write("new\n")
            out.write_text("someone else's\n")
    assert out.read_text() == "someone else's\n"
    assert leftovers(tmp_path) == []


def test_a_file_output_never_replaces_a_directory(tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="is a directory"):
        with open_output(str(target), force=True) as fh:
            fh.write("x\n")
    assert (target / "keep.txt").read_text() == "precious"
    assert leftovers(tmp_path) == []


def test_named_pipe_output_is_written_in_place(tmp_path):
    # A FIFO (like /dev/null or /dev/stdout) is written to, never renamed over, even with force.
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    check_output(str(fifo), force=False)  # nothing to clobber: no --force needed
    with open_output(str(fifo), force=True) as fh:
        write_records([rec(0), rec(1)], fh)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == [(json.dumps(rec(0)) + "\n" + json.dumps(rec(1)) + "\n").encode()]
    assert leftovers(tmp_path) == []
    with pytest.raises(UsageError, match="device or pipe"):
        with atomic_path(str(fifo), force=True):
            pass
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_output_parent_directories_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "out.jsonl"
    with open_output(str(out), force=False) as fh:
        write_records([rec(0)], fh)
    assert out.exists()


def test_atomic_directory(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_path(str(target), force=False, is_dir=True) as tmp:
        assert not target.exists()
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            fh.write("{}")
    assert (target / "meta.json").read_text() == "{}"
    with pytest.raises(OutputExistsError, match="checkpoint .* exists"):
        with atomic_path(str(target), force=False, is_dir=True, what="checkpoint"):
            pass
    with atomic_path(str(target), force=True, is_dir=True) as tmp:
        with open(os.path.join(tmp, "new.json"), "w") as fh:
            fh.write("{}")
    assert sorted(os.listdir(target)) == ["new.json"]
    assert leftovers(tmp_path) == []


def test_atomic_directory_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target), force=True, is_dir=True) as tmp:
            open(os.path.join(tmp, "half.bin"), "w").close()
            raise RuntimeError("training diverged")
    assert os.listdir(target) == ["old.json"]
    assert leftovers(tmp_path) == []


def test_atomic_directory_replaces_a_file_with_force(tmp_path):
    target = tmp_path / "ckpt"
    target.write_text("a file")
    with atomic_path(str(target), force=True, is_dir=True) as tmp:
        open(os.path.join(tmp, "meta.json"), "w").close()
    assert target.is_dir() and os.listdir(target) == ["meta.json"]
    assert leftovers(tmp_path) == []


def test_lone_surrogate_is_bad_input_naming_file_and_line(tmp_path):
    # Valid JSON ("\ud800") that is not text (no UTF-8 encoding): a record error like any other.
    path = write_lines(tmp_path / "in.jsonl", [json.dumps(rec(0)), r'{"id": "a", "text": "x\ud800y"}', json.dumps(rec(1))])
    with pytest.raises(InputError, match=r"in.jsonl:2: field \"text\" holds a lone surrogate"):
        list(read_records([path]))
    skipped = SkipReport()
    assert [r["id"] for r in read_records([path], on_error="skip", skipped=skipped)] == [rec(0)["id"], rec(1)["id"]]
    assert skipped.count == 1 and "in.jsonl:2" in skipped.examples[0]


def test_a_valid_surrogate_pair_is_text(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [r'{"id": "a", "text": "x\ud83d\ude00y"}'])
    assert list(read_records([path]))[0]["text"] == "x\U0001F600y"


def test_library_records_with_a_lone_surrogate_are_written_escaped(tmp_path):
    out = tmp_path / "out.jsonl"
    with open_output(str(out), force=False) as fh:
        assert write_records([{"id": "a", "text": "x\ud800y"}], fh) == 1
    assert out.read_bytes().decode("utf-8").splitlines()[0] == r'{"id": "a", "text": "x\ud800y"}'


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-2E+999"])
def test_non_finite_numbers_are_bad_input(tmp_path, literal):
    path = write_lines(tmp_path / "in.jsonl", [json.dumps(rec(0)), '{"id": "b", "text": "t", "teacher": {"logits": [1.0, %s]}}' % literal])
    with pytest.raises(InputError, match=r"in.jsonl:2: .*(non-finite|not a finite number)"):
        list(read_records([path]))
    skipped = SkipReport()
    assert len(list(read_records([path], on_error="skip", skipped=skipped))) == 1 and skipped.count == 1


def test_large_finite_numbers_are_numbers(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", ['{"id": "b", "x": 1e300, "y": 1E39}'])
    assert list(read_records([path]))[0]["x"] == 1e300


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_never_written(tmp_path, value):
    out = tmp_path / "out.jsonl"
    with pytest.raises(XltError, match="non-finite"):
        with open_output(str(out), force=False) as fh:
            write_records([rec(0), {"id": "x", "v": [1.0, value]}], fh)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- property tests: write then read gives the same records -----------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
json_records = st.dictionaries(st.text(), json_values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(json_records, max_size=8), suffix=st.sampled_from([".jsonl", ".jsonl.gz"]))
def test_round_trip(tmp_path, records, suffix):
    path = str(tmp_path / f"round{suffix}")
    with open_output(path, force=True) as fh:
        assert write_records(records, fh) == len(records)
    assert list(read_records([path])) == records


@settings(max_examples=300, deadline=None)
@given(record=json_records)
def test_dumps_is_json_dumps(record):
    # dumps uses a prebuilt C encoder for speed; it must write exactly what json.dumps writes.
    assert dumps(record) == json.dumps(record, ensure_ascii=False)
    assert "\n" not in dumps(record)


def test_dumps_keeps_json_dumps_behaviour_on_odd_values():
    assert dumps({"y": -0.0, 1: None}) == '{"y": -0.0, "1": null}'
    with pytest.raises(XltError, match="non-finite"):  # never the invalid JSON `Infinity`
        dumps({"x": math.inf})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises((ValueError, RecursionError)):  # never a hang
        dumps(loop)
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        dumps({"s": {1}})
    assert dumps({"ok": [1]}) == '{"ok": [1]}'  # a failed call leaves no state behind


def test_dumps_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    records = [{"id": str(i), "nested": {"a": [{"b": i}] * 3}} for i in range(2000)]
    with ThreadPoolExecutor(4) as pool:
        lines = list(pool.map(dumps, records))
    assert lines == [json.dumps(r, ensure_ascii=False) for r in records]


# --- shards ----------------------------------------------------------------------------------

def test_parse_shard():
    assert parse_shard(None) is None
    assert parse_shard("1/1") == (1, 1)
    assert parse_shard("3/8") == (3, 8)
    for bad in ["0/4", "5/4", "1/0", "a/b", "2", "1/2/3"]:
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


@given(n=st.integers(min_value=1, max_value=7), size=st.integers(min_value=0, max_value=40))
def test_shards_partition_the_input_round_robin(n, size):
    records = [{"i": i} for i in range(size)]
    shards = [list(take_shard(iter(records), (k, n))) for k in range(1, n + 1)]
    assert sorted(r["i"] for shard in shards for r in shard) == list(range(size))
    for k, shard in enumerate(shards, start=1):
        assert all(r["i"] % n == k - 1 for r in shard)
    assert list(take_shard(iter(records), None)) == records
