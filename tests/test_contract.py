"""The contract every stage keeps, tested the same way for every stage (issue: trust).

Bad input -> one line `xlt STAGE: error: FILE:LINE: ...`, exit 2, no output left behind;
`--on-error skip` skips it and says so; odd but valid input (BOM, CRLF) works; aliased outputs
are refused before anything is written; SIGINT/SIGTERM mid-run leave no temporaries; `| head -1`
is clean; float options refuse nan/inf. Plus hypothesis fuzzing of the reader and of the
teacher-output validation.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, run_xlt

LABELS = ["entailment", "neutral", "contradiction"]
JSONL_STAGES = ["pair", "split", "translate", "perturb", "teach", "soft-label", "distill", "eval"]


def good(i: int, lang: str = "en") -> dict:
    """An NLI record every stage accepts (with soft labels, which the other stages pass through)."""
    return {"id": f"r{i}", "lang": lang, "premise": f"the cat sat {i}", "hypothesis": "a dog ran",
            "label": LABELS[i % 3],
            "teacher": {"logits": [0.5, -0.25, 0.125 * (i % 4)], "probs": [0.4, 0.3, 0.3], "labels": LABELS,
                        "temperature": 1.0, "model": "sha256:test"}}


def good_lines(n: int = 8, stage: str = "") -> list[str]:
    if stage == "translate":  # the tiny MT model translates en -> fr
        return [json.dumps(good(i), ensure_ascii=False) for i in range(n)]
    # en and fr views of each id, so `pair --src en` has work to do
    return [json.dumps(good(i, lang), ensure_ascii=False) for i in range(n // 2) for lang in ("en", "fr")]


@pytest.fixture(scope="module")
def models(tiny_bert, tiny_classifier, tmp_path_factory) -> dict:
    from test_mt_models import make_marian

    return {"bert": tiny_bert, "clf": tiny_classifier,
            "marian": make_marian(str(tmp_path_factory.mktemp("contract-marian")))}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    """One $XLT_HOME for the module (conversions are cached across tests)."""
    return {"XLT_HOME": str(tmp_path_factory.mktemp("contract-home"))}


def argv(stage: str, m: dict, inp: str, out: str) -> list[str]:
    return {
        "pair": ["pair", "--src", "en", inp, "-o", out],
        "split": ["split", inp, "--into", f"{out}:1"],
        "translate": ["translate", "--model", m["marian"], "--tgt", "fr", "--beam-size", "1", "--max-length", "6", inp, "-o", out],
        "perturb": ["perturb", "--method", "swap", inp, "-o", out],
        "teach": ["teach", inp, "--model", m["bert"], "--max-steps", "1", "--batch-size", "4", "--out", out],
        "soft-label": ["soft-label", "--teacher", m["clf"], inp, "-o", out],
        "distill": ["distill", inp, "--student", m["bert"], "--max-steps", "1", "--batch-size", "4", "--out", out],
        "eval": ["eval", "--model", m["clf"], inp, "-o", out],
    }[stage]


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def error_line(proc: subprocess.CompletedProcess, stage: str) -> str:
    lines = [x for x in proc.stderr.decode("utf-8", "replace").splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith(f"xlt {stage}: error: ")]
    assert len(errors) == 1, proc.stderr.decode("utf-8", "replace")[-2000:]
    assert "Traceback" not in proc.stderr.decode("utf-8", "replace")
    return errors[0]


# --- bad input: exit 2, FILE:LINE: field, nothing written --------------------------------------------

BAD_LINES = {
    "invalid-json": b'{"id": "x", "lang": "en", "premise": "a b"',
    "invalid-utf8": b'{"id": "x", "lang": "en", "premise": "caf\xe9", "hypothesis": "b", "label": "neutral"}',
    "lone-surrogate": b'{"id": "x", "lang": "en", "premise": "a \\ud800 b", "hypothesis": "c", "label": "neutral"}',
    "non-object": b'[1, 2, 3]',
    "nan-literal": b'{"id": "x", "lang": "en", "premise": "a", "hypothesis": "b", "label": "neutral", "score": NaN}',
    "infinity-literal": b'{"id": "x", "lang": "en", "premise": "a", "hypothesis": "b", "label": "neutral", "w": [-Infinity]}',
    "overflow": b'{"id": "x", "lang": "en", "premise": "a", "hypothesis": "b", "label": "neutral", "w": 1e999}',
}
FIELD_CASES = {
    "missing-field": ("hypothesis", None, "missing"),
    "empty-field": ("hypothesis", "", "empty"),
    "null-field": ("hypothesis", "null", "string"),
}
EXPECT = {
    "invalid-json": "invalid JSON", "invalid-utf8": "invalid UTF-8", "lone-surrogate": "lone surrogate",
    "non-object": "expected a JSON object", "nan-literal": "non-finite number NaN",
    "infinity-literal": "non-finite number -Infinity", "overflow": "not a finite number",
}


def with_bad(tmp_path: Path, bad: bytes, stage: str = "", name: str = "in.jsonl") -> Path:
    lines = [x.encode() for x in good_lines(stage=stage)]
    lines.insert(2, bad)  # line 3
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def field_case(case: str) -> bytes:
    key, value, _ = FIELD_CASES[case]
    rec = good(99)
    if value is None:
        del rec[key]
    elif value == "null":
        rec[key] = None
    else:
        rec[key] = value
    return json.dumps(rec).encode()


def _bad_cases() -> list[tuple[str, str]]:
    cases = [(stage, case) for stage in JSONL_STAGES for case in BAD_LINES]
    # split is field-agnostic (it needs the key only): the field cases apply to the other stages
    cases += [(stage, case) for stage in JSONL_STAGES if stage != "split" for case in FIELD_CASES]
    return cases


@pytest.mark.parametrize("stage,case", _bad_cases())
def test_bad_record_is_exit_2_with_file_line_and_no_output(stage, case, models, home, tmp_path):
    bad = BAD_LINES[case] if case in BAD_LINES else field_case(case)
    inp = with_bad(tmp_path, bad, stage)
    out = tmp_path / "out"
    proc = run_xlt(*argv(stage, models, str(inp), str(out)), env=home)
    assert proc.returncode == 2, proc.stderr.decode("utf-8", "replace")[-2000:]
    line = error_line(proc, stage)
    assert f"{inp}:3: " in line, line
    expected = EXPECT.get(case) or '"hypothesis"'
    assert expected in line, line
    assert leftovers(tmp_path, {"in.jsonl"}) == []  # no output, no temporary, no .partial


def test_missing_key_for_split(tmp_path):
    rec = good(1)
    del rec["id"]
    inp = with_bad(tmp_path, json.dumps(rec).encode())
    proc = run_xlt("split", str(inp), "--into", f"{tmp_path / 'a.jsonl'}:0.5", "--into", f"{tmp_path / 'b.jsonl'}:0.5")
    assert proc.returncode == 2 and f'{inp}:3: missing field "id"' in error_line(proc, "split")
    assert leftovers(tmp_path, {"in.jsonl"}) == []


@pytest.mark.parametrize("stage", JSONL_STAGES)
def test_on_error_skip_skips_and_reports(stage, models, home, tmp_path):
    rec = good(99)
    del rec["id" if stage == "split" else "hypothesis"]
    inp = with_bad(tmp_path, json.dumps(rec).encode(), stage)
    out = tmp_path / "out"
    proc = run_xlt(*argv(stage, models, str(inp), str(out)), "--on-error", "skip", env=home)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-2000:]
    assert "skipped 1 bad record" in err and f"{inp}:3" in err, err[-2000:]
    assert out.exists()


@pytest.mark.parametrize("stage", JSONL_STAGES)
def test_bom_and_crlf_are_fine(stage, models, home, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(good_lines(stage=stage)).encode() + b"\r\n")
    out = tmp_path / "out"
    proc = run_xlt(*argv(stage, models, str(inp), str(out)), env=home)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    assert out.exists()


@pytest.mark.parametrize("stage", JSONL_STAGES)
def test_truncated_gzip_is_exit_2(stage, models, home, tmp_path):
    data = gzip.compress(("\n".join(good_lines(200, stage)) + "\n").encode())
    inp = tmp_path / "in.jsonl.gz"
    inp.write_bytes(data[: len(data) - 30])
    out = tmp_path / "out"
    proc = run_xlt(*argv(stage, models, str(inp), str(out)), env=home)
    assert proc.returncode == 2, proc.stderr.decode("utf-8", "replace")[-2000:]
    line = error_line(proc, stage)
    assert re.search(rf"{re.escape(str(inp))}:\d+: cannot read", line), line
    assert leftovers(tmp_path, {"in.jsonl.gz"}) == []


# --- teacher outputs (distill reads them; soft-label writes them) -----------------------------------

def teacher_case(case: str) -> dict:
    rec = good(99)
    t = rec["teacher"]
    if case == "too-long":
        t["logits"] = [0.1, 0.2, 0.3, 0.4]
    elif case == "too-short":
        t["logits"] = [0.1, 0.2]
    elif case == "strings":
        t["logits"] = ["0.1", "0.2", "0.3"]
    elif case == "float32-overflow":
        t["logits"] = [1e39, 0.0, 0.0]
    elif case == "bool":
        t["logits"] = [True, 0.0, 0.0]
    elif case == "other-labels":
        t["labels"] = ["yes", "no", "maybe"]
    elif case == "no-teacher":
        del rec["teacher"]
    elif case == "probs-only":  # the others carry logits: no silent switch of every record to probs
        del t["logits"]
    elif case == "not-an-object":
        rec["teacher"] = [1, 2, 3]
    return rec


TEACHER_CASES = {
    "too-long": '"teacher.logits" has 4 values, expected 3', "too-short": '"teacher.logits" has 2 values, expected 3',
    "strings": '"teacher.logits[0]" must be a number', "float32-overflow": '"teacher.logits[0]" is not a finite',
    "bool": '"teacher.logits[0]" must be a number', "other-labels": '"teacher.labels"',
    "no-teacher": 'missing field "teacher"', "probs-only": 'missing field "teacher.logits"',
    "not-an-object": '"teacher" must be an object',
}


@pytest.mark.parametrize("case", sorted(TEACHER_CASES))
def test_malformed_teacher_outputs(case, models, home, tmp_path):
    inp = with_bad(tmp_path, json.dumps(teacher_case(case)).encode())
    out = tmp_path / "out"
    proc = run_xlt(*argv("distill", models, str(inp), str(out)), env=home)
    assert proc.returncode == 2, proc.stderr.decode()[-2000:]
    line = error_line(proc, "distill")
    assert f"{inp}:3: " in line and TEACHER_CASES[case] in line, line
    assert leftovers(tmp_path, {"in.jsonl"}) == []
    # and skippable like any bad record
    proc = run_xlt(*argv("distill", models, str(inp), str(out)), "--on-error", "skip", env=home)
    assert proc.returncode == 0 and "skipped 1 bad record" in proc.stderr.decode(), proc.stderr.decode()[-2000:]


def test_soft_label_refuses_non_finite_temperature_and_writes_valid_json(models, home, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines()) + "\n")
    for bad in ("nan", "inf", "-inf", "0"):
        proc = run_xlt("soft-label", "--teacher", models["clf"], "--temperature", bad, str(inp), env=home)
        assert proc.returncode == 2 and proc.stdout == b"", (bad, proc.stderr.decode()[-500:])
    proc = run_xlt("soft-label", "--teacher", models["clf"], "--temperature", "1e-30", str(inp), env=home)
    assert proc.returncode in (0, 1)
    for line in proc.stdout.decode().splitlines():  # whatever is written is strict JSON
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-finite {c} written"))


# --- non-finite numbers in reports and model outputs ---------------------------------------------------

def test_report_refuses_a_nan_accuracy(tmp_path):
    rep = tmp_path / "r.json"
    rep.write_text('{"signature": {}, "languages": {"en": {"n": 3, "accuracy": NaN}}}')
    proc = run_xlt("report", f"a={rep}")
    assert proc.returncode == 2 and f"{rep}: " in error_line(proc, "report")
    rep.write_text('{"signature": {}, "languages": {"en": {"n": 3, "accuracy": 1.5}}}')
    proc = run_xlt("report", f"a={rep}")
    assert proc.returncode == 2 and "not in [0, 1]" in error_line(proc, "report")


def test_eval_refuses_a_model_with_nan_outputs(tiny_classifier, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_classifier, broken)
    weights = load_file(str(broken / "model.safetensors"))
    key = next(k for k in weights if k.startswith("classifier") and k.endswith("bias"))
    weights[key] = weights[key] * float("nan")
    save_file(weights, str(broken / "model.safetensors"))
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines()) + "\n")
    pred = tmp_path / "pred.jsonl"
    proc = run_xlt("eval", "--model", str(broken), "--engine", "torch", str(inp), "-o", str(tmp_path / "r.json"),
                   "--predictions", str(pred))
    assert proc.returncode == 1 and "non-finite outputs" in error_line(proc, "eval")
    assert not pred.exists() and not (tmp_path / "r.json").exists()


# --- outputs: aliases refused, all or nothing ---------------------------------------------------------

def test_split_refuses_two_spellings_of_one_part(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines(20)) + "\n")
    (tmp_path / "o").mkdir()
    os.symlink(tmp_path / "o", tmp_path / "link")
    for other in ("./o/a.jsonl", str(tmp_path / "o" / "a.jsonl"), "link/a.jsonl", "o//a.jsonl"):
        for force in ([], ["--force"]):
            proc = run_xlt("split", str(inp), "--into", "o/a.jsonl:0.5", "--into", f"{other}:0.5", *force, cwd=tmp_path)
            assert proc.returncode == 2 and "same file" in error_line(proc, "split"), other
            assert list((tmp_path / "o").iterdir()) == []


def test_split_refuses_a_hard_link_to_another_part(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines(20)) + "\n")
    (tmp_path / "a.jsonl").write_text("old\n")
    os.link(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    proc = run_xlt("split", str(inp), "--into", "a.jsonl:0.5", "--into", "b.jsonl:0.5", "--force", cwd=tmp_path)
    assert proc.returncode == 2 and "same file" in error_line(proc, "split")
    assert (tmp_path / "a.jsonl").read_text() == "old\n"


def test_report_refuses_one_file_for_json_and_markdown(tmp_path):
    rep = tmp_path / "r.json"
    rep.write_text(json.dumps({"signature": {}, "languages": {"en": {"n": 3, "accuracy": 0.5, "macro_f1": 0.4}}}))
    for force in ([], ["--force"]):
        proc = run_xlt("report", f"a={rep}", "-o", "x.md", "--markdown", "./x.md", *force, cwd=tmp_path)
        assert proc.returncode == 2 and "same file" in error_line(proc, "report")
        assert not (tmp_path / "x.md").exists()


def test_eval_refuses_predictions_at_the_report_path(tiny_classifier, home, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines()) + "\n")
    proc = run_xlt("eval", "--model", tiny_classifier, str(inp), "-o", "r.json", "--predictions", "./r.json",
                   cwd=tmp_path, env=home)
    assert proc.returncode == 2 and "same file" in error_line(proc, "eval")
    proc = run_xlt("eval", "--model", tiny_classifier, str(inp), "--predictions", "-", cwd=tmp_path, env=home)
    assert proc.returncode == 2 and "stdout" in error_line(proc, "eval")
    assert leftovers(tmp_path, {"in.jsonl"}) == []


def test_eval_leaves_no_predictions_when_it_fails(tiny_classifier, home, tmp_path):
    lines = good_lines(40)
    lines.append('{"id": "z", "lang": "en", "premise": "a", "hypothesis": "b", "label": "maybe"}')  # not a label of the model
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    proc = run_xlt("eval", "--model", tiny_classifier, str(inp), "-o", "r.json", "--predictions", "p.jsonl",
                   "--matrix", "--plot", "m.png", cwd=tmp_path, env=home)
    assert proc.returncode == 2 and f"{inp}:41: " in error_line(proc, "eval")
    assert leftovers(tmp_path, {"in.jsonl"}) == []
    proc = run_xlt("eval", "--model", tiny_classifier, str(inp), "-o", "r.json", "--predictions", "p.jsonl",
                   "--matrix", "--plot", "m.png", "--on-error", "skip", cwd=tmp_path, env=home)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert leftovers(tmp_path, {"in.jsonl"}) == ["m.png", "p.jsonl", "r.json"]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 40


# --- corrupt model files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content", [("config.json", "{not json"), ("xlt.json", '{"labels": ['),
                                          ("config.json", '{"x": NaN}'), ("xlt.json", "[1]")])
def test_corrupt_model_json_is_one_line_naming_the_file(name, content, tiny_classifier, home, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_classifier, model)
    (model / name).write_text(content)
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines()) + "\n")
    for cmd in (["eval", "--model", str(model), str(inp)], ["soft-label", "--teacher", str(model), str(inp)]):
        proc = run_xlt(*cmd, env=home)
        assert proc.returncode == 2, proc.stderr.decode()[-2000:]
        assert str(model / name) in error_line(proc, cmd[0])


def test_pickle_weights_need_an_explicit_opt_in(tiny_classifier, home, tmp_path):
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "m"
    shutil.copytree(tiny_classifier, model)
    torch.save(load_file(str(model / "model.safetensors")), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines()) + "\n")
    for stage, opt in (("eval", "--model"), ("soft-label", "--teacher")):
        proc = run_xlt(stage, opt, str(model), str(inp), env=home)
        assert proc.returncode == 2 and "--allow-pickle" in error_line(proc, stage)
        proc = run_xlt(stage, opt, str(model), str(inp), "--allow-pickle", env=home)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert "pickle" in proc.stderr.decode()  # it says so
    proc = run_xlt("teach", str(inp), "--model", str(model), "--max-steps", "1", "--out", str(tmp_path / "t"), env=home)
    assert proc.returncode == 2 and "--allow-pickle" in error_line(proc, "teach")


# --- signals and closed pipes -------------------------------------------------------------------------

STREAMING = {
    "split": lambda m, out: ["split", "-", "--into", f"{out}:1"],
    "perturb": lambda m, out: ["perturb", "--method", "swap", "-", "-o", out],
    "soft-label": lambda m, out: ["soft-label", "--teacher", m["clf"], "--engine", "torch", "-", "-o", out],
    "eval": lambda m, out: ["eval", "--model", m["clf"], "--engine", "torch", "-", "-o", out + ".json", "--predictions", out],
    "translate": lambda m, out: ["translate", "--model", m["marian"], "--tgt", "fr", "--beam-size", "1", "--max-length", "6", "-", "-o", out],
    "pair": lambda m, out: ["pair", "--src", "en", "-", "-o", out],
    "teach": lambda m, out: ["teach", "-", "--model", m["bert"], "--max-steps", "1", "--out", out],
    "distill": lambda m, out: ["distill", "-", "--student", m["bert"], "--max-steps", "1", "--out", out],
}


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("stage", sorted(STREAMING))
def test_signal_mid_run_leaves_no_temporaries(stage, sig, code, models, home, tmp_path):
    """The stage has read some records from a pipe that stays open (a job mid-stream) when the
    signal comes: it exits 143 / 130 and leaves no output and no temporary file."""
    work = tmp_path / "w"
    work.mkdir()
    out = str(work / "out.jsonl")
    env = dict(os.environ, **home)
    proc = subprocess.Popen([sys.executable, "-m", "xlt", *STREAMING[stage](models, out)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(("\n".join(good_lines(2048, stage)) + "\n").encode())  # several chunks: work has begun
        proc.stdin.flush()
        deadline = time.time() + 120
        # streaming stages stage their output under a temporary name: wait until it exists
        while stage not in ("pair", "teach", "distill") and not list(work.iterdir()) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("stage", ["pair", "split", "perturb", "soft-label"])
def test_head_closes_the_pipe_without_leftovers(stage, models, home, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(good_lines(6000)) + "\n")  # > 1 MB: far more than a pipe buffer
    cmd = {"pair": f"pair --src en {inp}", "split": f"split {inp} --into -:0.5 --into {tmp_path / 'b.jsonl'}:0.5",
           "perturb": f"perturb --method swap {inp}", "soft-label": f"soft-label --teacher {models['clf']} {inp}"}[stage]
    env = dict(os.environ, **home)
    proc = subprocess.run(f"{sys.executable} -m xlt {cmd} | head -1", shell=True, capture_output=True,
                          executable="/bin/bash", timeout=600, env=env)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr.decode() and "Error" not in proc.stderr.decode()
    assert leftovers(tmp_path, {"in.jsonl"}) == []  # split's file part is not left half-written


# --- options ----------------------------------------------------------------------------------------

def test_every_float_option_refuses_nan_and_inf():
    """Every float-typed parameter of every command parses through `common.finite` (or
    `common.probability`): the class of `--lr nan` / `--temperature inf` defects."""
    import typing

    import typer

    from xlt.cli import app, common

    seen = []
    for info in app.registered_commands:
        hints = typing.get_type_hints(info.callback, include_extras=True)
        for pname, hint in hints.items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, *meta = typing.get_args(hint)
            if float not in (base, *typing.get_args(base)):
                continue
            opt = next(m for m in meta if isinstance(m, typer.models.ParameterInfo))
            assert opt.parser in (common.finite, common.probability), f"xlt {info.name} {pname}: a plain float"
            seen.append(f"{info.name} {pname}")
    assert len(seen) >= 15, seen


@pytest.mark.parametrize("args", [
    ["teach", "--lr", "nan", "--out", "x"], ["teach", "--epochs", "inf", "--out", "x"],
    ["teach", "--warmup", "nan", "--out", "x"], ["distill", "--temperature", "nan", "--out", "x"],
    ["distill", "--min-confidence", "-inf", "--out", "x"], ["perturb", "--p", "nan"],
    ["eval", "--model", "m", "--max-length", "-5"], ["soft-label", "--teacher", "t", "--max-length", "-5"],
    ["eval", "--model", "m", "--rescore-margin", "nan"],
])
def test_bad_numeric_options_are_usage_errors(args, tmp_path):
    proc = run_xlt(*args, input="", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    assert list(tmp_path.iterdir()) == []


# --- the README's first pipeline, as written ------------------------------------------------------------

def readme_pipeline() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(xlt translate [^\n]+)\n```", text)
    assert block, "the README's first example is gone"
    return block.group(1)


def test_readme_first_pipeline_runs_as_written(models, home, tmp_path):
    """`xlt translate --model MT --tgt fr en.jsonl | xlt soft-label --teacher en.ckpt | xlt distill
    --out fr.ckpt -`, run verbatim in a directory where MT, en.jsonl and en.ckpt exist."""
    os.symlink(models["marian"], tmp_path / "MT")
    recs = [good(i) for i in range(12)]
    for r in recs:
        del r["teacher"]
    (tmp_path / "en.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    r = run_xlt("teach", "en.jsonl", "--model", models["bert"], "--max-steps", "2", "--out", "en.ckpt", "-q",
                cwd=tmp_path, env=home)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    env = dict(os.environ, **home, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(readme_pipeline(), shell=True, executable="/bin/bash", cwd=tmp_path, env=env,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    manifest = json.loads((tmp_path / "fr.ckpt" / "xlt.json").read_text())
    # the default student: the teacher's own base encoder, recorded by soft-label
    assert manifest["student"] == os.path.abspath(models["bert"])
    assert manifest["train_langs"] == {"fr": 12}


# --- fuzzing ------------------------------------------------------------------------------------------

json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None, exclude_categories=())),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=60) | json_text.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
                      max_size=6))
def test_reader_fuzz_yields_clean_records_or_one_located_error(tmp_path, lines):
    from xlt.errors import InputError
    from xlt.io import dumps, iter_located

    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    try:
        for where, rec in iter_located([str(path)]):
            assert isinstance(rec, dict) and where.startswith(f"{path}:")
            json.loads(dumps(rec))  # every yielded record writes back as strict JSON, encodable as UTF-8
            dumps(rec).encode("utf-8")
    except InputError as exc:
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(exc)), str(exc)
        assert "\n" not in str(exc)


numbers = st.one_of(st.floats(), st.integers(min_value=-(10**40), max_value=10**40), st.booleans(), st.none(),
                    st.text(max_size=3), st.just([]))


@settings(max_examples=400, deadline=None)
@given(teacher=st.fixed_dictionaries({}, optional={
    "labels": st.one_of(st.just(LABELS), st.just(LABELS[::-1]), st.lists(st.text(max_size=3), max_size=4), st.integers()),
    "logits": st.one_of(st.lists(numbers, max_size=4), numbers),
    "probs": st.one_of(st.lists(numbers, max_size=4), numbers),
    "hidden": st.lists(st.floats(), max_size=3),
}), second=st.booleans())
def test_teacher_check_fuzz(teacher, second):
    import numpy as np

    from xlt.distill.softlabel import TeacherCheck
    from xlt.errors import RecordError
    from xlt.train.data import LabelSet

    check = TeacherCheck(LabelSet(LABELS) if second else None, need_hidden="hidden" in teacher)
    try:
        check({"teacher": teacher})
    except RecordError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # accepted: what training builds from it is finite float32, one value per label
    values = np.asarray(teacher[check.kind], dtype=np.float32)
    assert values.shape == (3,) and np.isfinite(values).all()
    if check.kind == "probs":
        assert (values >= 0).all() and values.sum() > 0
    assert sorted(str(x) for x in teacher["labels"]) == sorted(LABELS)
