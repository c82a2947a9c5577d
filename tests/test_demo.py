"""`make demo` (the README's main job) at DEMO_SCALE=ci: the whole pipeline cannot silently break."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_make_demo_ci_scale(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(["make", "-C", str(ROOT), "demo", f"DEMO={out}", "DEMO_SCALE=ci"], env=env,
                       capture_output=True, timeout=1800)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert b"demo results in" in r.stdout
    en = json.loads((out / "report.en.json").read_text())
    # 4 sample languages -> 16 premise x hypothesis pairs, 30 records each
    assert en["matrix"]["premise_langs"] == ["en", "fr", "de", "ru"]
    assert en["average"]["n"] == 16 * 30
    assert (out / "matrix.en.png").read_bytes()[:4] == b"\x89PNG"
    student = json.loads((out / "report.student.json").read_text())
    assert student["average"]["n"] == 16 * 30
    robust = json.loads((out / "report.robust.json").read_text())
    assert "compare" in robust and robust["signature"]["compare_model"].endswith("en.ckpt")
    for ckpt in ("en.ckpt", "student.ckpt", "robust.ckpt"):
        assert json.loads((out / ckpt / "xlt.json").read_text())["training"]["steps"] == 2
    # a second run has nothing left to do
    r = subprocess.run(["make", "-C", str(ROOT), "-q", f"DEMO={out}", "DEMO_SCALE=ci",
                        str(out / "report.en.json"), str(out / "report.student.json"), str(out / "report.robust.json")],
                       env=env, capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
