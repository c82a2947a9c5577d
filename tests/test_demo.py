"""`make demo` (the README's main job) at DEMO_SCALE=ci: the whole pipeline cannot silently break,
and it ends with the summary table, the verdicts and the pictures."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

LANGS = ["en", "fr", "de", "ru", "zh", "ar", "sw"]


def test_make_demo_ci_scale(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(["make", "-C", str(ROOT), "demo", f"DEMO={out}", "DEMO_SCALE=ci"], env=env,
                       capture_output=True, timeout=1800)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    err = r.stderr.decode()
    assert "demo results in" in err
    teacher = json.loads((out / "report.teacher.json").read_text())
    assert list(teacher["languages"]) == LANGS
    sizes = {v["n"] for v in teacher["languages"].values()}
    assert len(sizes) == 1 and sizes.pop() > 0  # the same test ids in every language (parallel)
    assert all("ci95" in v for v in teacher["languages"].values())
    for name in ("xd", "robust"):
        rep = json.loads((out / f"report.{name}.json").read_text())
        assert rep["compare"]["average_non_source"]["p_value"] is not None
        assert rep["signature"]["compare_model_digest"] == teacher["signature"]["model_digest"]
    # the unlabelled pool and the test half never share a premise
    pool = {json.loads(x)["premise"] for x in (out / "pool.en.jsonl").read_text().splitlines()}
    test = {json.loads(x)["premise"] for x in (out / "test.en.jsonl").read_text().splitlines()}
    assert pool and test and not pool & test
    matrix = json.loads((out / "report.matrix.json").read_text())["matrix"]
    assert matrix["premise_langs"] == ["en", "ru", "zh"]
    for png in ("matrix.teacher.png", "accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["systems"]] == ["teacher", "XD", "RS-RP"]
    assert {v["system"] for v in summary["verdicts"]} == {"XD", "RS-RP"}
    assert all(v["verdict"] in ("better", "worse", "no significant difference") for v in summary["verdicts"])
    md = (out / "summary.md").read_text()
    assert "| teacher (baseline) |" in md and "- XD " in md and "- RS-RP " in md
    assert "| teacher (baseline) |" in err  # the table is on the terminal too
    for ckpt in ("teacher.ckpt", "xd.ckpt", "robust.ckpt"):
        assert json.loads((out / ckpt / "xlt.json").read_text())["training"]["steps"] == 2
    # a second run has nothing left to do
    r = subprocess.run(["make", "-C", str(ROOT), "-q", f"DEMO={out}", "DEMO_SCALE=ci", str(out / "summary.md")],
                       env=env, capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
