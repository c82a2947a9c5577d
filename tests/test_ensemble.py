"""Ensemble teachers (`--teacher A --teacher B`: the mean of their logits) in soft-label and
distill, a teacher run once per distinct input (`UniqueRuns`), and distill's `--gold-langs`
(gold labels read only from those languages)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_xlt
from test_distill import ckpt_manifest, lines, parallel  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two tiny random classifiers of different seeds, the second with its labels in another order."""
    from tinymodels import make_tiny_bert

    a = make_tiny_bert(str(tmp_path_factory.mktemp("ens-a")), classifier=True, seed=1)
    b = make_tiny_bert(str(tmp_path_factory.mktemp("ens-b")), labels=["neutral", "contradiction", "entailment"], seed=2)
    return a, b


def teacher_logits(path: str, src: str) -> dict[str, dict[str, float]]:
    r = run_xlt("soft-label", "--teacher", path, "--engine", "torch", src)
    assert r.returncode == 0, r.stderr.decode()
    return {x["id"]: dict(zip(x["teacher"]["labels"], x["teacher"]["logits"])) for x in lines(r.stdout)}


def test_soft_label_ensemble_is_the_mean_of_the_teachers_logits(teachers, parallel):
    a, b = teachers
    la, lb = teacher_logits(a, parallel["src"]), teacher_logits(b, parallel["src"])
    r = run_xlt("soft-label", "--teacher", a, "--teacher", b, "--engine", "torch", parallel["src"])
    assert r.returncode == 0, r.stderr.decode()
    assert "mean logits of 2 teachers" in r.stderr.decode()
    recs = lines(r.stdout)
    assert len(recs) == 30
    for x in recs:
        t = x["teacher"]
        assert t["labels"] == ["entailment", "neutral", "contradiction"]  # the first teacher's order
        want = [(la[x["id"]][n] + lb[x["id"]][n]) / 2 for n in t["labels"]]
        assert t["logits"] == pytest.approx(want, abs=2e-6)
        z = np.array(t["logits"])
        assert t["probs"] == pytest.approx((np.exp(z - z.max()) / np.exp(z - z.max()).sum()).tolist(), abs=2e-6)
        assert t["model"].startswith("ensemble:") and t["base"] == os.path.abspath(a)
    assert any(la[i] != pytest.approx(lb[i], abs=1e-3) for i in la)  # two different teachers
    # the digest names the members, not their order; the mean is the same in either order
    r2 = run_xlt("soft-label", "--teacher", b, "--teacher", a, "--engine", "torch", parallel["src"])
    other = lines(r2.stdout)
    assert other[0]["teacher"]["model"] == recs[0]["teacher"]["model"]
    for x, y in zip(recs, other):
        ours = dict(zip(x["teacher"]["labels"], x["teacher"]["logits"]))
        theirs = dict(zip(y["teacher"]["labels"], y["teacher"]["logits"]))
        assert all(ours[n] == pytest.approx(theirs[n], abs=2e-6) for n in ours)
    one = lines(run_xlt("soft-label", "--teacher", a, "--teacher", a, "--engine", "torch", parallel["src"]).stdout)
    assert one[0]["teacher"]["model"] != recs[0]["teacher"]["model"]


def test_ensemble_refusals(teachers, parallel, tmp_path):
    a, b = teachers
    r = run_xlt("soft-label", "--teacher", a, "--teacher", b, "--hidden", parallel["src"])
    assert r.returncode == 2 and "--hidden" in r.stderr.decode() and "one --teacher" in r.stderr.decode()
    from tinymodels import make_tiny_bert

    two = make_tiny_bert(str(tmp_path / "two"), labels=["yes", "no"])
    r = run_xlt("soft-label", "--teacher", a, "--teacher", two, parallel["src"])
    assert r.returncode == 2 and "share one label set" in r.stderr.decode()
    r = run_xlt("distill", parallel["src"], "--student", a, "--teacher", a, "--teacher", b, "--objective", "ce=1,hidden-kl=0.1",
                "--max-steps", "1", "--out", str(tmp_path / "no"))
    assert r.returncode == 2 and "one --teacher" in r.stderr.decode()
    assert not (tmp_path / "no").exists()


