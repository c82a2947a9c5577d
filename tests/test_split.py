"""`xlt split`: deterministic key-hashed partitions, meta keys, the stage contract."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlt.errors import InputError, UsageError
from xlt.split import Part, choose, get_path, parse_parts, split_stream, unit_hash


def write_jsonl(path: Path, rows: list[dict], raw_lines: dict[int, bytes] | None = None) -> str:
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    for lineno, raw in (raw_lines or {}).items():
        lines.insert(lineno - 1, raw)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def nli(lang: str, i: int, group: int | None = None) -> dict:
    rec = {"id": f"x-{i}", "lang": lang, "premise": f"p{i} {lang}", "hypothesis": f"h{i} {lang}", "label": "neutral"}
    if group is not None:
        rec["src"] = {"lang": "en", "premise": f"premise {group}", "hypothesis": "h"}
    return rec


def read(path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]


def ids(path) -> list[str]:
    return [r["id"] for r in read(path)]


def one_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr.decode()
    assert len(lines) == 1, lines
    prefix = "xlt split: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


# --- the library ---------------------------------------------------------------------------------

def test_unit_hash_golden_values():
    # the first 8 bytes of sha256("SEED\x00KEY") over 2**64
    import hashlib

    digest = hashlib.sha256(b"0\x00a").digest()
    assert unit_hash(0, "a") == int.from_bytes(digest[:8], "big") / 2.0**64
    assert 0 <= unit_hash(0, "a") < 1
    assert unit_hash(0, "a") != unit_hash(1, "a")
    assert unit_hash(5, "x-1") == unit_hash(5, "x-1")


def test_choose_by_cumulative_bounds():
    bounds = [0.2, 0.5, 1.0]
    assert [choose(u, bounds) for u in (0.0, 0.1999, 0.2, 0.49, 0.5, 0.99999)] == [0, 0, 1, 1, 2, 2]


def test_parse_parts():
    assert parse_parts(["a.jsonl:0.2", "b.jsonl:0.8"]) == [Part("a.jsonl", 0.2), Part("b.jsonl", 0.8)]
    # the last colon separates the fraction; float rounding within the tolerance is accepted
    assert parse_parts(["c:/x.jsonl:0.7", "y:0.2", "z:0.1"])[0] == Part("c:/x.jsonl", 0.7)
    for bad, msg in [(["a.jsonl"], "PATH:FRACTION"), (["a.jsonl:x"], "not a number"), (["a:0", "b:1"], "(0, 1]"),
                     (["a:0.5", "b:0.4"], "add up to 1, not 0.5 + 0.4 = 0.9"), (["a:0.5", "a:0.5"], "twice"),
                     (["-:0.5", "-:0.5"], "twice"), ([], "at least one"), (["a:nan"], "(0, 1]")]:
        with pytest.raises(UsageError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
            parse_parts(bad)


def test_get_path():
    rec = {"id": "1", "src": {"premise": "p"}}
    assert get_path(rec, "src.premise") == "p"
    from xlt.errors import RecordError

    with pytest.raises(RecordError, match='missing field "src.hypothesis"'):
        get_path(rec, "src.hypothesis")
    with pytest.raises(RecordError, match='missing field "id.x"'):
        get_path(rec, "id.x")


def test_library_split_is_a_partition_with_the_expected_shares(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", i) for i in range(2000)])
    a, b, c = (str(tmp_path / f"{x}.jsonl") for x in "abc")
    parts = parse_parts([f"{a}:0.2", f"{b}:0.5", f"{c}:0.3"])
    with contextlib.ExitStack() as stack:
        outs = {p.path: stack.enter_context(open(p.path, "w", encoding="utf-8")) for p in parts}
        report = split_stream([src], outs, parts=parts, seed=3)
    got = [ids(a), ids(b), ids(c)]
    assert report.counts == {a: len(got[0]), b: len(got[1]), c: len(got[2])} and report.total == 2000
    assert sorted(sum(got, [])) == sorted(f"x-{i}" for i in range(2000))  # every record exactly once
    # each id lands where its hash says; shares close to the fractions (binomial, 2000 draws)
    for i, part in enumerate(got):
        for rid in part:
            assert choose(unit_hash(3, rid), [0.2, 0.7, 1.0]) == i
    assert abs(len(got[0]) / 2000 - 0.2) < 0.04 and abs(len(got[1]) / 2000 - 0.5) < 0.05
    # input order is kept within a part
    assert got[1] == sorted(got[1], key=lambda r: int(r.split("-")[1]))


# --- the command ---------------------------------------------------------------------------------

def test_parallel_files_split_identically(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", i) for i in range(200)])
    fr = write_jsonl(tmp_path / "fr.jsonl", [nli("fr", i) for i in reversed(range(200))])
    out = {}
    for name, f in (("en", en), ("fr", fr)):
        proc = xlt("split", f, "--into", f"{tmp_path}/{name}.a.jsonl:0.3", "--into", f"{tmp_path}/{name}.b.jsonl:0.7", "--seed", "7")
        assert proc.returncode == 0 and proc.stdout == b"", proc.stderr.decode()
        out[name] = (set(ids(tmp_path / f"{name}.a.jsonl")), set(ids(tmp_path / f"{name}.b.jsonl")))
    assert out["en"] == out["fr"]
    # both at once gives the same parts
    proc = xlt("split", en, fr, "--into", f"{tmp_path}/both.a.jsonl:0.3", "--into", f"{tmp_path}/both.b.jsonl:0.7", "--seed", "7")
    assert proc.returncode == 0
    both = read(tmp_path / "both.a.jsonl")
    assert {r["id"] for r in both} == out["en"][0] and len(both) == 2 * len(out["en"][0])
    # another seed gives another split
    proc = xlt("split", en, "--into", f"{tmp_path}/s.a.jsonl:0.3", "--into", f"{tmp_path}/s.b.jsonl:0.7", "--seed", "8")
    assert set(ids(tmp_path / "s.a.jsonl")) != out["en"][0]


def test_counts_on_stderr(xlt, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", i) for i in range(50)])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    proc = xlt("split", src, "--into", f"{a}:0.5", "--into", f"{b}:0.5")
    lines = proc.stderr.decode().strip().splitlines()
    na, nb = len(ids(a)), len(ids(b))
    assert na + nb == 50
    assert lines == [f"xlt split: {a}: {na} records ({na / 50:.1%})", f"xlt split: {b}: {nb} records ({nb / 50:.1%})"]
    assert xlt("split", src, "--into", f"{a}:1", "--force", "--quiet").stderr == b""


def test_meta_keys_keep_groups_together(xlt, tmp_path):
    # 60 ids in 20 groups of 3; the group decides the part, in every language
    meta = write_jsonl(tmp_path / "meta.jsonl", [{"id": f"x-{i}", "premise_group": i // 3} for i in range(60)])
    files = [write_jsonl(tmp_path / f"{l}.jsonl", [nli(l, i) for i in range(60)]) for l in ("en", "de")]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    proc = xlt("split", *files, "--meta", meta, "--by", "premise_group", "--into", f"{a}:0.5", "--into", f"{b}:0.5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr.decode()
    group = {f"x-{i}": i // 3 for i in range(60)}
    ga = {group[r] for r in ids(a)}
    gb = {group[r] for r in ids(b)}
    assert ga and gb and not ga & gb and ga | gb == set(range(20))
    for g in ga:  # whole groups, in both languages
        assert sorted(ids(a)).count(f"x-{3 * g}") == 2
    # the key is the meta value (an int, hashed as its JSON text)
    assert all(choose(unit_hash(1, str(group[r])), [0.5, 1.0]) == 0 for r in ids(a))


def test_dotted_key(xlt, tmp_path):
    rows = [nli("fr", i, group=i % 4) for i in range(40)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert xlt("split", src, "--by", "src.premise", "--into", f"{a}:0.5", "--into", f"{b}:0.5").returncode == 0
    pa = {r["src"]["premise"] for r in read(a)}
    pb = {r["src"]["premise"] for r in read(b)}
    assert not pa & pb and len(pa | pb) == 4


def test_meta_errors(xlt, tmp_path):
    meta = write_jsonl(tmp_path / "meta.jsonl", [{"id": "x-0", "premise_group": 0}])
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", 0), nli("en", 1)])
    out = tmp_path / "a.jsonl"
    err = one_error(xlt("split", src, "--meta", meta, "--by", "premise_group", "--into", f"{out}:1"))
    assert err == f"{src}:2: id 'x-1' is not in {meta}"
    assert not out.exists()
    err = one_error(xlt("split", src, "--meta", meta, "--by", "genre", "--into", f"{out}:1"))
    assert err == f'{meta}:1: missing field "genre"'
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "x-0", "g": 0}, {"id": "x-0", "g": 1}])
    assert one_error(xlt("split", src, "--meta", dup, "--by", "g", "--into", f"{out}:1")) == \
        f'{dup}:2: id \'x-0\' is listed again with a different "g"'
    # skip: the record without a meta entry is reported and left out
    proc = xlt("split", src, "--meta", meta, "--by", "premise_group", "--into", f"{out}:1", "--on-error", "skip")
    assert proc.returncode == 0 and ids(out) == ["x-0"]
    assert "skipped 1 bad record(s)" in proc.stderr.decode()


@pytest.mark.parametrize("args, message", [
    (["--into", "a.jsonl:0.5", "--into", "b.jsonl:0.4"], "the --into fractions must add up to 1, not 0.5 + 0.4 = 0.9"),
    ([], "give at least one --into PATH:FRACTION"),
    (["--into", "a.jsonl"], "--into takes PATH:FRACTION (e.g. train.jsonl:0.8), not 'a.jsonl'"),
    (["--into", "a.jsonl:1", "--by", "src..x"], "--by must be a field name or dotted path (src.premise), not 'src..x'"),
])
def test_usage_errors(xlt, tmp_path, args, message):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", 0)])
    proc = xlt("split", src, *[a if not a.endswith((":0.5", ":0.4", ":1")) else f"{tmp_path}/{a}" for a in args])
    assert one_error(proc) == message
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


# --- the stage contract --------------------------------------------------------------------------

def test_empty_input(xlt, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    proc = xlt("split", "--into", f"{a}:0.5", "--into", f"{b}:0.5", input=b"")
    assert proc.returncode == 0 and a.read_bytes() == b"" and b.read_bytes() == b""


def test_stdin_and_stdout_part(xlt, tmp_path):
    rows = [nli("en", i) for i in range(30)]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    a = tmp_path / "a.jsonl"
    for extra in (["-"], []):
        proc = xlt("split", *extra, "--into", "-:0.4", "--into", f"{a}:0.6", "--force", input=data)
        assert proc.returncode == 0, proc.stderr.decode()
        out = [json.loads(l)["id"] for l in proc.stdout.decode().splitlines()]
        assert len(out) + len(ids(a)) == 30 and not set(out) & set(ids(a))
        assert "<stdout>:" in proc.stderr.decode()
    # records pass through unchanged (byte-identical JSON of the same objects)
    assert [json.loads(l) for l in proc.stdout.decode().splitlines()] == [r for r in rows if r["id"] in out]


def test_gzip_in_and_out(xlt, tmp_path):
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"".join(json.dumps(nli("en", i)).encode() + b"\n" for i in range(20))))
    a = tmp_path / "a.jsonl.gz"
    proc = xlt("split", str(src), "--into", f"{a}:1")
    assert proc.returncode == 0
    assert a.read_bytes()[:2] == b"\x1f\x8b" and len(gzip.decompress(a.read_bytes()).splitlines()) == 20


def test_bad_input_is_one_line_exit_2_and_no_output(xlt, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", 0), nli("en", 1)], raw_lines={2: b'{"id": '})
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    err = one_error(xlt("split", src, "--into", f"{a}:0.5", "--into", f"{b}:0.5"))
    assert err.startswith(f"{src}:2: invalid JSON")
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]  # no part, no temporary file
    no_id = write_jsonl(tmp_path / "noid.jsonl", [{"lang": "en", "text": "t"}])
    assert one_error(xlt("split", no_id, "--into", f"{a}:1")) == f'{no_id}:1: missing field "id"'
    assert one_error(xlt("split", str(tmp_path / "nope.jsonl"), "--into", f"{a}:1")) == f"{tmp_path / 'nope.jsonl'}: no such file"


def test_outputs_are_never_clobbered(xlt, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", i) for i in range(10)])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    b.write_text("keep\n")
    assert one_error(xlt("split", src, "--into", f"{a}:0.5", "--into", f"{b}:0.5")) == \
        f"output {b} exists; pass --force to overwrite it"
    assert b.read_text() == "keep\n" and not a.exists()
    assert xlt("split", src, "--into", f"{a}:0.5", "--into", f"{b}:0.5", "--force").returncode == 0
    assert len(ids(a)) + len(ids(b)) == 10
    # /dev/null takes a part without --force and survives
    assert xlt("split", src, "--into", f"{tmp_path}/c.jsonl:0.5", "--into", f"{os.devnull}:0.5").returncode == 0
    assert not Path(os.devnull).is_file()


def test_head_closes_the_pipe_quietly(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [nli("en", i) for i in range(5000)])  # ~0.5 MB: more than a pipe buffer
    proc = subprocess.run(f"{sys.executable} -m xlt split {src} --into -:1 | head -1", shell=True,
                          capture_output=True, executable="/bin/bash", timeout=300)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr.decode() and "Error" not in proc.stderr.decode()


def test_refuses_existing_before_reading(xlt, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text("x\n")
    # the output is checked before the missing input is read
    assert "exists" in one_error(xlt("split", str(tmp_path / "missing.jsonl"), "--into", f"{a}:1"))
    b = tmp_path / "b.jsonl"
    assert "no such file" in one_error(xlt("split", str(tmp_path / "missing.jsonl"), "--into", f"{b}:1"))
    assert not b.exists()
    with pytest.raises(InputError, match="no such file"):
        split_stream([str(tmp_path / "missing.jsonl")], {str(b): io.StringIO()}, parts=[Part(str(b), 1.0)])
