"""`xlt pair`: the stage contract (stdin, .gz, bad input, atomic -o, `| head`), its modes and
output sizes, on synthetic files, on samples/ and on the real XNLI dev files."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xlt.errors import UsageError
from xlt.pair import PairReport, load_parallel, pair_records

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["entailment", "neutral", "contradiction"]
NLI_FIELDS = ("premise", "hypothesis")


def nli(lang: str, i: int, **extra) -> dict:
    return {"id": f"x-{i}", "lang": lang, "premise": f"{lang} premise {i}",
            "hypothesis": f"{lang} hypothesis {i}", "label": LABELS[i % 3], **extra}


def write_jsonl(path: Path, records, *, raw_lines: dict[int, bytes] | None = None) -> str:
    """Write records; `raw_lines` puts raw bytes at those 1-based line numbers instead."""
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    for lineno, raw in sorted((raw_lines or {}).items()):
        lines.insert(lineno - 1, raw)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))
    return str(path)


def parallel(tmp_path: Path, langs=("en", "fr", "de"), n: int = 6, *, drop: dict[str, set[int]] | None = None,
             suffix: str = ".jsonl") -> dict[str, str]:
    """One file per language with ids x-0 .. x-(n-1); `drop` leaves some ids out of a language."""
    drop = drop or {}
    return {lang: write_jsonl(tmp_path / f"dev.{lang}{suffix}",
                              [nli(lang, i) for i in range(n) if i not in drop.get(lang, set())])
            for lang in langs}


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.decode("utf-8").splitlines()


def one_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one `xlt pair: error: ...` line of a failed run (no traceback, nothing on stdout)."""
    assert proc.returncode == code, proc.stderr.decode()
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("xlt pair: error: ")
    return lines[0][len("xlt pair: error: "):]


def no_temp_files(directory: Path) -> bool:
    return not [name for name in os.listdir(directory) if name.startswith(".")]


# --- modes and output sizes --------------------------------------------------------------------

def test_cross_lingual_pairs(xlt, tmp_path):
    files = parallel(tmp_path)
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", *files.values())
    out = records(proc)
    assert out == [{"id": f"x-{i}", "lang": "en-fr", "langs": {"premise": "en", "hypothesis": "fr"},
                    "premise": f"en premise {i}", "hypothesis": f"fr hypothesis {i}", "label": LABELS[i % 3]}
                   for i in range(6)]
    assert stderr_lines(proc) == ["xlt pair: wrote 6 record(s)"]


