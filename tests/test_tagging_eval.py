"""`xlt eval` of taggers: golden token accuracy and per-tag numbers, entity spans equal to seqeval's,
sentence-level intervals and paired tests, and the command on a tiny tagger trained at test time."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from conftest import run_xlt
from xlt.evaluate.metrics import bootstrap_ci, paired_bootstrap
from xlt.evaluate.scoring import Scored, build_report
from xlt.tagging.metrics import (UNCOVERED, entity_counts, entity_scores, entity_spans, is_bio, sentence_counts,
                                 tag_table, token_accuracy)
from xlt.train.data import LabelSet


def test_token_accuracy_and_tag_table_golden():
    names = ["NOUN", "VERB", "DET"]
    gold = [[2, 0, 1], [0, 1]]
    pred = [[2, 0, 0], [0, UNCOVERED]]  # the last word was not seen by the model: wrong
    assert token_accuracy(gold, pred) == pytest.approx(3 / 5)
    t = tag_table(gold, pred, names)
    # NOUN: gold 2, predicted 3, right 2; VERB: gold 2, never predicted; DET: 1 of 1
    assert t["NOUN"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert math.isnan(t["VERB"]["precision"]) and t["VERB"]["recall"] == 0 and t["VERB"]["f1"] == 0
    assert t["VERB"]["support"] == 2
    assert t["DET"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert list(t) == names
    assert math.isnan(token_accuracy([], []))


@pytest.mark.parametrize("tags,bio", [
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], True),
    (["B-LOC", "I-LOC"], True),
    (["O"], False),
    (["NOUN", "VERB", "DET"], False),
    (["O", "B-PER", "E-PER", "S-PER"], False),
    (["O", "B-"], False),
    ([0, 1, 2], False),
])
def test_is_bio(tags, bio):
    assert is_bio(tags) is bio


def test_entity_spans_conll_chunking():
    # I- without B- starts a span (CoNLL / conlleval, seqeval's default mode)
    assert entity_spans(["I-PER", "I-PER", "O"]) == [("PER", 0, 1)]
    # adjacent entities: B- after anything starts a new one; a type change too
    assert entity_spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]
    assert entity_spans(["B-LOC", "I-PER", "O", "B-ORG"]) == [("LOC", 0, 0), ("PER", 1, 1), ("ORG", 3, 3)]
    c = entity_counts(["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O", "B-LOC"])
    assert (c.predicted, c.gold, c.correct) == (2, 2, 1)  # PER cut short: only LOC is exact


GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC"],
    ["I-ORG", "I-ORG", "O", "B-MISC", "I-MISC"],   # I- without B-
    ["B-PER", "B-PER", "I-PER", "O"],              # adjacent entities of one type
    ["B-LOC", "I-LOC", "B-ORG", "O", "O"],         # adjacent entities of different types
    ["O", "O", "O"],
    ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"],
]
PRED = [
    ["B-PER", "I-PER", "O", "B-PER"],              # right span, wrong type
    ["B-ORG", "I-ORG", "O", "B-MISC", "O"],        # B-/I- spelling is the same span; MISC cut short
    ["B-PER", "I-PER", "I-PER", "O"],              # two merged into one
    ["B-LOC", "I-ORG", "B-ORG", "O", "B-PER"],     # type change splits the span; a spurious PER
    ["O", "B-LOC", "O"],
    ["B-PER", "O", "I-LOC", "I-LOC", "I-LOC"],     # I- after O starts the LOC span: exact
]


def _seqeval(gold, pred):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ({"precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred)},
                classification_report(gold, pred, output_dict=True))


@pytest.mark.parametrize("rows", [list(range(6)), [0], [1], [2], [3], [1, 2, 3], [0, 4, 5], [4, 5]])
def test_entity_scores_equal_seqeval(rows):
    gold, pred = [GOLD[i] for i in rows], [PRED[i] for i in rows]
    mine = entity_scores(gold, pred)
    ref, by_type = _seqeval(gold, pred)
    for k in ("precision", "recall", "f1"):
        # undefined here (null in reports) where seqeval says 0
        assert (0.0 if math.isnan(mine[k]) else mine[k]) == pytest.approx(ref[k]), k
    for t, v in mine["types"].items():
        if v["support"]:
            assert v["support"] == by_type[t]["support"]
            assert (0.0 if math.isnan(v["f1"]) else v["f1"]) == pytest.approx(by_type[t]["f1-score"])
            assert (0.0 if math.isnan(v["precision"]) else v["precision"]) == pytest.approx(by_type[t]["precision"])
            assert v["recall"] == pytest.approx(by_type[t]["recall"])


def test_entity_scores_golden_all_sentences():
    s = entity_scores(GOLD, PRED)
    # gold spans 2+2+2+2+0+2 = 10; predicted 2+2+1+4+1+2 = 12; exact 1+1+0+1+0+2 = 5
    assert s["precision"] == pytest.approx(5 / 12)
    assert s["recall"] == pytest.approx(5 / 10)
    assert s["f1"] == pytest.approx(10 / 22)


def test_sentence_counts_and_ratio_statistics():
    names = ["O", "B-PER", "I-PER"]
    gold = [[1, 2, 0], [0, 0], [1, 0, 0, 1]]
    pred = [[1, 2, 0], [0, 1], [1, 0, UNCOVERED, 0]]
    c = sentence_counts(gold, pred, names, entities=True)
    assert c.words.tolist() == [3, 2, 4] and c.correct.tolist() == [3, 1, 2]
    assert c.gold.tolist() == [1, 0, 2] and c.predicted.tolist() == [1, 1, 1] and c.entity_correct.tolist() == [1, 0, 1]
    assert c.accuracy() == pytest.approx(6 / 9)
    num, den = c.f1_units()
    assert num.sum() / den.sum() == pytest.approx(entity_scores(
        [[names[t] for t in g] for g in gold], [["O" if t < 0 else names[t] for t in p] for p in pred])["f1"])


def test_sentence_bootstrap_interval():
    # every sentence 3 of 4 words right: any resample of sentences is 0.75
    assert bootstrap_ci([3] * 20, totals=[4] * 20, samples=200, seed=0) == (0.75, 0.75)
    # 5 sentences all right, 5 all wrong, 10 words each: sentences are the unit, so the interval is
    # that of 10 draws, much wider than resampling the 100 words as if independent
    correct, words = [10] * 5 + [0] * 5, [10] * 10
    lo, hi = bootstrap_ci(correct, totals=words, samples=1000, seed=3)
    tlo, thi = bootstrap_ci([1] * 50 + [0] * 50, samples=1000, seed=3)
    assert lo < tlo < 0.5 < thi < hi
    assert hi - lo > 1.8 * (thi - tlo)
    assert bootstrap_ci(correct, totals=words, samples=1000, seed=3) == (lo, hi)  # deterministic by seed
    # sentences of different lengths: the statistic is correct words / words of the sentences drawn
    lo, hi = bootstrap_ci([1, 9], totals=[1, 10], samples=500, seed=0)
    assert lo == pytest.approx(9 / 10) and hi == pytest.approx(1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([0, 0], totals=[0, 0], samples=10, seed=0))


def test_paired_sentence_test():
    words = [10] * 30
    a = [9] * 30
    same = paired_bootstrap(a, a, totals=words, samples=300, seed=0)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    b = [6] * 30
    t = paired_bootstrap(a, b, totals=words, samples=1000, seed=0)
    assert t["delta"] == pytest.approx(0.3) and t["p_value"] < 0.01 and t["ci95"][0] > 0
    # one sentence of difference is no evidence
    assert paired_bootstrap(a, [0] + a[1:], totals=words, samples=1000, seed=0)["p_value"] > 0.2
    assert paired_bootstrap(a, b, totals=words, samples=500, seed=7) == paired_bootstrap(a, b, totals=words, samples=500, seed=7)
    # grouped: mean over groups of each group's ratio (x: 3/4 - 1/4, y: 2/2 - 2/2)
    g = paired_bootstrap([3, 2], [1, 2], totals=[4, 2], samples=50, seed=0, groups=["x", "y"])
    assert g["delta"] == pytest.approx(0.25)
    # entity F1: each system its own denominator (2 correct / (predicted + gold))
    e = paired_bootstrap([2, 4], [0, 2], totals=[2, 5], totals_b=[3, 4], samples=50, seed=0)
    assert e["delta"] == pytest.approx(6 / 7 - 2 / 7)


def tagged_scored() -> Scored:
    """en: 2 sentences, fr: 1 sentence and an untagged one; tags O, B-PER, I-PER."""
    s = Scored(preds=[[], []], tagging=True)
    rows = [("en", [1, 2, 0], [1, 2, 0], [1, 0, 0]),
            ("en", [0, 1], [0, 0], [0, 0]),
            ("fr", [1, 0, 0, 0], [1, 0, UNCOVERED, UNCOVERED], [1, 0, 0, 0]),
            ("fr", None, [0], [0])]
    for lang, g, pa, pb in rows:
        s.langs.append(lang)
        s.pair_langs.append((lang, lang))
        s.gold.append(g)
        s.preds[0].append(pa)
        s.preds[1].append(pb)
    s.unlabelled, s.unlabelled_by_lang = 1, {"fr": 1}
    return s


def test_tagging_report_golden():
    r = build_report(tagged_scored(), labels=LabelSet(["O", "B-PER", "I-PER"]), source_langs=["en"], bootstrap=50,
                     seed=0, signature={})
    assert r["task"] == "tagging" and r["scheme"] == "BIO"
    en, fr = r["languages"]["en"], r["languages"]["fr"]
    assert (en["n"], en["sentences"], en["accuracy"]) == (5, 2, 0.8)
    assert en["entity"]["precision"] == 1.0 and en["entity"]["recall"] == 0.5 and en["entity"]["f1"] == pytest.approx(2 / 3, abs=1e-5)
    assert en["ci95"][0] <= 0.8 <= en["ci95"][1]
    assert (fr["n"], fr["sentences"], fr["accuracy"], fr["uncovered"], fr["unlabelled"]) == (4, 1, 0.5, 2, 1)
    assert fr["entity"]["f1"] == 1.0
    assert r["average"]["accuracy"] == pytest.approx(0.65) and r["average"]["sentences"] == 3
    assert r["average_non_source"]["languages"] == 1
    assert r["overall"] == {"n": 9, "sentences": 3, "accuracy": pytest.approx(6 / 9, abs=1e-5), "entity": {
        "precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-5), "f1": 0.8,
        "types": {"PER": {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-5), "f1": 0.8, "support": 3}}}}
    # word level: I-PER once in gold, once predicted, right
    assert r["tags"]["I-PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["tags"]["B-PER"]["support"] == 3 and r["uncovered"] == 2 and r["unlabelled"] == 1
    comp = r["compare"]
    assert comp["languages"]["en"]["accuracy_b"] == pytest.approx(3 / 5) and comp["languages"]["en"]["delta"] == pytest.approx(0.2)
    assert comp["languages"]["fr"]["delta"] == pytest.approx(-0.5)  # B saw every word
    assert comp["languages"]["en"]["entity_f1"]["f1_b"] == 0.0
    assert set(comp["average"]) == {"delta", "ci95", "p_value", "entity_f1"}
    assert comp["average"]["delta"] == pytest.approx((0.2 - 0.5) / 2)
    json.dumps(r, allow_nan=False)  # no NaN anywhere


def test_tagging_report_without_bio_and_matrix_refused():
    s = tagged_scored()
    r = build_report(s, labels=LabelSet(["NOUN", "VERB", "DET"]), source_langs=[], signature={})
    assert r["scheme"] is None and "entity" not in r["languages"]["en"] and "entity" not in r["overall"]
    assert r["languages"]["en"]["accuracy"] == 0.8
    from xlt.errors import UsageError

    with pytest.raises(UsageError, match="--matrix"):
        build_report(s, labels=LabelSet(["O", "B-PER", "I-PER"]), source_langs=[], matrix=True, signature={})


# ---- the command on a tiny tagger ----------------------------------------------------------------

RECORDS = [
    ("en", ["the", "man", "walks", "in", "the", "park"], ["O", "B-PER", "O", "O", "O", "B-LOC"]),
    ("en", ["a", "woman", "reads", "a", "book"], ["O", "B-PER", "O", "O", "O"]),
    ("en", ["the", "old", "man", "sleeps"], ["O", "B-PER", "I-PER", "O"]),
    ("fr", ["le", "chien", "et", "la", "maison"], ["O", "B-PER", "O", "O", "B-LOC"]),
    ("fr", ["un", "homme", "est", "dans", "la", "rue"], ["O", "B-PER", "O", "O", "O", "B-LOC"]),
]


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A tiny tagger (tags B-LOC, B-PER, I-PER, O) trained by xlt teach, and its data file."""
    from tinymodels import make_tiny_bert

    d = tmp_path_factory.mktemp("tagger")
    base = make_tiny_bert(str(d / "base"))
    data = d / "tagged.jsonl"
    data.write_text(jsonl({"id": str(i), "lang": lang, "tokens": w, "tags": t} for i, (lang, w, t) in enumerate(RECORDS)))
    r = run_xlt("teach", "--model", base, "--out", str(d / "ck"), "--epochs", "1", "--batch-size", "2", "-q", str(data))
    assert r.returncode == 0, r.stderr.decode()
    return str(d / "ck"), str(data)


