"""`xlt analyze`: the alignment and distance metrics (golden values on hand-made vectors), retrieval
on a parallel set whose answer is known, and the stage end to end with tiny random models."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from xlt.analyze.metrics import agreement, alignment, distances, hidden_kl, l2_distance, paired_cosine
from xlt.analyze.report import GROUPS, sample_points

R = 1 / math.sqrt(2)
PNG = b"\x89PNG\r\n\x1a\n"


# --- metrics on hand-made vectors -----------------------------------------------------------------------

def test_cosine_mean_random_pairs_and_gap_golden():
    tgt = [[1, 0], [0, 1], [1, 1]]
    src = [[2, 0], [0, 3], [-1, 1]]
    m = alignment(tgt, src, [0, 1, 2])
    # parallel: cos 1, 1, 0; mismatched (6 pairs): 0, -R, 0, R, R, R
    assert m["cosine"] == pytest.approx(2 / 3)
    assert m["cosine_random"] == pytest.approx(2 * R / 6)
    assert m["cosine_gap"] == pytest.approx(2 / 3 - 2 * R / 6)
    assert (m["n"], m["targets"], m["sources"]) == (3, 3, 3)
    assert paired_cosine(tgt, src) == pytest.approx([1, 1, 0])


def test_p_at_1_both_directions_golden():
    # target 1 sits nearer source 0 than its own source 1: found source -> target, not target -> source
    m = alignment([[1, 0], [1, 0.1]], [[1, 0], [0, 1]], [0, 1])
    assert m["p_at_1_tgt_to_src"] == pytest.approx(1 / 2)
    assert m["p_at_1_src_to_tgt"] == pytest.approx(1.0)
    # the 3-vector set: target 2 ties sources 0 and 1 (both R) above its own (0) -> 0;
    # source 2's nearest target is 1 (R), not 2 (0)
    m = alignment([[1, 0], [0, 1], [1, 1]], [[2, 0], [0, 3], [-1, 1]], [0, 1, 2])
    assert m["p_at_1_tgt_to_src"] == pytest.approx(2 / 3)
    assert m["p_at_1_src_to_tgt"] == pytest.approx(2 / 3)


def test_ties_score_chance_not_one():
    """A model that maps everything to one vector finds nothing: P@1 is 1/N, the gap 0."""
    same = np.ones((4, 3))
    m = alignment(same, same, [0, 1, 2, 3])
    assert m["p_at_1_tgt_to_src"] == pytest.approx(1 / 4) and m["p_at_1_src_to_tgt"] == pytest.approx(1 / 4)
    assert m["cosine"] == pytest.approx(1) and m["cosine_gap"] == pytest.approx(0, abs=1e-12)


def test_unpaired_targets_are_candidates_and_many_targets_per_source():
    tgt = [[1, 0], [0, 1], [1, 0.05]]
    src = [[1, 0], [0, 1]]
    # target 2 has no source: no query of its own, but source 0's nearest target could be it
    m = alignment(tgt, src, [0, 1, -1])
    assert (m["n"], m["queries_src_to_tgt"]) == (2, 2)
    assert m["p_at_1_tgt_to_src"] == 1.0 and m["p_at_1_src_to_tgt"] == 1.0
    m = alignment([[1, 0.05], [0, 1], [1, 0]], src, [-1, 1, 0])
    assert m["p_at_1_src_to_tgt"] == 1.0  # source 0 -> target 2 (cos 1) beats target 0
    # two translations of one source: finding either counts
    m = alignment([[1, 0], [1, 0.01], [0, 1]], src, [0, 0, 1])
    assert m["p_at_1_src_to_tgt"] == 1.0 and m["queries_src_to_tgt"] == 2
    # mismatched pairs: 3 x 2 - 3 parallel = 3 of them
    assert m["cosine_random"] == pytest.approx((0 + paired_cosine([[1, 0.01]], [[0, 1]])[0] + 0) / 3)


def test_kl_and_l2_golden():
    teacher = np.array([[0.0, 0.0], [1.0, 2.0]])
    student = np.array([[math.log(3), 0.0], [1.0, 2.0]])
    # KL([.5, .5] || [.75, .25]) = .5 ln(4/3); identical rows: 0
    assert hidden_kl(teacher, student) == pytest.approx(0.5 * math.log(4 / 3) / 2, rel=1e-5)
    # the hidden-kl loss's own value: the analysis measures what distillation trains
    import torch

    from xlt.distill.losses.hidden_kl import HiddenKLLoss

    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    loss = HiddenKLLoss()(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert hidden_kl(t, s) == pytest.approx(float(loss), rel=1e-6)
    assert l2_distance([[0, 0], [1, 1]], [[3, 4], [1, 1]]) == pytest.approx(2.5)
    d = distances(teacher, student)
    assert d["n"] == 2 and d["l2"] == pytest.approx(math.log(3) / 2)


def test_undefined_values_are_none_not_nan():
    m = alignment([[1, 0]], [[1, 0]], [-1])
    assert m["n"] == 0 and m["cosine"] is None and m["p_at_1_tgt_to_src"] is None
    m = alignment([[1, 0]], [[1, 0]], [0])  # one pair: no mismatched pair to compare with
    assert m["cosine"] == pytest.approx(1) and m["cosine_random"] is None and m["cosine_gap"] is None
    assert distances(np.zeros((0, 3)), np.zeros((0, 3))) == {"n": 0, "kl": None, "l2": None}
    assert agreement([[1, 0], [0, 1]], [[2, 1], [1, 0]]) == pytest.approx(0.5)


def test_map_sample_is_capped_and_deterministic():
    a = sample_points(100, max_points=10, seed=3)
    assert len(a) == 10 and list(a) == sorted(set(a)) and list(a) == list(sample_points(100, max_points=10, seed=3))
    assert list(a) != list(sample_points(100, max_points=10, seed=4))
    assert list(sample_points(5, max_points=10, seed=3)) == [0, 1, 2, 3, 4]


# --- the stage, with tiny random models -------------------------------------------------------------------

def spread(path: str, *, seed: int) -> str:
    """Re-draw a tiny model's weight matrices with a larger spread: at the default 0.02 every
    first-token vector of a 2-layer random BERT has cosine ~1 with every other, and retrieval on
    such vectors tests nothing."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.4)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tinymodels import make_tiny_bert

    root = tmp_path_factory.mktemp("analyze-models")
    return {"clf": spread(make_tiny_bert(str(root / "clf"), classifier=True), seed=0),
            "teacher": spread(make_tiny_bert(str(root / "teacher"), classifier=True, seed=1), seed=1),
            "enc": make_tiny_bert(str(root / "enc"))}