def test_distill_online_ensemble_equals_stored_ensemble_soft_labels(teachers, parallel, tmp_path):
    a, b = teachers
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "label"}) + "\n"
                                  for x in lines(open(parallel["src"], "rb").read())))
    stored = tmp_path / "stored.jsonl"
    r = run_xlt("soft-label", "--teacher", a, "--teacher", b, "--engine", "torch", str(unlabelled), "-o", str(stored))
    assert r.returncode == 0, r.stderr.decode()
    common = ["--student", a, "--objective", "mse", "--max-steps", "3", "--batch-size", "6", "--log-every", "1",
              "--seed", "3"]
    r1 = run_xlt("distill", str(unlabelled), "--teacher", a, "--teacher", b, *common, "--out", str(tmp_path / "online"))
    assert r1.returncode == 0, r1.stderr.decode()
    r2 = run_xlt("distill", str(stored), *common, "--out", str(tmp_path / "stored"))
    assert r2.returncode == 0, r2.stderr.decode()
    m1, m2 = ckpt_manifest(str(tmp_path / "online")), ckpt_manifest(str(tmp_path / "stored"))
    assert m1["teacher"] == [a, b] and m1["teacher_digest"] == m2["teacher_digest"]
    assert m1["teacher_digest"].startswith("ensemble:")
    l1 = [s["mse"] for s in m1["training"]["log"] if "mse" in s]
    l2 = [s["mse"] for s in m2["training"]["log"] if "mse" in s]
    assert len(l1) == 3 and l1 == pytest.approx(l2, rel=1e-4, abs=1e-6)
    # the ensemble's targets differ from either teacher's alone
    r3 = run_xlt("distill", str(unlabelled), "--teacher", a, *common, "--out", str(tmp_path / "single"))
    assert r3.returncode == 0, r3.stderr.decode()
    l3 = [s["mse"] for s in ckpt_manifest(str(tmp_path / "single"))["training"]["log"] if "mse" in s]
    assert l3 != pytest.approx(l1, rel=1e-3)


def test_soft_label_ensemble_of_taggers_is_the_mean_per_word(tmp_path):
    import torch
    from tinymodels import make_tokenizer
    from transformers import BertConfig, BertForTokenClassification

    paths = []
    for seed, tags in ((1, ["NOUN", "VERB", "DET"]), (2, ["DET", "NOUN", "VERB"])):
        out = str(tmp_path / f"tagger{seed}")
        tok = make_tokenizer(out)
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, num_labels=3,
                            id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
        BertForTokenClassification(config).save_pretrained(out)
        paths.append(out)
    src = tmp_path / "pos.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "lang": "en", "tokens": words}) + "\n"
                           for i, words in enumerate([["the", "dog", "runs"], ["a", "cat", "sits", "on", "the", "table"]])))

    def per_word(*teachers: str) -> list[list[dict[str, float]]]:
        args = [x for p in teachers for x in ("--teacher", p)]
        r = run_xlt("soft-label", *args, "--engine", "torch", str(src))
        assert r.returncode == 0, r.stderr.decode()
        return [[dict(zip(x["teacher"]["labels"], row)) for row in x["teacher"]["logits"]] for x in lines(r.stdout)]

    one, two, both = per_word(paths[0]), per_word(paths[1]), per_word(*paths)
    assert [len(r) for r in both] == [3, 6]
    for rec1, rec2, rec in zip(one, two, both):
        for w1, w2, w in zip(rec1, rec2, rec):
            assert all(w[n] == pytest.approx((w1[n] + w2[n]) / 2, abs=2e-6) for n in w)


def test_gold_langs_reads_labels_only_from_those_languages(tiny_bert, parallel, tmp_path):
    """ce on English labels plus unlabelled-in-effect French: the French labels, right or wrong,
    change nothing (not read), and the manifest says where labels came from."""
    wrong = tmp_path / "fr.wrong.jsonl"
    flip = {"entailment": "contradiction", "contradiction": "neutral", "neutral": "entailment"}
    wrong.write_text("".join(json.dumps({**x, "label": flip[x["label"]]}) + "\n" for x in lines(open(parallel["fr"], "rb").read())))
    common = ["--student", tiny_bert, "--objective", "ce", "--max-steps", "3", "--batch-size", "8", "--seed", "5",
              "--labels", "contradiction,entailment,neutral", "--gold-langs", "en"]
    outs = []
    for name, fr in (("right", parallel["fr"]), ("wrong", str(wrong))):
        out = str(tmp_path / name)
        r = run_xlt("distill", parallel["en"], fr, *common, "--out", out)
        assert r.returncode == 0, r.stderr.decode()
        assert "gold labels ignored on 30 record(s) outside the gold languages (en)" in r.stderr.decode()
        outs.append(out)
    m = ckpt_manifest(outs[0])
    assert m["gold_langs"] == ["en"] and m["source_langs"] == ["en"]
    assert [s["ce"] for s in m["training"]["log"]] == [s["ce"] for s in ckpt_manifest(outs[1])["training"]["log"]]
    from safetensors.numpy import load_file

    w1, w2 = load_file(os.path.join(outs[0], "model.safetensors")), load_file(os.path.join(outs[1], "model.safetensors"))
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    # without --gold-langs the wrong French labels are read and training differs
    r = run_xlt("distill", parallel["en"], str(wrong), *common[:-2], "--out", str(tmp_path / "all"))
    assert r.returncode == 0, r.stderr.decode()
    w3 = load_file(os.path.join(str(tmp_path / "all"), "model.safetensors"))
    assert not all(np.array_equal(w1[k], w3[k]) for k in w1)
    assert ckpt_manifest(str(tmp_path / "all"))["source_langs"] == ["en", "fr"]
    # no gold language with labels: ce has nothing to learn from
    r = run_xlt("distill", parallel["fr"], *common[:-1], "de", "--out", str(tmp_path / "none"))
    assert r.returncode == 2 and "needs gold labels" in r.stderr.decode()
    r = run_xlt("distill", parallel["fr"], *common[:-1], " , ", "--out", str(tmp_path / "none"))
    assert r.returncode == 2 and "--gold-langs needs" in r.stderr.decode()