def test_same_language_pair_is_plain(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en", "fr"))
    out = records(xlt("pair", "--premise-lang", "fr", "--hypothesis-lang", "fr", *files.values()))
    assert [r["lang"] for r in out] == ["fr"] * 6
    assert out[0]["langs"] == {"premise": "fr", "hypothesis": "fr"}
    assert out[0]["premise"] == "fr premise 0" and out[0]["hypothesis"] == "fr hypothesis 0"


def test_all_is_every_ordered_combination(xlt, tmp_path):
    files = parallel(tmp_path)
    out = records(xlt("pair", "--all", *files.values()))
    assert len(out) == 3 * 3 * 6
    combos = [(p, h) for p in ("en", "fr", "de") for h in ("en", "fr", "de")]
    # Ordered by premise language, then hypothesis language, then ids in input order.
    assert [(r["langs"]["premise"], r["langs"]["hypothesis"], r["id"]) for r in out] == \
        [(p, h, f"x-{i}") for p, h in combos for i in range(6)]
    for r in out:
        p, h = r["langs"]["premise"], r["langs"]["hypothesis"]
        i = int(r["id"][2:])
        assert r["premise"] == f"{p} premise {i}" and r["hypothesis"] == f"{h} hypothesis {i}"
        assert r["lang"] == (p if p == h else f"{p}-{h}")


def test_all_with_langs_keeps_the_given_order(xlt, tmp_path):
    files = parallel(tmp_path)
    out = records(xlt("pair", "--all", "--langs", "fr,en", *files.values()))
    assert [r["lang"] for r in out[::6]] == ["fr", "fr-en", "en-fr", "en"]
    assert len(out) == 4 * 6


def test_src_view(xlt, tmp_path):
    files = parallel(tmp_path)
    out = records(xlt("pair", "--src", "en", *files.values()))
    assert len(out) == 2 * 6
    assert [(r["lang"], r["id"]) for r in out] == [(lang, f"x-{i}") for lang in ("fr", "de") for i in range(6)]
    for r in out:
        i = int(r["id"][2:])
        # The record itself passes through unchanged; only `src` is added.
        assert {k: v for k, v in r.items() if k != "src"} == nli(r["lang"], i)
        assert r["src"] == {"lang": "en", "premise": f"en premise {i}", "hypothesis": f"en hypothesis {i}"}


def test_cross_pairs_with_a_src_pair_view(xlt, tmp_path):
    # BERT-KLD: the student reads pair fr-de, the teacher the same example as pair en-en (or X-Y).
    files = parallel(tmp_path)
    out = records(xlt("pair", "--premise-lang", "fr", "--hypothesis-lang", "de", "--src", "en", *files.values()))
    assert len(out) == 6
    for r in out:
        i = int(r["id"][2:])
        assert (r["lang"], r["premise"], r["hypothesis"]) == ("fr-de", f"fr premise {i}", f"de hypothesis {i}")
        assert r["src"] == {"lang": "en", "langs": {"premise": "en", "hypothesis": "en"},
                            "premise": f"en premise {i}", "hypothesis": f"en hypothesis {i}"}
    out = records(xlt("pair", "--all", "--langs", "fr,de", "--src", "en-fr", *files.values()))
    assert len(out) == 4 * 6
    assert {r["src"]["lang"] for r in out} == {"en-fr"}
    assert out[0]["src"]["hypothesis"] == "fr hypothesis 0" and out[0]["src"]["premise"] == "en premise 0"
    assert "--src" in one_error(xlt("pair", "--premise-lang", "fr", "--hypothesis-lang", "de", "--src", "en-fr-de", *files.values()))
    assert "--src" in one_error(xlt("pair", "--premise-lang", "fr", "--hypothesis-lang", "de", "--src", "xx", *files.values()))


def test_paraphrase_fields(xlt, tmp_path):
    def paws(lang, i):
        return {"id": f"p-{i}", "lang": lang, "sentence1": f"{lang} one {i}", "sentence2": f"{lang} two {i}",
                "label": i % 2}

    en = write_jsonl(tmp_path / "en.jsonl", [paws("en", i) for i in range(4)])
    de = write_jsonl(tmp_path / "de.jsonl", [paws("de", i) for i in range(4)])
    out = records(xlt("pair", "--premise-lang", "de", "--hypothesis-lang", "en", en, de))
    assert out[1] == {"id": "p-1", "lang": "de-en", "langs": {"sentence1": "de", "sentence2": "en"},
                      "sentence1": "de one 1", "sentence2": "en two 1", "label": 1}
    src = records(xlt("pair", "--src", "en", en, de))
    assert src[3]["src"] == {"lang": "en", "sentence1": "en one 3", "sentence2": "en two 3"}


def test_forced_fields(xlt, tmp_path):
    def qa(lang, i):
        return {"id": str(i), "lang": lang, "question": f"{lang} q{i}", "answer": f"{lang} a{i}", "premise": "decoy"}

    en = write_jsonl(tmp_path / "en.jsonl", [qa("en", i) for i in range(3)])
    fr = write_jsonl(tmp_path / "fr.jsonl", [qa("fr", i) for i in range(3)])
    out = records(xlt("pair", "--fields", "question,answer", "--premise-lang", "en", "--hypothesis-lang", "fr", en, fr))
    assert out[2]["langs"] == {"question": "en", "answer": "fr"}
    assert (out[2]["question"], out[2]["answer"]) == ("en q2", "fr a2")
    assert out[2]["premise"] == "decoy"  # not a text field here: an unknown key, passed through


def test_single_text_needs_src_mode(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [{"id": "1", "lang": "en", "text": "good"}])
    fr = write_jsonl(tmp_path / "fr.jsonl", [{"id": "1", "lang": "fr", "text": "bon"}])
    assert "need a pair task" in one_error(xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", en, fr))
    out = records(xlt("pair", "--src", "en", en, fr))
    assert out == [{"id": "1", "lang": "fr", "text": "bon", "src": {"lang": "en", "text": "good"}}]


def test_unknown_keys_of_the_premise_side_pass_through(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", 0, genre="fiction", meta={"n": [1, 2]})])
    fr = write_jsonl(tmp_path / "fr.jsonl", [nli("fr", 0, genre="roman", translator="A")])
    out = records(xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", en, fr))
    assert out[0]["genre"] == "fiction" and out[0]["meta"] == {"n": [1, 2]}
    assert "translator" not in out[0]
    back = records(xlt("pair", "--premise-lang", "fr", "--hypothesis-lang", "en", en, fr))
    assert back[0]["genre"] == "roman" and back[0]["translator"] == "A" and "meta" not in back[0]


def test_labels_that_differ_are_reported_and_taken_from_the_chosen_side(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", i) for i in range(4)])
    fr_records = [nli("fr", i) for i in range(4)]
    fr_records[2]["label"] = "neutral"  # en says contradiction
    fr = write_jsonl(tmp_path / "fr.jsonl", fr_records)
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", en, fr)
    assert records(proc)[2]["label"] == "contradiction"
    assert "xlt pair: warning: 1 id(s) with different labels across languages (e.g. x-2)" in stderr_lines(proc)
    out = records(xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", "--label-from", "hypothesis", en, fr))
    assert [r["label"] for r in out] == ["entailment", "neutral", "neutral", "entailment"]
    proc = xlt("pair", "--src", "en", en, fr)
    assert "xlt pair: warning: 1 id(s) with different labels across languages (e.g. x-2)" in stderr_lines(proc)
    assert records(proc)[2]["label"] == "neutral"  # --src keeps each record as it is


def test_missing_ids_are_reported_and_skipped(xlt, tmp_path):
    files = parallel(tmp_path, n=8, drop={"fr": {3}, "de": {5, 6}})
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", *files.values())
    assert [r["id"] for r in records(proc)] == [f"x-{i}" for i in (0, 1, 2, 4, 5, 6, 7)]
    assert stderr_lines(proc) == ["xlt pair: warning: 1 id(s) missing in language fr, skipped (e.g. x-3)",
                                  "xlt pair: wrote 7 record(s)"]

    proc = xlt("pair", "--all", *files.values())
    assert len(records(proc)) == 9 * 5
    assert "xlt pair: warning: 2 id(s) missing in language de, skipped (e.g. x-5, x-6)" in stderr_lines(proc)

    proc = xlt("pair", "--src", "en", *files.values())
    out = records(proc)
    assert [(r["lang"], r["id"]) for r in out] == \
        [("fr", f"x-{i}") for i in (0, 1, 2, 4, 5, 6, 7)] + [("de", f"x-{i}") for i in (0, 1, 2, 3, 4, 7)]
    assert "xlt pair: warning: 1 id(s) missing in language fr, skipped (e.g. x-3)" in stderr_lines(proc)
    assert "xlt pair: warning: 2 id(s) missing in language de, skipped (e.g. x-5, x-6)" in stderr_lines(proc)


def test_ids_missing_in_the_source_are_reported(xlt, tmp_path):
    files = parallel(tmp_path, n=4, drop={"en": {1}})
    proc = xlt("pair", "--src", "en", *files.values())
    assert len(records(proc)) == 2 * 3
    assert "xlt pair: warning: 1 id(s) missing in language en, skipped (e.g. x-1)" in stderr_lines(proc)


def test_output_is_deterministic(xlt, tmp_path):
    files = parallel(tmp_path, n=10)
    first = xlt("pair", "--all", *files.values())
    second = xlt("pair", "--all", *files.values())
    assert first.returncode == 0 and first.stdout == second.stdout


@pytest.mark.parametrize("args, message", [
    ([], "choose one mode"),
    (["--all", "--src", "en-"], "a pair X-Y"),
    (["--premise-lang", "en", "--all"], "choose one mode"),
    (["--premise-lang", "en"], "--premise-lang and --hypothesis-lang go together"),
    (["--premise-lang", "en", "--hypothesis-lang", "fr", "--langs", "en,fr"], "--langs goes with --all"),
    (["--all", "--langs", "en,en"], "--langs names en more than once"),
    (["--all", "--langs", "en,xx"], "--langs: no records in language 'xx' (input has: en, fr, de)"),
    (["--premise-lang", "en", "--hypothesis-lang", "hi"], "no records in language 'hi' (input has: en, fr, de)"),
    (["--src", "sw"], "--src: no records in language 'sw'"),
    (["--premise-lang", "en", "--hypothesis-lang", "fr", "--label-from", "both"], "--label-from must be premise or hypothesis"),
    (["--on-error", "ignore", "--all"], "--on-error must be one of fail, skip"),
])
def test_usage_errors(xlt, tmp_path, args, message):
    files = parallel(tmp_path)
    assert message in one_error(xlt("pair", *args, *files.values()))


def test_src_needs_another_language(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en",))
    assert "no other language" in one_error(xlt("pair", "--src", "en", files["en"]))


# --- the stage contract ------------------------------------------------------------------------

def test_empty_input(xlt, tmp_path):
    proc = xlt("pair", "--all", input=b"")
    assert proc.returncode == 0 and proc.stdout == b""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    proc = xlt("pair", "--src", "en", str(empty))
    assert proc.returncode == 0 and proc.stdout == b""
    assert stderr_lines(proc) == ["xlt pair: wrote 0 record(s)"]


def test_stdin(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en", "fr"))
    data = b"".join(Path(p).read_bytes() for p in files.values())
    from_stdin = xlt("pair", "--src", "en", "-", input=data)
    implicit = xlt("pair", "--src", "en", input=data)
    from_files = xlt("pair", "--src", "en", *files.values())
    assert len(records(from_stdin)) == 6
    assert from_stdin.stdout == implicit.stdout == from_files.stdout
    # stdin mixed with a file
    mixed = xlt("pair", "--src", "en", files["en"], "-", input=Path(files["fr"]).read_bytes())
    assert mixed.stdout == from_files.stdout


def test_gzip_in_and_out(xlt, tmp_path):
    files = parallel(tmp_path, suffix=".jsonl.gz")
    out = tmp_path / "pairs.jsonl.gz"
    proc = xlt("pair", "--all", *files.values(), "-o", str(out))
    assert proc.returncode == 0 and proc.stdout == b""
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    plain = xlt("pair", "--all", *files.values())
    assert gzip.decompress(out.read_bytes()) == plain.stdout
    assert len(records(plain)) == 54
    # gzip on stdin is recognised by its bytes
    piped = xlt("pair", "--src", "en", input=gzip.compress(b"".join(gzip.open(p).read() for p in files.values())))
    assert len(records(piped)) == 12


BAD_LINES = [
    (b'{"id": "x-1", "lang": "fr", "premise": "p"', "invalid JSON: Expecting ',' delimiter at column 43"),
    (b'{"id": "x-1", "lang": "fr", "premise": "\xe9t\xe9", "hypothesis": "h"}', "invalid UTF-8 at byte 40"),
    (b'["x-1", "fr", "p", "h"]', "expected a JSON object, got list"),
    (b'{"id": "x-1", "lang": "fr", "premise": "p", "label": "neutral"}', 'missing field "hypothesis"'),
    (b'{"id": "x-1", "lang": "fr", "premise": "p", "hypothesis": "  "}', 'field "hypothesis" is empty'),
    (b'{"lang": "fr", "premise": "p", "hypothesis": "h"}', 'missing field "id"'),
    (b'{"id": "x-1", "premise": "p", "hypothesis": "h"}', 'missing field "lang"'),
    (b'{"id": "x-0", "lang": "fr", "premise": "p", "hypothesis": "h"}', 'duplicate id "x-0" for language "fr"'),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_bad_input_is_one_line_exit_2_and_no_output_file(xlt, tmp_path, line, message):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", i) for i in range(3)])
    fr = write_jsonl(tmp_path / "fr.jsonl", [nli("fr", 0), nli("fr", 2)], raw_lines={2: line})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pairs.jsonl"
    proc = xlt("pair", "--all", en, fr, "-o", str(out))
    assert one_error(proc) == f"{fr}:2: {message}"
    assert proc.stdout == b""
    assert os.listdir(out_dir) == []  # neither the output nor a temporary file


def test_bad_input_on_stdin_is_located(xlt):
    proc = xlt("pair", "--all", input=b'{"id": "1", "lang": "en", "premise": "p", "hypothesis": "h"}\n\nnope\n')
    assert one_error(proc) == "<stdin>:3: invalid JSON: Expecting value at column 1"


def test_on_error_skip_reports_lines(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", i) for i in range(5)])
    fr = write_jsonl(tmp_path / "fr.jsonl", [nli("fr", i) for i in (0, 2, 4)],
                     raw_lines={2: b"{broken", 4: b'{"id": "x-3", "lang": "fr", "premise": "p", "hypothesis": ""}'})
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", "--on-error", "skip", en, fr)
    assert [r["id"] for r in records(proc)] == ["x-0", "x-2", "x-4"]
    lines = stderr_lines(proc)
    assert lines[0] == (f"xlt pair: warning: skipped 2 bad record(s): {fr}:2: invalid JSON: Expecting property name "
                        f'enclosed in double quotes at column 2; {fr}:4: field "hypothesis" is empty')
    assert "xlt pair: warning: 2 id(s) missing in language fr, skipped (e.g. x-1, x-3)" in lines
    assert lines[-1] == "xlt pair: wrote 3 record(s)"


def test_quiet_keeps_warnings_only(xlt, tmp_path):
    files = parallel(tmp_path, n=4, drop={"fr": {1}})
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "fr", "--quiet", *files.values())
    assert len(records(proc)) == 3
    assert stderr_lines(proc) == ["xlt pair: warning: 1 id(s) missing in language fr, skipped (e.g. x-1)"]


def test_verbose_shows_the_traceback(xlt, tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", 0)], raw_lines={2: b"{bad"})
    proc = xlt("pair", "--all", "--verbose", en)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "Traceback (most recent call last)" in err and "InputError" in err
    assert err.splitlines()[-1] == f"xlt pair: error: {en}:2: invalid JSON: Expecting property name enclosed in double quotes at column 2"


def test_missing_input_file(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en",))
    assert one_error(xlt("pair", "--all", files["en"], str(tmp_path / "dev.fr.jsonl"))) == \
        f"{tmp_path / 'dev.fr.jsonl'}: no such file"


def test_head_closes_the_pipe_quietly(tmp_path):
    files = parallel(tmp_path, n=3000)  # --all: 27,000 records, far more than a pipe buffer
    cmd = f"{sys.executable} -m xlt pair --all {' '.join(files.values())} | head -1"
    for extra in ("", " --verbose"):
        proc = subprocess.run(cmd.replace(" | head", extra + " | head"), shell=True, capture_output=True,
                              executable="/bin/bash", timeout=300)
        assert proc.returncode == 0
        assert len(proc.stdout.splitlines()) == 1
        assert json.loads(proc.stdout)["id"] == "x-0"
        err = proc.stderr.decode()
        assert "Traceback" not in err and "Error" not in err and "Exception" not in err, err


def test_output_file_is_atomic_and_never_clobbered(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en", "fr"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pairs.jsonl"
    proc = xlt("pair", "--all", *files.values(), "-o", str(out))
    assert proc.returncode == 0 and proc.stdout == b""
    first = out.read_bytes()
    assert len(first.splitlines()) == 24

    # Exists: refused without --force, before any work, and left as it was.
    proc = xlt("pair", "--src", "en", *files.values(), "-o", str(out))
    assert one_error(proc) == f"output {out} exists; pass --force to overwrite it"
    assert out.read_bytes() == first
    proc = xlt("pair", "--src", "en", str(tmp_path / "no-such-input.jsonl"), "-o", str(out))
    assert "exists; pass --force" in one_error(proc)

    # A failure under --force leaves the old file whole.
    bad = write_jsonl(tmp_path / "bad.jsonl", [nli("de", 0)], raw_lines={2: b"{"})
    assert one_error(xlt("pair", "--all", *files.values(), bad, "-o", str(out), "--force")).startswith(f"{bad}:2:")
    assert out.read_bytes() == first

    # --force overwrites.
    proc = xlt("pair", "--src", "en", *files.values(), "-o", str(out), "--force")
    assert proc.returncode == 0
    assert len(out.read_bytes().splitlines()) == 6
    assert os.listdir(out_dir) == ["pairs.jsonl"]  # no temporary files left


def test_output_into_a_directory_is_refused(xlt, tmp_path):
    files = parallel(tmp_path, langs=("en", "fr"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep").write_text("x")
    assert "is a directory" in one_error(xlt("pair", "--all", *files.values(), "-o", str(tmp_path / "results"), "--force"))
    assert (tmp_path / "results" / "keep").read_text() == "x"


def test_output_to_dev_null(xlt, tmp_path):
    # Nothing to clobber: no --force needed, and the device must survive (never renamed over).
    files = parallel(tmp_path, langs=("en", "fr"))
    for extra in ([], ["--force"]):
        proc = xlt("pair", "--all", *files.values(), "-o", os.devnull, *extra)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"" and stderr_lines(proc) == ["xlt pair: wrote 24 record(s)"]
        assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_stdout_is_utf8_whatever_the_locale(xlt, tmp_path):
    ru = {"id": "1", "lang": "ru", "premise": "Идёт дождь.", "hypothesis": "Земля мокрая."}
    en = write_jsonl(tmp_path / "en.jsonl", [{**ru, "lang": "en", "premise": "It rains.", "hypothesis": "Wet."}])
    ru_path = write_jsonl(tmp_path / "ru.jsonl", [ru])
    proc = xlt("pair", "--src", "en", en, ru_path, env={"PYTHONIOENCODING": "latin-1", "LC_ALL": "C", "LANG": "C"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout.decode("utf-8"))["premise"] == "Идёт дождь."


# --- the library -------------------------------------------------------------------------------

def test_library_checks_options_before_yielding(tmp_path):
    files = parallel(tmp_path)
    data = load_parallel(list(files.values()))
    assert data.fields == NLI_FIELDS and data.langs == ["en", "fr", "de"]
    assert data.ids == [f"x-{i}" for i in range(6)]
    with pytest.raises(UsageError):  # raised by the call itself, not on the first next()
        pair_records(data, premise_lang="en", hypothesis_lang="xx", report=PairReport())
    with pytest.raises(UsageError):
        pair_records(data, src="en", label_from="nope", report=PairReport())
    report = PairReport()
    it = pair_records(data, all_pairs=True, langs=["de", "en"], report=report)
    assert report.total == 4 * 6 and report.written == 0
    out = list(it)
    assert len(out) == report.written == report.total


def test_library_unhashable_labels(tmp_path):
    en = write_jsonl(tmp_path / "en.jsonl", [nli("en", 0, label={"p": [0.2, 0.8]})])
    fr = write_jsonl(tmp_path / "fr.jsonl", [nli("fr", 0, label={"p": [0.3, 0.7]})])
    report = PairReport()
    out = list(pair_records(load_parallel([en, fr]), all_pairs=True, report=report))
    assert len(out) == 4 and report.label_conflicts == ["x-0"]


def test_library_output_records_are_independent(tmp_path):
    files = parallel(tmp_path, langs=("en", "fr"), n=2)
    out = list(pair_records(load_parallel(list(files.values())), all_pairs=True, report=PairReport()))
    out[0]["langs"]["premise"] = "changed"
    out[0]["label"] = "changed"
    assert out[1]["langs"]["premise"] == "en"
    again = list(pair_records(load_parallel(list(files.values())), all_pairs=True, report=PairReport()))
    assert again[0]["label"] == "entailment"


# --- samples/ and real data --------------------------------------------------------------------

def test_samples_nli_are_parallel_and_balanced(xlt):
    paths = sorted(str(p) for p in (ROOT / "samples" / "nli").glob("*.jsonl"))
    assert [Path(p).stem for p in paths] == ["de", "en", "fr", "ru"]
    proc = xlt("pair", "--all", *paths)
    out = records(proc)
    assert len(out) == 4 * 4 * 30
    assert not [line for line in stderr_lines(proc) if "warning" in line]  # same ids and labels everywhere
    en = [json.loads(line) for line in open(ROOT / "samples" / "nli" / "en.jsonl", encoding="utf-8")]
    assert sorted(r["label"] for r in en) == sorted(LABELS * 10)
    assert [r["id"] for r in en] == [f"s-{i:03d}" for i in range(30)]


def test_samples_paws(xlt):
    paths = sorted(str(p) for p in (ROOT / "samples" / "paws").glob("*.jsonl"))
    assert len(paths) >= 2
    proc = xlt("pair", "--src", "en", *paths)
    out = records(proc)
    assert len(out) == (len(paths) - 1) * 20
    assert sorted(r["label"] for r in out[:20]) == [0] * 10 + [1] * 10
    assert not [line for line in stderr_lines(proc) if "warning" in line]


def load(path: Path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as fh:
        return {r["id"]: r for r in map(json.loads, fh)}


@pytest.mark.slow
def test_xnli_en_hi(xlt, shared_data):
    en, hi = shared_data / "xnli" / "dev.en.jsonl", shared_data / "xnli" / "dev.hi.jsonl"
    proc = xlt("pair", "--premise-lang", "en", "--hypothesis-lang", "hi", str(en), str(hi))
    out = records(proc)
    assert len(out) == 2490
    en_by_id, hi_by_id = load(en), load(hi)
    assert [r["id"] for r in out] == list(en_by_id)
    for r in out:
        assert r["lang"] == "en-hi" and r["langs"] == {"premise": "en", "hypothesis": "hi"}
        assert r["premise"] == en_by_id[r["id"]]["premise"]
        assert r["hypothesis"] == hi_by_id[r["id"]]["hypothesis"]
        assert r["label"] == en_by_id[r["id"]]["label"]
    assert stderr_lines(proc) == ["xlt pair: wrote 2490 record(s)"]


@pytest.mark.slow
def test_xnli_all_over_three_languages(xlt, shared_data, tmp_path):
    langs = ("en", "fr", "hi")
    paths = [str(shared_data / "xnli" / f"dev.{lang}.jsonl") for lang in langs]
    out_path = tmp_path / "all.jsonl.gz"
    proc = xlt("pair", "--all", *paths, "-o", str(out_path))
    assert proc.returncode == 0, proc.stderr.decode()
    with gzip.open(out_path, "rt", encoding="utf-8") as fh:
        out = [json.loads(line) for line in fh]
    assert len(out) == 9 * 2490
    by_lang = {lang: load(Path(p)) for lang, p in zip(langs, paths)}
    combos = [(p, h) for p in langs for h in langs]
    for k, (p, h) in enumerate(combos):
        block = out[k * 2490:(k + 1) * 2490]
        assert {(r["langs"]["premise"], r["langs"]["hypothesis"]) for r in block} == {(p, h)}
        for r in block[::97]:
            assert r["premise"] == by_lang[p][r["id"]]["premise"]
            assert r["hypothesis"] == by_lang[h][r["id"]]["hypothesis"]


@pytest.mark.slow
def test_xnli_src(xlt, shared_data):
    paths = [str(shared_data / "xnli" / f"dev.{lang}.jsonl") for lang in ("en", "de", "ru")]
    out = records(xlt("pair", "--src", "en", *paths))
    assert len(out) == 2 * 2490
    en = load(Path(paths[0]))
    ru = load(Path(paths[2]))
    for r in out[2490::101]:
        assert r["lang"] == "ru"
        assert r == {**ru[r["id"]], "src": {"lang": "en", "premise": en[r["id"]]["premise"],
                                            "hypothesis": en[r["id"]]["hypothesis"]}}