BASE = [("the dog runs", "a dog runs", "entailment"), ("the cat sits", "the man sleeps", "neutral"),
        ("a woman reads", "nobody reads", "contradiction"), ("the child plays", "a child plays", "entailment"),
        ("a big red car", "the car is blue", "contradiction"), ("the old man walks", "a man walks", "neutral")]
WORDS = {"fr": {"the": "le", "a": "un", "dog": "chien", "cat": "chat", "man": "homme", "woman": "femme", "car": "voiture",
                "child": "enfant", "big": "grand"},
         "de": {"the": "der", "a": "ein", "dog": "hund", "cat": "katze", "man": "mann", "woman": "frau", "child": "kind",
                "house": "haus"}}


def translate(text: str, lang: str) -> str:
    return " ".join(WORDS.get(lang, {}).get(w, w) for w in text.split())


def record(i: int, lang: str, **extra) -> dict:
    p, h, label = BASE[i]
    return {"id": f"e{i}", "lang": lang, "premise": translate(p, lang), "hypothesis": translate(h, lang),
            "label": label, **extra}


def write(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("analyze-data")
    files = {lang: write(d / f"dev.{lang}.jsonl", [record(i, lang) for i in range(len(BASE))]) for lang in ("en", "fr", "de")}
    # a language none of whose ids is in the source language: reported, not a crash
    files["sw"] = write(d / "dev.sw.jsonl", [dict(record(i, "sw"), id=f"sw{i}") for i in range(3)])
    src = [record(i, lang, src={"lang": "en", "premise": BASE[i][0], "hypothesis": BASE[i][1]})
           for lang in ("fr", "de") for i in range(len(BASE))]
    files["src"] = write(d / "src.jsonl", src)
    # both views the same text: every record must find its own source
    files["same"] = write(d / "same.jsonl", [dict(r, src={"lang": "en", "premise": r["premise"], "hypothesis": r["hypothesis"]})
                                             for r in (record(i, "fr") for i in range(len(BASE)))])
    return files


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xlt-home"))


def analyze(home: str, *args: str, input: str | None = None):
    """The real `xlt analyze` command line (argv, stdin, exit code), run in this process: every
    subprocess would import torch and transformers again."""
    from typer.testing import CliRunner

    from xlt.cli import app

    return CliRunner(env={"XLT_HOME": home}).invoke(app, ["analyze", *args], input=input)


def test_identical_views_retrieve_perfectly_and_teacher_itself_is_at_distance_zero(models, data, home):
    r = analyze(home, "--model", models["clf"], "--teacher", models["clf"], "--engine", "torch", data["same"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    fr = rep["languages"]["fr"]
    assert fr["n"] == 6 and fr["source"] == "en" and fr["candidates"] == {"source": 6, "target": 6}
    assert fr["cosine"] == pytest.approx(1, abs=1e-5)
    assert fr["p_at_1_tgt_to_src"] == 1.0 and fr["p_at_1_src_to_tgt"] == 1.0 and fr["p_at_1"] == 1.0
    assert fr["cosine_gap"] > 0.05  # unrelated texts are clearly less similar (the spread model)
    assert fr["agreement"] == 1.0
    assert fr["teacher"]["kl"] == pytest.approx(0, abs=1e-5) and fr["teacher"]["l2"] == pytest.approx(0, abs=1e-3)
    assert fr["teacher"]["agreement"] == 1.0
    groups = fr["teacher"]["groups"]
    assert set(groups) == set(GROUPS) and sum(g["n"] for g in groups.values()) == 6
    assert groups["TRSW"]["n"] == groups["TWSR"]["n"] == 0  # one model cannot be right and wrong at once


def test_src_views_end_to_end_with_teacher_on_ct2(models, data, home, tmp_path):
    out = tmp_path / "report.json"
    r = analyze(home, "--model", models["clf"], "--teacher", models["teacher"], data["src"], "-o", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # the report went to -o; the table to stderr
    assert "P@1" in r.stderr
    rep = json.loads(out.read_text())
    assert rep["signature"]["engine"].startswith("ct2") and rep["signature"]["teacher_engine"].startswith("ct2")
    assert list(rep["languages"]) == ["fr", "de"] and rep["source_languages"] == ["en"]
    assert rep["items"] == {"targets": 12, "sources": 6}  # the en views shared by fr and de are one item each
    for v in rep["languages"].values():
        assert v["n"] == 6 and 0 <= v["p_at_1_tgt_to_src"] <= 1 and -1 <= v["cosine"] <= 1
        assert v["teacher"]["kl"] > 0 and v["teacher"]["l2"] > 0 and set(v["teacher"]["groups"]) == set(GROUPS)
    assert rep["average"]["languages"] == 2 and rep["average"]["teacher"]["kl"] > 0
    # existing output: refused without --force (exit 2, file untouched), replaced with it
    r = analyze(home, "--model", models["clf"], data["src"], "-o", str(out))
    assert r.exit_code == 2 and "exists" in r.stderr and "--force" in r.stderr
    assert json.loads(out.read_text())["signature"]["teacher"] == models["teacher"]
    r = analyze(home, "--model", models["clf"], data["src"], "-o", str(out), "--force")
    assert r.exit_code == 0 and "teacher" not in json.loads(out.read_text())["signature"]


def test_parallel_files_by_id_match_src_views(models, data, home):
    args = ["--model", models["clf"], "--engine", "torch"]
    r = analyze(home, *args, data["en"], data["fr"], data["sw"], data["de"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert list(rep["languages"]) == ["fr", "sw", "de"]
    sw = rep["languages"]["sw"]
    assert sw["n"] == 0 and sw["records"] == 3 and "no parallel source record" in sw["note"]
    assert "sw: no parallel source record" in r.stderr
    assert rep["average"]["languages"] == 2
    # the same examples as `src` views give the same numbers
    by_src = json.loads(analyze(home, *args, data["src"]).stdout)
    for lang in ("fr", "de"):
        for key in ("cosine", "cosine_random", "p_at_1_tgt_to_src", "p_at_1_src_to_tgt", "agreement"):
            assert rep["languages"][lang][key] == pytest.approx(by_src["languages"][lang][key], abs=1e-4), key


def test_layer_all_gives_one_value_per_layer_and_plots(models, data, home, tmp_path):
    prefix = tmp_path / "plots" / "a"
    r = analyze(home, "--model", models["clf"], "--teacher", models["teacher"], "--layer", "all", "--plot", str(prefix),
                "--projection", "pca", data["src"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    fr = rep["languages"]["fr"]
    by = fr["by_layer"]
    assert by["layer"] == [0, 1, 2]
    assert all(len(by[k]) == 3 for k in ("cosine", "cosine_gap", "p_at_1_tgt_to_src", "p_at_1_src_to_tgt"))
    assert by["cosine"][-1] == fr["cosine"] and by["p_at_1"][-1] == fr["p_at_1"]  # the headline is the last layer
    # layer 0 (embeddings) of the first token is [CLS] at position 0 for every text: one vector,
    # so retrieval is at chance and translations are no closer than random pairs
    assert by["p_at_1_tgt_to_src"][0] == pytest.approx(1 / 6, abs=1e-5) and by["cosine_gap"][0] == pytest.approx(0, abs=1e-4)
    assert "teacher" in fr  # distances at the final layer
    files = [prefix.parent / f"a.{n}.png" for n in ("map", "alignment", "layers")]
    assert sorted(rep["plots"]["files"]) == sorted(map(str, files)) and rep["plots"]["projection"] == "pca"
    for f in files:
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000
    assert [p.name for p in prefix.parent.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_layer_number_tsne_map_and_max_points(models, data, home, tmp_path):
    r = analyze(home, "--model", models["clf"], "--teacher", models["teacher"], "--layer", "1", "--plot",
                str(tmp_path / "m"), "--max-points", "10", "--threads", "1", data["src"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["signature"]["layer"] == 1 and rep["signature"]["engine"] == "torch"  # other layers: torch
    fr = rep["languages"]["fr"]
    assert "by_layer" not in fr and fr["teacher"]["kl"] > 0  # distances still at the final layer
    assert rep["plots"]["points"] == 10 and rep["plots"]["projection"] == "tsne"
    assert (tmp_path / "m.map.png").read_bytes()[:8] == PNG and not (tmp_path / "m.layers.png").exists()
    r = analyze(home, "--model", models["clf"], "--layer", "7", data["src"])
    assert r.exit_code == 2 and "layers 0 (embeddings) to 2" in r.stderr
    r = analyze(home, "--model", models["clf"], "--layer", "1", "--engine", "ct2", data["src"])
    assert r.exit_code == 2 and "--engine torch" in r.stderr


def test_a_bare_encoder_has_no_prediction_agreement(models, data, home):
    r = analyze(home, "--model", models["enc"], data["src"])
    assert r.exit_code == 0, r.output
    fr = json.loads(r.stdout)["languages"]["fr"]
    assert "agreement" not in fr and fr["n"] == 6


@pytest.mark.parametrize("line, message", [
    ({"id": "e9", "lang": "fr", "premise": "le chien"}, 'missing field "hypothesis"'),
    ({"lang": "fr", "premise": "a", "hypothesis": "b", "src": {"lang": "en", "premise": "a"}}, 'missing field "src.hypothesis"'),
    ({"lang": "fr", "premise": "a", "hypothesis": "b", "src": {"premise": "a", "hypothesis": "b"}}, '"src.lang"'),
    ({"id": "e9", "lang": "fr", "premise": "a", "hypothesis": "b", "label": "maybe"}, 'label "maybe" is not one of'),
    ({"lang": "fr", "premise": "a", "hypothesis": "b"}, 'missing field "id"'),
])
def test_bad_input_is_one_line_with_file_and_line(models, data, home, tmp_path, line, message):
    bad = tmp_path / "bad.jsonl"
    good = open(data["src"]).read().splitlines()[:2]
    bad.write_text("\n".join(good + [json.dumps(line)]) + "\n")
    out = tmp_path / "r.json"
    r = analyze(home, "--model", models["clf"], "--engine", "torch", str(bad), "-o", str(out), "--plot", str(tmp_path / "p"))
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1].startswith(f"xlt analyze: error: {bad}:3: ") and message in r.stderr
    assert list(tmp_path.iterdir()) == [bad]  # no report, no plot, no temporary


def test_input_without_parallel_records_or_with_broken_vectors(models, data, home, tmp_path):
    r = analyze(home, "--model", models["clf"], "--engine", "torch", data["fr"])
    assert r.exit_code == 2 and "no parallel records" in r.stderr
    broken = tmp_path / "broken"
    shutil.copytree(models["clf"], broken)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(broken / "model.safetensors"))
    key = next(k for k in weights if "encoder.layer.1.output.dense.bias" in k)
    weights[key] = weights[key] * float("nan")
    save_file(weights, str(broken / "model.safetensors"))
    r = analyze(home, "--model", str(broken), "--engine", "torch", data["src"], "-o", str(tmp_path / "r.json"))
    assert r.exit_code == 1 and "non-finite vector" in r.stderr and f"{data['src']}:1" in r.stderr
    assert not (tmp_path / "r.json").exists()


def test_stdin_and_an_empty_input(models, data, home):
    r = analyze(home, "--model", models["clf"], "--engine", "torch", "-", input=open(data["src"]).read())
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert set(rep["languages"]) == {"fr", "de"} and "<stdin>" in rep["signature"]["data"]
    r = analyze(home, "--model", models["clf"], "--engine", "torch", input="")
    assert r.exit_code == 2 and "<stdin>: no records" in r.stderr