class CountingTeacher:
    """A fake teacher: logits from the text's length, so equal inputs give equal outputs."""

    tagging = False

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def predict(self, texts, *, hidden=False):
        from xlt.inference.types import Outputs

        self.seen.extend(texts)
        logits = np.array([[len(" ".join(t)), 1.0, -1.0] for t in texts], dtype=np.float32)
        return Outputs(logits, logits * 2 if hidden else None)


def test_unique_runs_computes_each_distinct_input_once():
    from xlt.inference.unique import UniqueRuns

    teacher = CountingTeacher()
    runs = UniqueRuns(teacher, limit=3)
    a, b, c, d = ("a", "x"), ("bb", "x"), ("ccc", "x"), ("dddd", "x")
    out = runs.predict([a, b, a, a, b])
    assert teacher.seen == [a, b] and out.logits[:, 0].tolist() == [3, 4, 3, 3, 4] and out.hidden is None
    out = runs.predict([b, c])
    assert teacher.seen == [a, b, c] and out.logits[:, 0].tolist() == [4, 5]
    assert runs.computed == 3 and runs.reused == 4 and "reused those outputs for 4" in runs.note()
    out = runs.predict([b], hidden=True)  # the hidden flag is part of the key
    assert teacher.seen[-1] == b and out.hidden[0, 0] == 8
    runs.predict([d])  # limit 3: the oldest (a) is forgotten
    runs.predict([a])
    assert teacher.seen[-1] == a and len(runs.memo) == 3
    assert runs.predict([]).logits.shape[0] == 0


def test_soft_label_runs_a_shared_src_view_once(tiny_classifier, parallel, tmp_path):
    de = tmp_path / "de.jsonl"
    de.write_text("".join(json.dumps({**x, "lang": "de"}) + "\n" for x in lines(open(parallel["fr"], "rb").read())))
    r = run_xlt("pair", "--src", "en", parallel["en"], parallel["fr"], str(de))
    assert r.returncode == 0, r.stderr.decode()
    both = tmp_path / "both.jsonl"
    both.write_bytes(r.stdout)
    r = run_xlt("soft-label", "--teacher", tiny_classifier, "--engine", "torch", str(both))
    assert r.returncode == 0, r.stderr.decode()
    # 60 records, 60 English views, 6 distinct English pairs (the data repeats 6 pairs 5 times)
    assert "ran on 6 distinct input(s) and reused those outputs for 54" in r.stderr.decode()
    recs = lines(r.stdout)
    alone = teacher_logits(tiny_classifier, parallel["src"])
    assert all(dict(zip(x["teacher"]["labels"], x["teacher"]["logits"])) == pytest.approx(alone[x["id"]], abs=2e-6)
               for x in recs)


def test_a_teacher_path_string_is_one_teacher_at_every_entry_point(teachers):
    """The library takes `teacher` as one path or a list of them; a string is never split into its
    characters (a path of one character, "/", used to be what a string became)."""
    from xlt.inference.classifier import Classifier
    from xlt.inference.ensemble import load_teacher, teacher_paths

    a, b = teachers
    assert teacher_paths(a) == [a] and teacher_paths([a, b]) == [a, b] and teacher_paths(None) == []
    one = load_teacher(a, device="cpu")
    assert isinstance(one, Classifier) and one.path == a
    assert load_teacher([a, b], device="cpu").digest.startswith("ensemble:")