def test_eval_tagger_report_predictions_and_report(tagger, tmp_path):
    ck, data = tagger
    preds = tmp_path / "pred.jsonl"
    out = tmp_path / "report.json"
    r = run_xlt("eval", "--model", ck, data, "--bootstrap", "50", "--predictions", str(preds), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(out.read_text())
    assert rep["task"] == "tagging" and rep["scheme"] == "BIO" and rep["signature"]["fields"] == ["tokens"]
    assert set(rep["languages"]) == {"en", "fr"}
    en = rep["languages"]["en"]
    assert en["n"] == 15 and en["sentences"] == 3 and 0 <= en["accuracy"] <= 1
    assert en["ci95"][0] <= en["accuracy"] <= en["ci95"][1]
    assert set(en["entity"]) == {"precision", "recall", "f1", "ci95"}
    assert rep["overall"]["n"] == 26 and rep["overall"]["sentences"] == 5
    assert set(rep["tags"]) == {"B-LOC", "B-PER", "I-PER", "O"} and rep["tags"]["O"]["support"] == 17
    assert set(rep["overall"]["entity"]["types"]) == {"LOC", "PER"}
    assert rep["uncovered"] == 0
    err = r.stderr.decode()
    assert "accuracy" in err and "entity F1" in err and "per tag" in err
    # --predictions: each record with one predicted tag and one probability row per word
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [x["tokens"] for x in lines] == [w for _, w, _ in RECORDS]
    for x in lines:
        p = x["pred"]
        assert p["labels"] == ["B-LOC", "B-PER", "I-PER", "O"] and p["model"] == rep["signature"]["model_digest"]
        assert len(p["tags"]) == len(x["tokens"]) == len(p["probs"])
        assert all(t in p["labels"] for t in p["tags"])
        assert all(len(row) == 4 and sum(row) == pytest.approx(1, abs=1e-4) for row in p["probs"])
    # the predictions file is a frozen tagger: the same scores, and a paired test against the model
    r = run_xlt("eval", "--model", str(preds), data, "--compare", ck, "-q")
    assert r.returncode == 0, r.stderr.decode()
    frozen = json.loads(r.stdout)
    assert frozen["signature"]["engine"] == "predictions"
    assert {k: v["accuracy"] for k, v in frozen["languages"].items()} == {k: v["accuracy"] for k, v in rep["languages"].items()}
    # ... and the tagger's source languages (the file carries them): the same non-source average
    assert frozen["source_languages"] == rep["source_languages"] and rep["source_languages"]
    assert frozen["average_non_source"] == rep["average_non_source"]
    assert frozen["compare"]["average"]["delta"] == 0 and frozen["compare"]["languages"]["en"]["p_value"] == 1.0
    # xlt report reads a tagger's eval reports unchanged (token accuracy per language)
    frozen_path = tmp_path / "frozen.json"
    frozen_path.write_text(r.stdout.decode())
    r = run_xlt("report", f"model={out}", f"frozen={frozen_path}", "--baseline", "model")
    assert r.returncode == 0, r.stderr.decode()
    summary = json.loads(r.stdout)
    assert summary["languages"] == ["en", "fr"]
    assert summary["systems"][0]["languages"]["en"]["accuracy"] == en["accuracy"]


def test_eval_tagger_bad_inputs(tagger, tiny_classifier, tmp_path):
    ck, data = tagger
    good = {"id": "1", "lang": "en", "tokens": ["the", "dog"], "tags": ["O", "B-PER"]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([good, {**good, "id": "2", "tags": ["O", "B-ORG"]}]))
    r = run_xlt("eval", "--model", ck, str(bad))
    err = r.stderr.decode()
    assert r.returncode == 2 and err.startswith("xlt eval: error: ") and f"{bad}:2:" in err and "B-ORG" in err, err
    r = run_xlt("eval", "--model", ck, str(bad), "--on-error", "skip", "-q")
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["languages"]["en"]["sentences"] == 1 and rep["skipped"]["count"] == 1
    # a classification model on tagging records, a tagger on NLI records: one line, exit 2
    r = run_xlt("eval", "--model", tiny_classifier, "--engine", "torch", data)
    assert r.returncode == 2 and "sequence classifier" in r.stderr.decode() and "tagging records" in r.stderr.decode()
    nli = {"id": "1", "lang": "en", "premise": "a dog", "hypothesis": "a cat", "label": "neutral"}
    r = run_xlt("eval", "--model", ck, "-", input=jsonl([nli]))
    assert r.returncode == 2 and "is a tagger" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1
    r = run_xlt("eval", "--model", ck, data, "--matrix")
    assert r.returncode == 2 and "--matrix" in r.stderr.decode()


def test_eval_tagger_counts_unseen_words_as_wrong(tagger, tmp_path):
    ck, _ = tagger
    words = ["the", "man", "walks", "in", "the", "park"] * 3
    data = tmp_path / "long.jsonl"
    data.write_text(jsonl([{"id": "long", "lang": "en", "tokens": words, "tags": ["O"] * len(words)}]))
    preds = tmp_path / "long.pred.jsonl"
    r = run_xlt("eval", "--model", ck, "--max-length", "8", str(data), "--predictions", str(preds))
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    # [CLS] + 6 words + [SEP]: the other 12 words have no subword
    assert rep["uncovered"] == 12 and rep["languages"]["en"]["uncovered"] == 12
    assert rep["languages"]["en"]["accuracy"] <= 6 / 18
    assert "12 of 18 words" in r.stderr.decode()
    # an unseen word has no prediction (null), never a made-up number; the file scores the same
    pred = json.loads(preds.read_text())["pred"]
    assert pred["tags"][6:] == [None] * 12 and pred["probs"][6:] == [None] * 12 and None not in pred["tags"][:6]
    r = run_xlt("eval", "--model", str(preds), str(data), "-q")
    assert r.returncode == 0, r.stderr.decode()
    again = json.loads(r.stdout)
    assert again["uncovered"] == 12 and again["languages"]["en"]["accuracy"] == rep["languages"]["en"]["accuracy"]
