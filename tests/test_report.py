"""`xlt report`: merging eval reports into one results table (golden values on crafted reports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xlt.errors import InputError, UsageError
from xlt.evaluate.report import load_named, matrix_summary, summarize, to_markdown


def eval_report(accs: dict[str, float], *, model: str = "m", digest: str = "sha256:a", source=("en",),
                compare: dict | None = None, data: dict | None = None, matrix: dict | None = None) -> dict:
    """An `xlt eval` report as build_report writes it (the keys report reads)."""
    langs = {k: {"n": 100, "accuracy": v, "macro_f1": round(v - 0.01, 5)} for k, v in accs.items()}
    rep: dict = {
        "signature": {"xlt": "0.1.0", "model": model, "model_digest": digest, "data": data or {"d.jsonl": "sha256:d"},
                      "fields": ["premise", "hypothesis"], "engine": "torch", "bootstrap": 0, "seed": 0},
        "languages": langs,
        "average": {"languages": len(accs), "n": 100 * len(accs), "accuracy": sum(accs.values()) / len(accs)},
        "average_non_source": None, "source_languages": list(source), "overall": {}, "unlabelled": 0,
    }
    if compare is not None:
        rep["signature"]["compare_model"] = compare["model"]
        rep["signature"]["compare_model_digest"] = compare["digest"]
        rep["compare"] = {"languages": compare["languages"], "average": compare["average"], "samples": 1000}
    if matrix is not None:
        rep["matrix"] = matrix
    return rep


def write(tmp_path: Path, name: str, rep: dict) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(rep))
    return str(p)


@pytest.fixture
def three(tmp_path):
    base = write(tmp_path, "base.json", eval_report({"en": 0.8, "fr": 0.7, "de": 0.6}, model="base.ckpt", digest="sha256:b"))
    adv = write(tmp_path, "adv.json", eval_report(
        {"en": 0.82, "fr": 0.75, "de": 0.59}, model="adv.ckpt", digest="sha256:adv",
        compare={"model": "base.ckpt", "digest": "sha256:b", "average": {"delta": 0.02, "p_value": 0.012},
                 "languages": {"en": {"p_value": 0.3}, "fr": {"p_value": 0.004}, "de": {"p_value": 0.9}}}))
    # compared with something that is not the baseline: its p-values must not be shown
    rs = write(tmp_path, "rs.json", eval_report(
        {"en": 0.78, "fr": 0.72, "de": 0.65}, model="rs.ckpt", digest="sha256:rs",
        compare={"model": "other.ckpt", "digest": "sha256:other", "average": {"delta": 0.0, "p_value": 0.5},
                 "languages": {"fr": {"p_value": 0.001}}}))
    return base, adv, rs


def test_golden_summary(three):
    base, adv, rs = three
    s = summarize(load_named([f"base={base}", f"adv={adv}", f"rs={rs}"]), baseline="base", with_training=False)
    assert s["languages"] == ["en", "fr", "de"] and s["source_languages"] == ["en"]
    assert s["non_source_languages"] == ["fr", "de"]
    b, a, r = s["systems"]
    assert b["average"] == pytest.approx(0.7) and b["average_non_source"] == pytest.approx(0.65)
    assert a["average"] == pytest.approx(0.72) and a["average_non_source"] == pytest.approx(0.67)
    assert a["delta_average"] == pytest.approx(0.02) and a["delta_average_non_source"] == pytest.approx(0.02)
    assert a["languages"]["fr"]["delta"] == pytest.approx(0.05) and a["languages"]["de"]["delta"] == pytest.approx(-0.01)
    assert a["languages"]["fr"]["p_value"] == 0.004 and a["p_value_average"] == 0.012
    assert a["compare"]["is_baseline"] is True and a["same_data_as_baseline"] is True
    assert r["compare"]["is_baseline"] is False and r["p_value_average"] is None
    assert "p_value" not in r["languages"]["fr"]
    assert r["delta_average"] == pytest.approx(0.01667) and r["delta_average_non_source"] == pytest.approx(0.035)
    assert "delta_average" not in b


def test_golden_markdown(three):
    base, adv, rs = three
    s = summarize(load_named([f"base={base}", f"adv={adv}", f"rs={rs}"]), baseline="base", with_training=False)
    md = to_markdown(s, title="t")
    lines = md.splitlines()
    assert lines[0] == "### t"
    assert lines[2] == "| system | en | fr | de | avg | avg non-src | Δ avg | Δ non-src | p |"
    assert lines[3] == "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[4] == "| base (baseline) | 80.0 | 70.0 | 60.0 | 70.0 | 65.0 |  |  |  |"
    assert lines[5] == "| adv | 82.0 | 75.0* | 59.0 | 72.0 | 67.0 | +2.0 | +2.0 | 0.012 |"
    assert lines[6] == "| rs | 78.0 | 72.0 | 65.0 | 71.7 | 68.5 | +1.7 | +3.5 | – |"
    assert "p: paired bootstrap" in md and "avg non-src: mean over the languages shown other than en." in md


def test_langs_and_source_choose_the_columns(three):
    base, adv, _ = three
    s = summarize(load_named([f"base={base}", f"adv={adv}"]), baseline="base", langs=["de", "fr"], source=[],
                  with_training=False)
    assert s["languages"] == ["de", "fr"] and s["non_source_languages"] == ["de", "fr"]
    assert s["systems"][1]["average"] == pytest.approx(0.67)
    head = to_markdown(s).splitlines()[0]
    assert head == "| system | de | fr | avg | Δ avg | p |"  # no non-source column without a source
    with pytest.raises(UsageError, match="no report scored xx"):
        summarize(load_named([f"base={base}"]), langs=["xx"], with_training=False)


def test_missing_language_gives_no_average(tmp_path, three):
    base = three[0]
    part = write(tmp_path, "part.json", eval_report({"en": 0.9, "fr": 0.5}))
    s = summarize(load_named([f"base={base}", f"part={part}"]), baseline="base", with_training=False)
    p = s["systems"][1]
    assert p["languages"]["de"] is None and p["average"] is None and p["delta_average"] is None
    assert "| part | 90.0 | 50.0 | – | – | – | – | – |" in to_markdown(s)


def test_merged_rows_take_each_language_from_one_report(tmp_path, three):
    base = three[0]
    fr = write(tmp_path, "fr.json", eval_report({"fr": 0.5}, model="fr.ckpt", source=("fr",)))
    de = write(tmp_path, "de.json", eval_report({"de": 0.4}, model="de.ckpt", source=("de",)))
    s = summarize(load_named([f"base={base}", f"small={fr},{de}"]), baseline="base", langs=["fr", "de"],
                  with_training=False)
    small = s["systems"][1]
    assert small["languages"]["fr"]["accuracy"] == 0.5 and small["languages"]["de"]["accuracy"] == 0.4
    assert small["average"] == pytest.approx(0.45) and small["delta_average"] == pytest.approx(-0.2)
    assert small["report"] == f"{fr},{de}"
    with pytest.raises(InputError, match="both score language 'fr'"):
        load_named([f"x={fr},{fr}"])


def test_matrix_summary_golden():
    m = {"premise_langs": ["en", "fr"], "hypothesis_langs": ["en", "fr"], "accuracy": [[0.8, 0.6], [0.5, None]]}
    assert matrix_summary(m) == {"same_language": 0.8, "cross_language": 0.55, "all": 0.63333, "cells": 3}
    assert matrix_summary(None) is None


def test_different_data_is_warned(tmp_path, capsys):
    from xlt import log

    log.configure(command="xlt report")
    a = write(tmp_path, "a.json", eval_report({"en": 0.5}, data={"x.jsonl": "sha256:1"}))
    b = write(tmp_path, "b.json", eval_report({"en": 0.6}, data={"y.jsonl": "sha256:2"}))
    s = summarize(load_named([f"a={a}", f"b={b}"]), baseline="a", with_training=False)
    assert s["systems"][1]["same_data_as_baseline"] is False
    assert "scored on different data" in capsys.readouterr().err


def test_training_information_from_the_eval_report(xlt, tmp_path, tiny_bert):
    """eval records how the checkpoint was trained in its signature; report shows it from there
    (the checkpoint may be gone by then)."""
    train = tmp_path / "train.jsonl"
    rows = [{"id": str(i), "lang": "en", "premise": "a man sits", "hypothesis": "a dog runs",
             "label": ["entailment", "neutral", "contradiction"][i % 3]} for i in range(12)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = tmp_path / "m.ckpt"
    proc = xlt("teach", str(train), "--model", tiny_bert, "--epochs", "1", "--batch-size", "4", "--seed", "5",
               "--out", str(ckpt), "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    rep = tmp_path / "r.json"
    proc = xlt("eval", "--model", str(ckpt), "--compare", str(ckpt), str(train), "-o", str(rep), "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    sig = json.loads(rep.read_text())["signature"]
    assert sig["training"]["seed"] == 5 and sig["training"]["kind"] == "teach"
    assert sig["compare_training"] == sig["training"]
    # the digest teach stored in xlt.json is the one eval used (read back, not recomputed)
    assert sig["model_digest"] == json.loads((ckpt / "xlt.json").read_text())["content_digest"]["value"]
    import shutil

    shutil.rmtree(ckpt)
    out, md = tmp_path / "results.json", tmp_path / "results.md"
    proc = xlt("report", f"m={rep}", "-o", str(out), "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr.decode()
    t = json.loads(out.read_text())["systems"][0]["training"]
    assert t["seed"] == 5 and t["steps"] == 3 and t["kind"] == "teach" and t["examples_seen"] == 12
    assert t["train_seconds"] >= 0 and t["checkpoint"] == str(ckpt)
    assert "| m | " in md.read_text() and "| 5 | 3 |" in md.read_text()
    assert "recorded them in each report's signature" in md.read_text()
    assert "| m | " in proc.stderr.decode()  # the table on stderr


def test_report_reads_only_the_named_reports(tmp_path):
    """A report's contents never make `report` open another path: signature.model naming a
    checkpoint dir with an xlt.json (and no digest to check) is not read."""
    import sys

    ckpt = tmp_path / "m.ckpt"
    ckpt.mkdir()
    (ckpt / "xlt.json").write_text(json.dumps({"kind": "teach", "seed": 5, "training": {"steps": 3}}))
    (ckpt / "config.json").write_text("{}")
    old = eval_report({"en": 0.8}, model=str(ckpt), digest=None)  # made before eval recorded training
    new = eval_report({"en": 0.8}, model=str(ckpt), digest=None)
    new["signature"]["training"] = {"kind": "teach", "seed": 9, "steps": 4, "train_seconds": 60.0}
    paths = [write(tmp_path, "old.json", old), write(tmp_path, "new.json", new)]
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple) -> None:
        if watching[0] and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed: `watching` turns this one off
    try:
        s = summarize(load_named([f"old={paths[0]}", f"new={paths[1]}"]))
    finally:
        watching[0] = False
    assert [p for p in opened if p.startswith(str(tmp_path))] == paths
    old_sys, new_sys = s["systems"]
    assert old_sys["training"] is None
    assert new_sys["training"] == {"checkpoint": str(ckpt), "kind": "teach", "seed": 9, "steps": 4, "train_seconds": 60.0}
    md = to_markdown(s)
    assert "| new | 80.0 | 80.0 | 9 | 4 | 1.0m |" in md and "| old | 80.0 | 80.0 | – | – | – |" in md


# --- the command contract ------------------------------------------------------------------------

def one_error(proc) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith("xlt report: error: "), lines[0]
    return lines[0][len("xlt report: error: "):]


def test_cli_outputs(xlt, tmp_path, three):
    base, adv, rs = three
    out, md = tmp_path / "o" / "results.json", tmp_path / "o" / "results.md"
    proc = xlt("report", f"base={base}", f"adv={adv}", "--baseline", "base", "-o", str(out), "--markdown", str(md),
               "--title", "robust", "--quiet")
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""
    s = json.loads(out.read_text())
    assert [x["name"] for x in s["systems"]] == ["base", "adv"] and s["baseline"] == "base"
    assert md.read_text().startswith("### robust\n")
    # stdout when no -o; existing outputs refused without --force
    proc = xlt("report", f"base={base}", "--quiet")
    assert json.loads(proc.stdout)["systems"][0]["name"] == "base"
    assert one_error(xlt("report", f"base={base}", "-o", str(out))) == f"output {out} exists; pass --force to overwrite it"
    assert one_error(xlt("report", f"base={base}", "--markdown", str(md))) == f"output {md} exists; pass --force to overwrite it"
    assert xlt("report", f"base={base}", "-o", str(out), "--markdown", str(md), "--force").returncode == 0
    assert sorted(os.listdir(tmp_path / "o")) == ["results.json", "results.md"]


def test_cli_errors(xlt, tmp_path, three):
    base = three[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert one_error(xlt("report", f"x={bad}")).startswith(f"{bad}: invalid JSON")
    notrep = tmp_path / "notrep.json"
    notrep.write_text("[1]")
    assert one_error(xlt("report", f"x={notrep}")) == f'{notrep}: not an xlt eval report (no "languages" object)'
    assert one_error(xlt("report", f"x={tmp_path / 'no.json'}")) == f"{tmp_path / 'no.json'}: no such file"
    assert one_error(xlt("report", base)) == f"expected NAME=REPORT.json, not {base!r}"
    assert one_error(xlt("report", f"a={base}", f"a={base}")) == "system name 'a' is given twice"
    assert one_error(xlt("report", f"a={base}", "--baseline", "b")) == "--baseline 'b' is not one of the systems (a)"
    assert one_error(xlt("report")) == "give at least one NAME=REPORT.json"


def test_verdicts_say_which_system_beat_the_baseline(three):
    base, adv, rs = three
    summary = summarize(load_named([f"base={base}", f"adv={adv}", f"rs={rs}"]), baseline="base")
    by = {v["system"]: v for v in summary["verdicts"]}
    # adv was compared with the baseline's model: p 0.012 on the average, +2 points
    assert by["adv"] == {"system": "adv", "baseline": "base", "over": "average", "delta": pytest.approx(0.02),
                         "p_value": 0.012, "verdict": "better"}
    # rs was compared with another model: no test against the baseline, so no verdict from the means
    assert by["rs"]["verdict"] == "untested" and by["rs"]["p_value"] is None
    md = to_markdown(summary)
    assert "- adv **beats** base: +2.0 points on the average (paired bootstrap p = 0.012)." in md
    assert "- rs vs base: +1.7 points on the average, no paired test" in md
    # a p-value below the table's resolution reads "p < 0.001", not "p = <0.001"
    summary["verdicts"][0]["p_value"] = 0.0
    assert "(paired bootstrap p < 0.001)." in to_markdown(summary)


@pytest.mark.parametrize("p,delta,verdict", [(0.001, 0.03, "better"), (0.001, -0.03, "worse"),
                                             (0.2, 0.03, "no significant difference")])
def test_verdict_rule(tmp_path, p, delta, verdict):
    base = write(tmp_path, "b.json", eval_report({"en": 0.8, "fr": 0.7}, model="b", digest="sha256:b"))
    sys_ = write(tmp_path, "s.json", eval_report(
        {"en": 0.8, "fr": 0.7 + delta}, model="s", digest="sha256:s",
        compare={"model": "b", "digest": "sha256:b", "languages": {},
                 "average": {"delta": delta / 2, "ci95": [0, 0], "p_value": p}}))
    summary = summarize(load_named([f"b={base}", f"s={sys_}"]), baseline="b")
    assert summary["verdicts"][0]["verdict"] == verdict
    assert {"better": "**beats** b", "worse": "is **worse** than b",
            "no significant difference": "not significantly different"}[verdict] in to_markdown(summary)


def test_plot_is_a_png_with_intervals(xlt, tmp_path):
    rep = eval_report({"en": 0.8, "fr": 0.7}, model="b", digest="sha256:b")
    rep["languages"]["en"]["ci95"] = [0.75, 0.85]
    base = write(tmp_path, "b.json", rep)
    other = write(tmp_path, "o.json", eval_report({"en": 0.7, "fr": 0.72}, model="o", digest="sha256:o"))
    png = tmp_path / "chart.png"
    proc = xlt("report", f"b={base}", f"o={other}", "--baseline", "b", "--plot", str(png), "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(proc.stdout)
    assert summary["systems"][0]["languages"]["en"]["ci95"] == [0.75, 0.85]
    # refused like any output: exists without --force, or the same file as -o
    assert xlt("report", f"b={base}", "--plot", str(png)).returncode == 2
    assert xlt("report", f"b={base}", "--plot", "x.png", "-o", "./x.png", cwd=tmp_path).returncode == 2


@pytest.fixture
def two_seeds(tmp_path):
    """Seed 1 and seed 2 of a baseline and of a method; m2 was tested against b2 (its own seed's baseline)."""
    b1 = write(tmp_path, "b1.json", eval_report({"en": 0.80, "fr": 0.60}, model="b1", digest="sha256:b1"))
    b2 = write(tmp_path, "b2.json", eval_report({"en": 0.78, "fr": 0.62}, model="b2", digest="sha256:b2"))
    m1 = write(tmp_path, "m1.json", eval_report(
        {"en": 0.81, "fr": 0.66}, model="m1", digest="sha256:m1",
        compare={"model": "b1", "digest": "sha256:b1", "average": {"p_value": 0.01}, "languages": {"fr": {"p_value": 0.002}}}))
    m2 = write(tmp_path, "m2.json", eval_report(
        {"en": 0.79, "fr": 0.70}, model="m2", digest="sha256:m2",
        compare={"model": "b2", "digest": "sha256:b2", "average": {"p_value": 0.03}, "languages": {"fr": {"p_value": 0.001}}}))
    return [f"b1={b1}", f"b2={b2}", f"m1={m1}", f"m2={m2}"]


def test_a_row_with_its_own_baseline_and_seed_means(two_seeds):
    s = summarize(load_named(two_seeds), baseline="b1", pairs={"m2": "b2"},
                  means=[("b mean", ["b1", "b2"]), ("m mean", ["m1", "m2"])], with_training=False)
    by = {x["name"]: x for x in s["systems"]}
    # without the pair, m2 would be compared with b1 and its test (against b2) dropped
    assert by["m2"]["baseline"] == "b2" and by["m2"]["compare"]["is_baseline"] is True
    assert by["m2"]["delta_average"] == pytest.approx(0.045) and by["m2"]["p_value_average"] == 0.03
    assert by["m2"]["languages"]["fr"]["delta"] == pytest.approx(0.08) and by["m2"]["languages"]["fr"]["p_value"] == 0.001
    assert by["b2"]["baseline"] == "b1" and by["b2"]["delta_average"] == pytest.approx(0.0)
    assert by["m1"]["baseline"] == "b1" and by["m1"]["delta_average"] == pytest.approx(0.035)
    # the mean rows: mean accuracies; the method's delta is the mean of each seed's paired delta
    m = by["m mean"]
    assert m["mean_of"] == ["m1", "m2"] and m["baseline"] == "b1/b2"
    assert m["languages"]["fr"]["accuracy"] == pytest.approx(0.68) and m["languages"]["fr"]["delta"] == pytest.approx(0.07)
    assert m["average"] == pytest.approx(0.74) and m["delta_average"] == pytest.approx(0.04) and m["p_value_average"] is None
    # the baseline's own row has no delta, so neither has a mean it is part of
    assert by["b mean"]["average"] == pytest.approx(0.70) and by["b mean"]["delta_average"] is None
    assert [v["system"] for v in s["verdicts"]] == ["b2", "m1", "m2"]
    assert s["verdicts"][2] == {"system": "m2", "baseline": "b2", "over": "average", "delta": pytest.approx(0.045),
                                "p_value": 0.03, "verdict": "better"}
    md = to_markdown(s).splitlines()
    assert md[0] == "| system | en | fr | avg | avg non-src | Δ avg | Δ non-src | vs | p |"
    assert md[2:8] == ["| b1 (baseline) | 80.0 | 60.0 | 70.0 | 60.0 |  |  |  |  |",
                       "| b2 | 78.0 | 62.0 | 70.0 | 62.0 | +0.0 | +2.0 | b1 | – |",
                       "| m1 | 81.0 | 66.0* | 73.5 | 66.0 | +3.5 | +6.0 | b1 | 0.010 |",
                       "| m2 | 79.0 | 70.0* | 74.5 | 70.0 | +4.5 | +8.0 | b2 | 0.030 |",
                       "| b mean | 79.0 | 61.0 | 70.0 | 61.0 | – | – | b1 | – |",
                       "| m mean | 80.0 | 68.0 | 74.0 | 68.0 | +4.0 | +7.0 | b1/b2 | – |"]
    assert any(x.startswith("Mean rows (b mean = b1 + b2, m mean = m1 + m2)") for x in md)
    assert "- m2 **beats** b2: +4.5 points on the average (paired bootstrap p = 0.030)." in md


def test_seed_means_show_both_seeds(xlt, tmp_path, two_seeds):
    proc = xlt("report", *two_seeds, "--baseline", "b1", "--baseline", "m2=b2", "--mean", "m mean=m1,m2", "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    s = json.loads(proc.stdout)
    assert s["pairs"] == {"m2": "b2"} and s["systems"][-1]["name"] == "m mean"
    # no checkpoint behind the crafted reports: no seeds recorded, and none made up
    assert s["systems"][-1]["training"]["seeds"] == [None, None]


@pytest.mark.parametrize("args,message", [
    (["--baseline", "m2=b2"], "--baseline SYSTEM=BASELINE needs the table's own baseline too (--baseline NAME)"),
    (["--baseline", "b1", "--baseline", "b2"], "--baseline NAME is given 2 times (b1, b2); give one, and SYSTEM=BASELINE for a row with its own"),
    (["--baseline", "b1", "--baseline", "m2=zz"], "--baseline m2=zz: 'zz' is not one of the systems (b1, b2, m1, m2)"),
    (["--baseline", "b1", "--baseline", "m2=m2"], "--baseline m2=m2: a system is not compared with itself, and the table's baseline has no baseline"),
    (["--baseline", "b1", "--baseline", "b1=b2"], "--baseline b1=b2: a system is not compared with itself, and the table's baseline has no baseline"),
    (["--baseline", "b1", "--baseline", "m2=b2", "--baseline", "m2=b1"], "--baseline expects NAME or SYSTEM=BASELINE (each system once), not 'm2=b1'"),
    (["--mean", "x=m1"], "--mean expects NAME=SYSTEM,SYSTEM[,...] (two or more different systems), not 'x=m1'"),
    (["--mean", "x=m1,m1"], "--mean expects NAME=SYSTEM,SYSTEM[,...] (two or more different systems), not 'x=m1,m1'"),
    (["--mean", "x=m1,zz"], "--mean x: 'zz' is not one of the systems (b1, b2, m1, m2)"),
    (["--mean", "m1=m1,m2"], "--mean m1: the name is already a system's"),
])
def test_baseline_pairs_and_means_refused(xlt, two_seeds, args, message):
    proc = xlt("report", *two_seeds, *args)
    assert proc.returncode == 2 and one_error(proc) == message
