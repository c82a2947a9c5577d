"""`xlt eval` and the metrics behind it: golden values, intervals, paired tests, matrices."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_xlt
from xlt.evaluate.metrics import accuracy, bootstrap_ci, macro_f1, paired_bootstrap
from xlt.evaluate.scoring import Scored, build_matrix, build_report
from xlt.train.data import LabelSet


def test_accuracy_and_macro_f1_golden():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    # class 0: tp 2 fp 0 fn 1 -> 4/5; class 1: tp 1 fp 1 fn 1 -> 2/4; class 2: tp 1 fp 1 fn 0 -> 2/3
    assert macro_f1(gold, pred, 3) == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)
    # a class never seen in gold nor predicted is left out of the mean
    assert macro_f1([0, 1], [0, 1], 3) == pytest.approx(1.0)
    # a class predicted but never right counts 0
    assert macro_f1([0, 0], [0, 1], 2) == pytest.approx((2 / 3 + 0) / 2)


def test_bootstrap_interval_contains_point_estimate():
    correct = [1] * 70 + [0] * 30
    lo, hi = bootstrap_ci(correct, samples=500, seed=1)
    assert lo < 0.7 < hi
    assert 0.55 < lo and hi < 0.85
    assert bootstrap_ci(correct, samples=500, seed=1) == (lo, hi)  # deterministic by seed


def test_paired_bootstrap():
    a = [1] * 80 + [0] * 20
    same = paired_bootstrap(a, a, samples=300, seed=0)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    worse = [1] * 50 + [0] * 50
    test = paired_bootstrap(a, worse, samples=1000, seed=0)
    assert test["delta"] == pytest.approx(0.3)
    assert test["p_value"] < 0.01
    assert test["ci95"][0] > 0
    # one record's difference is not significant
    b = [0] + a[1:]
    assert paired_bootstrap(a, b, samples=1000, seed=0)["p_value"] > 0.2
    # grouped: the statistic is the mean of per-group accuracies
    g = paired_bootstrap([1, 1, 0, 0], [0, 0, 0, 0], samples=200, seed=0, groups=["x", "x", "y", "y"])
    assert g["delta"] == pytest.approx(0.5)


def crafted() -> Scored:
    s = Scored(preds=[[]])
    # (premise lang, hypothesis lang, gold, pred)
    rows = [("en", "en", 0, 0), ("en", "en", 1, 1), ("en", "fr", 0, 1), ("en", "fr", 1, 1),
            ("fr", "en", 2, 2), ("fr", "fr", 0, 0), ("fr", "fr", 2, 1), ("fr", "fr", 1, -5)]
    for p, h, g, pr in rows:
        s.pair_langs.append((p, h))
        s.langs.append(p if p == h else f"{p}-{h}")
        s.gold.append(g if pr != -5 else -1)
        s.preds[0].append(max(pr, 0))
    s.unlabelled = 1
    s.unlabelled_by_lang = {"fr": 1}
    return s


def test_matrix_cells_on_crafted_set():
    m = build_matrix(crafted())
    assert m["premise_langs"] == ["en", "fr"]
    assert m["accuracy"] == [[1.0, 0.5], [1.0, 0.5]]
    assert m["n"] == [[2, 2], [1, 2]]  # the unlabelled fr-fr record is not scored


def test_report_averages_and_non_source():
    r = build_report(crafted(), labels=LabelSet(["a", "b", "c"]), source_langs=["en"], matrix=True, signature={})
    assert r["languages"]["en"]["accuracy"] == 1.0
    assert r["languages"]["en-fr"] == {"n": 2, "accuracy": 0.5, "macro_f1": pytest.approx(1 / 3, abs=1e-5)}
    assert r["languages"]["fr"]["unlabelled"] == 1
    assert r["average"]["accuracy"] == pytest.approx((1.0 + 0.5 + 1.0 + 0.5) / 4)
    assert r["average_non_source"]["languages"] == 3
    assert r["unlabelled"] == 1
    assert r["overall"]["n"] == 7


@pytest.fixture(scope="module")
def pairs_all(tmp_path_factory):
    """`xlt pair --all` over a small self-made 3-language parallel set."""
    d = tmp_path_factory.mktemp("eval-data")
    base = [("the dog runs", "a dog runs", "entailment"), ("the cat sits", "the man sleeps", "neutral"),
            ("a woman reads", "nobody reads", "contradiction"), ("the child plays", "a child plays", "entailment")]
    files = []
    for lang in ("en", "fr", "de"):
        p = d / f"{lang}.jsonl"
        with open(p, "w") as fh:
            for i, (a, b, lab) in enumerate(base):
                fh.write(json.dumps({"id": f"e{i}", "lang": lang, "premise": f"{a} {lang}", "hypothesis": b, "label": lab}) + "\n")
        files.append(str(p))
    r = run_xlt("pair", "--all", *files)
    assert r.returncode == 0, r.stderr.decode()
    path = d / "all.jsonl"
    path.write_bytes(r.stdout)
    return str(path)


def test_eval_cli_matrix_plot_predictions_compare(tiny_classifier, pairs_all, tmp_path):
    plot = tmp_path / "m.png"
    preds = tmp_path / "pred.jsonl"
    out = tmp_path / "report.json"
    r = run_xlt("eval", "--model", tiny_classifier, pairs_all, "--matrix", "--plot", str(plot), "--predictions",
                str(preds), "--compare", tiny_classifier, "--bootstrap", "50", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    rep = json.loads(out.read_text())
    m = rep["matrix"]
    assert m["premise_langs"] == ["en", "fr", "de"]
    assert m["n"] == [[4, 4, 4]] * 3
    assert set(rep["languages"]) == {"en", "fr", "de", "en-fr", "en-de", "fr-en", "fr-de", "de-en", "de-fr"}
    assert all(v["ci95"][0] <= v["accuracy"] <= v["ci95"][1] for v in rep["languages"].values())
    assert rep["compare"]["average"]["delta"] == 0  # a model against itself
    assert rep["signature"]["model_digest"].startswith("sha256:")
    assert list(rep["signature"]["data"]) == [pairs_all]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(lines) == 36
    assert lines[0]["pred"]["label"] in ("entailment", "neutral", "contradiction")
    assert sum(lines[0]["pred"]["probs"]) == pytest.approx(1, abs=1e-4)
    assert "accuracy" in r.stderr.decode()  # the table goes to stderr


def test_eval_unlabelled_counted_not_scored(tiny_classifier):
    recs = [{"id": "1", "lang": "en", "premise": "a dog", "hypothesis": "a cat", "label": "neutral"},
            {"id": "2", "lang": "en", "premise": "a dog", "hypothesis": "a cat"}]
    r = run_xlt("eval", "--model", tiny_classifier, input="".join(json.dumps(x) + "\n" for x in recs))
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["languages"]["en"]["n"] == 1 and rep["unlabelled"] == 1
    assert "without a label" in r.stderr.decode()


@pytest.mark.parametrize("text,message", [
    ('{"id": "1", "lang": "en", "premise": "a", "hypothesis": "b", "label": "neutral"}\n{"id": 2\n', "<stdin>:2: invalid JSON"),
    ('{"id": "1", "lang": "en", "premise": "a", "hypothesis": "b", "label": "maybe"}\n', "<stdin>:1: label \"maybe\" is not one of"),
    ('{"id": "1", "lang": "en", "premise": "", "hypothesis": "b"}\n', '<stdin>:1: field "premise" is empty'),
    ("", "no records"),
])
def test_eval_bad_input(tiny_classifier, text, message):
    r = run_xlt("eval", "--model", tiny_classifier, "-", input=text)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.startswith("xlt eval: error: ") and message in err, err


def test_eval_plot_needs_matrix_and_output_not_clobbered(tiny_classifier, pairs_all, tmp_path):
    r = run_xlt("eval", "--model", tiny_classifier, pairs_all, "--plot", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "--matrix" in r.stderr.decode()
    out = tmp_path / "r.json"
    out.write_text("keep")
    r = run_xlt("eval", "--model", tiny_classifier, pairs_all, "-o", str(out))
    assert r.returncode == 2 and out.read_text() == "keep"


def test_eval_unknown_model_is_clear(pairs_all):
    r = run_xlt("eval", "--model", "/nonexistent/model-dir-xyz", pairs_all)
    assert r.returncode == 2
    assert "xlt eval: error:" in r.stderr.decode()


def test_predictions_file_is_a_frozen_model(tiny_classifier, tmp_path):
    labels = ["contradiction", "entailment", "neutral"]
    data = [{"id": str(i), "lang": "en" if i < 3 else "fr", "premise": f"premise {i}", "hypothesis": f"hypothesis {i}",
             "label": labels[i % 3]} for i in range(6)]
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in data))
    # crafted predictions: right on records 0, 1, 3, 4; wrong on 2 and 5
    guess = [0, 1, 0, 0, 1, 0]
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text("".join(json.dumps({**x, "pred": {"label": labels[g], "labels": labels,
                                                          "probs": [0.8 if k == g else 0.1 for k in range(3)]}}) + "\n"
                               for x, g in zip(data, guess)))
    r = run_xlt("eval", "--model", str(crafted), str(crafted))
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["languages"]["en"]["accuracy"] == pytest.approx(2 / 3, abs=1e-5)
    assert rep["average"]["accuracy"] == pytest.approx(4 / 6, abs=1e-5)
    assert rep["signature"]["engine"] == "predictions"
    # a real model's predictions, then compared against by file: the same as comparing the model itself
    preds = tmp_path / "a.pred.jsonl"
    r = run_xlt("eval", "--model", tiny_classifier, str(src), "--predictions", str(preds))
    assert r.returncode == 0, r.stderr.decode()
    first = json.loads(preds.read_text().splitlines()[0])["pred"]
    assert sorted(first["labels"]) == labels and first["model"].startswith("sha256:")
    by_model = json.loads(run_xlt("eval", "--model", str(crafted), "--compare", tiny_classifier, str(src)).stdout)
    by_file = json.loads(run_xlt("eval", "--model", str(crafted), "--compare", str(preds), str(src)).stdout)
    assert by_file["compare"] == by_model["compare"]
    assert by_file["signature"]["compare_model_digest"] == first["model"]
    # predictions of other records (or in another order) are refused, not silently mis-paired
    rev = tmp_path / "rev.jsonl"
    rev.write_text("".join(reversed(preds.read_text().splitlines(keepends=True))))
    r = run_xlt("eval", "--model", str(crafted), "--compare", str(rev), str(src))
    assert r.returncode == 2 and "same records in the same order" in r.stderr.decode()
    r = run_xlt("eval", "--model", str(src), str(src))
    assert r.returncode == 2 and "predictions file" in r.stderr.decode()


def test_eval_defaults_to_the_models_own_outputs(tiny_classifier, tmp_path):
    """A published number must not depend on the engine: eval's default (ct2, no --compute-type) is
    float32 and predicts what torch predicts; int8 is there when asked for, and named."""
    recs = [{"id": str(i), "lang": "en", "premise": p, "hypothesis": h, "label": ["entailment", "neutral", "contradiction"][i % 3]}
            for i, (p, h) in enumerate([("a man sits in the park", "a dog runs"), ("the cat sleeps", "a man"),
                                        ("x", "y"), ("the old woman reads a book", "she reads")] * 3)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    env = {"XLT_HOME": str(tmp_path / "home")}

    def run(name: str, *opts: str) -> tuple[dict, list]:
        preds = tmp_path / f"{name}.pred.jsonl"
        r = run_xlt("eval", "--model", tiny_classifier, *opts, "--threads", "1", "--predictions", str(preds),
                    str(data), env=env)
        assert r.returncode == 0, r.stderr.decode()
        return json.loads(r.stdout), [json.loads(x)["pred"] for x in preds.read_text().splitlines()]

    default, got = run("default")
    torch_rep, ref = run("torch", "--engine", "torch")
    assert default["signature"]["engine"] == "ct2:float32" and torch_rep["signature"]["engine"] == "torch"
    assert [p["label"] for p in got] == [p["label"] for p in ref]
    for a, b in zip(got, ref):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-4)
    assert default["languages"] == torch_rep["languages"]
    int8, _ = run("int8", "--compute-type", "int8")
    assert int8["signature"]["engine"] == "ct2:int8+float32<0.03"


def test_an_eval_of_saved_predictions_is_the_eval_of_the_model(tiny_bert, tmp_path):
    # The predictions file carries the model's source languages and its training record: scoring it
    # (or comparing by it) gives the model's own non-source average, paired test, seed and steps,
    # not a report without them.
    labels = ["contradiction", "entailment", "neutral"]
    data = [{"id": str(i), "lang": lang, "premise": f"premise {i} of {lang}", "hypothesis": f"hypothesis {i % 4}",
             "label": labels[i % 3]} for lang in ("en", "fr", "de") for i in range(12)]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(x) + "\n" for x in data if x["lang"] == "en"))
    test.write_text("".join(json.dumps(x) + "\n" for x in data))
    models = {}
    for seed in ("1", "2"):
        models[seed] = str(tmp_path / f"m{seed}.ckpt")
        r = run_xlt("teach", str(train), "--model", tiny_bert, "--labels", ",".join(labels), "--epochs", "1",
                    "--batch-size", "4", "--seed", seed, "--out", models[seed], "-q")
        assert r.returncode == 0, r.stderr.decode()
    preds = {s: tmp_path / f"m{s}.pred.jsonl" for s in models}
    reps = {}
    for s in models:
        r = run_xlt("eval", "--model", models[s], str(test), "--predictions", str(preds[s]), "-q")
        assert r.returncode == 0, r.stderr.decode()
        reps[s] = json.loads(r.stdout)
    assert json.loads(preds["1"].read_text().splitlines()[0])["pred"]["source_langs"] == ["en"]
    by_file = json.loads(run_xlt("eval", "--model", str(preds["1"]), str(test), "-q").stdout)
    assert by_file["source_languages"] == reps["1"]["source_languages"] == ["en"]
    assert by_file["average_non_source"] == reps["1"]["average_non_source"] is not None
    assert by_file["languages"] == reps["1"]["languages"]
    # a paired test by the two files is the paired test of model 1 against model 2's predictions
    by_model = json.loads(run_xlt("eval", "--model", models["1"], "--compare", str(preds["2"]), str(test),
                                  "--bootstrap", "200", "-q").stdout)
    files = json.loads(run_xlt("eval", "--model", str(preds["1"]), "--compare", str(preds["2"]), str(test),
                               "--bootstrap", "200", "-q").stdout)
    assert files["compare"] == by_model["compare"] and files["compare"]["average_non_source"]["p_value"] is not None
    # ... and how each model was trained (seed, steps, training time: what `xlt report` shows)
    assert by_file["signature"]["training"] == reps["1"]["signature"]["training"]
    assert files["signature"]["training"]["seed"] == 1 and files["signature"]["compare_training"]["seed"] == 2
    assert files["signature"]["compare_training"] == by_model["signature"]["compare_training"] == \
        reps["2"]["signature"]["training"] and reps["2"]["signature"]["training"]["steps"] > 0
    # a malformed pred.source_langs is refused with its place, not silently dropped
    bad = tmp_path / "bad.pred.jsonl"
    lines = preds["1"].read_text().splitlines()
    first = json.loads(lines[0]); first["pred"]["source_langs"] = "en"
    bad.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    r = run_xlt("eval", "--model", str(bad), str(test), "-q")
    assert r.returncode == 2 and "pred.source_langs" in r.stderr.decode() and "bad.pred.jsonl" in r.stderr.decode()
    first = json.loads(lines[0]); first["pred"]["training"] = "seed 1"
    bad.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    r = run_xlt("eval", "--model", str(bad), str(test), "-q")
    assert r.returncode == 2 and "pred.training" in r.stderr.decode() and "bad.pred.jsonl" in r.stderr.decode()
    # ... and so is a training number that is not a finite number (a report would show or sum it)
    # (a NaN is refused by the reader itself, naming the file and line)
    for key, value, said in (("steps", "615", "pred.training.steps"), ("seed", True, "pred.training.seed"),
                             ("train_seconds", float("nan"), "bad.pred.jsonl:1")):
        first = json.loads(lines[0]); first["pred"]["training"][key] = value
        bad.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
        r = run_xlt("eval", "--model", str(bad), str(test), "-q")
        assert r.returncode == 2 and said in r.stderr.decode(), r.stderr.decode()
