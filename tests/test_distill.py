"""`xlt soft-label` and `xlt distill`: teacher outputs on records, every objective, small students, pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_xlt

BASE = [("the dog runs in the park", "a dog runs", "entailment"),
        ("the cat sits on the table", "the man sleeps", "neutral"),
        ("a woman reads a book", "nobody reads", "contradiction"),
        ("the child plays with the red car", "a child plays", "entailment"),
        ("the old man walks", "the young woman cooks", "neutral"),
        ("a big dog eats", "no dog eats", "contradiction")]
FR = [("le chien court dans le parc", "un chien court"), ("le chat est sur la table", "l homme dort"),
      ("une femme lit un livre", "personne ne lit"), ("l enfant joue avec la voiture rouge", "un enfant joue"),
      ("le vieil homme marche", "la jeune femme cuisine"), ("un grand chien mange", "aucun chien ne mange")]


def lines(b: bytes) -> list[dict]:
    return [json.loads(x) for x in b.decode().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill-data")
    en, fr = d / "en.jsonl", d / "fr.jsonl"
    with open(en, "w") as fe, open(fr, "w") as ff:
        for rep in range(5):
            for i, ((p, h, lab), (pf, hf)) in enumerate(zip(BASE, FR)):
                rid = f"d{rep}-{i}"
                fe.write(json.dumps({"id": rid, "lang": "en", "premise": p, "hypothesis": h, "label": lab}) + "\n")
                ff.write(json.dumps({"id": rid, "lang": "fr", "premise": pf, "hypothesis": hf, "label": lab}) + "\n")
    r = run_xlt("pair", "--src", "en", str(en), str(fr))
    assert r.returncode == 0, r.stderr.decode()
    src = d / "fr.src.jsonl"
    src.write_bytes(r.stdout)
    return {"en": str(en), "fr": str(fr), "src": str(src)}


@pytest.fixture(scope="module")
def labelled(tiny_classifier, parallel, tmp_path_factory):
    out = tmp_path_factory.mktemp("soft") / "soft.jsonl"
    r = run_xlt("soft-label", "--teacher", tiny_classifier, parallel["src"], "--hidden", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    return str(out)


def test_soft_label_reads_src_view(tiny_classifier, labelled, parallel):
    recs = lines(open(labelled, "rb").read())
    assert len(recs) == 30
    t = recs[0]["teacher"]
    assert set(t) == {"logits", "probs", "labels", "temperature", "model", "hidden", "base"}
    assert t["base"] == os.path.abspath(tiny_classifier)  # a plain HF classifier: its own encoder, distill's default student
    assert t["labels"] == ["entailment", "neutral", "contradiction"]
    assert sum(t["probs"]) == pytest.approx(1, abs=1e-4) and len(t["hidden"]) == 32
    assert t["model"].startswith("sha256:")
    assert recs[0]["lang"] == "fr" and recs[0]["src"]["lang"] == "en"  # unknown keys pass, record unchanged
    # the teacher read the English src view: same logits as running it on the English record itself
    r = run_xlt("soft-label", "--teacher", tiny_classifier, "--view", "self", parallel["en"])
    en = {x["id"]: x["teacher"]["logits"] for x in lines(r.stdout)}
    assert all(en[x["id"]] == pytest.approx(x["teacher"]["logits"], abs=1e-5) for x in recs)
    r = run_xlt("soft-label", "--teacher", tiny_classifier, "--view", "self", parallel["src"])
    fr = lines(r.stdout)
    assert any(a["teacher"]["logits"] != pytest.approx(en[a["id"]], abs=1e-5) for a in fr)


def test_soft_label_temperature_shard_and_contract(tiny_classifier, parallel):
    r = run_xlt("soft-label", "--teacher", tiny_classifier, "--temperature", "2", parallel["src"])
    full = lines(r.stdout)
    import numpy as np

    z = np.array(full[0]["teacher"]["logits"]) / 2
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert full[0]["teacher"]["probs"] == pytest.approx(p.tolist(), abs=1e-5)
    shards = [lines(run_xlt("soft-label", "--teacher", tiny_classifier, "--temperature", "2", "--shard", f"{k}/3",
                            parallel["src"]).stdout) for k in (1, 2, 3)]
    merged = [shards[i % 3][i // 3] for i in range(len(full))]
    assert merged == full
    r = run_xlt("soft-label", "--teacher", tiny_classifier, input='{"id": "1", "lang": "fr", "premise": "a"\n')
    assert r.returncode == 2 and "xlt soft-label: error: <stdin>:1: invalid JSON" in r.stderr.decode()
    r = run_xlt("soft-label", "--teacher", tiny_classifier, input='{"id": "1", "lang": "fr", "premise": "a", "hypothesis": "b", "src": {"lang": "en", "premise": "x"}}\n')
    assert r.returncode == 2 and 'missing field "src.hypothesis"' in r.stderr.decode()
    r = run_xlt("soft-label", "--teacher", tiny_classifier, input="")
    assert r.returncode == 0 and r.stdout == b""
    r = subprocess.run(f"{sys.executable} -m xlt soft-label --teacher {tiny_classifier} {parallel['src']} | head -1",
                       shell=True, capture_output=True, cwd=ROOT)
    assert len(r.stdout.splitlines()) == 1 and b"Traceback" not in r.stderr


def ckpt_manifest(path: str) -> dict:
    return json.load(open(os.path.join(path, "xlt.json")))


def test_distill_kd_from_stored_soft_labels_into_encoder(tiny_bert, labelled, parallel, tmp_path):
    out = str(tmp_path / "kd")
    r = run_xlt("distill", labelled, "--student", tiny_bert, "--objective", "kd=1,ce=0.5", "--temperature", "2",
                "--max-steps", "6", "--batch-size", "8", "--out", out, "--dev", parallel["fr"])
    assert r.returncode == 0, r.stderr.decode()
    m = ckpt_manifest(out)
    assert m["kind"] == "distill" and m["objective"]["objective"] == "kd=1,ce=0.5"
    assert m["objective"]["temperature"] == 2
    assert m["labels"] == ["entailment", "neutral", "contradiction"]  # the teacher's label order
    assert m["teacher_digest"].startswith("sha256:")
    assert "kd" in m["training"]["log"][-1] and "ce" in m["training"]["log"][-1]
    # supervision came from the English views the teacher read and from French gold labels (ce)
    assert m["source_langs"] == ["en", "fr"] and m["train_langs"] == {"fr": 30}
    r = run_xlt("eval", "--model", out, parallel["fr"])
    assert r.returncode == 0, r.stderr.decode()


def test_distill_mse_online_teacher_xd(tiny_classifier, parallel, tmp_path):
    """XD: the teacher is the student's own starting checkpoint, frozen, reading the English view."""
    out = str(tmp_path / "xd")
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "label"}) + "\n"
                                  for x in lines(open(parallel["src"], "rb").read())))
    r = run_xlt("distill", str(unlabelled), "--student", tiny_classifier, "--teacher", tiny_classifier,
                "--objective", "mse", "--max-steps", "4", "--batch-size", "8", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    assert ckpt_manifest(out)["teacher"] == tiny_classifier
    # French text, English teacher views, no gold label: the source language is English, so eval's
    # non-source average is over French, not over the distillation language
    assert ckpt_manifest(out)["source_langs"] == ["en"]
    r = run_xlt("eval", "--model", out, parallel["fr"], parallel["en"])
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    assert report["source_languages"] == ["en"]
    assert report["average_non_source"]["accuracy"] == report["languages"]["fr"]["accuracy"]
    # ce without gold labels is a clear error
    r = run_xlt("distill", str(unlabelled), "--student", tiny_classifier, "--teacher", tiny_classifier,
                "--objective", "ce", "--max-steps", "1", "--out", str(tmp_path / "no"))
    assert r.returncode == 2 and "needs gold labels" in r.stderr.decode()


def test_distill_hidden_kl_joint_and_pseudo(tiny_classifier, labelled, parallel, tmp_path):
    out = str(tmp_path / "kld")
    r = run_xlt("distill", parallel["src"], "--student", tiny_classifier, "--teacher", tiny_classifier,
                "--objective", "ce=1,hidden-kl=0.1", "--max-steps", "3", "--batch-size", "8", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    assert "hidden-kl" in ckpt_manifest(out)["training"]["log"][-1]
    out2 = str(tmp_path / "pl")
    r = run_xlt("distill", labelled, "--student", tiny_classifier, "--objective", "pseudo", "--min-confidence", "0.34",
                "--max-steps", "3", "--batch-size", "8", "--out", out2)
    assert r.returncode == 0, r.stderr.decode()
    pl = ckpt_manifest(out2)["pseudo_labels"]
    assert pl is not None and "pseudo-labels" in r.stderr.decode()
    # hidden-kl needs hidden vectors: stored soft labels without --hidden and no --teacher -> clear error
    nohidden = tmp_path / "nh.jsonl"
    recs = lines(open(labelled, "rb").read())
    for x in recs:
        del x["teacher"]["hidden"]
    nohidden.write_text("".join(json.dumps(x) + "\n" for x in recs))
    r = run_xlt("distill", str(nohidden), "--student", tiny_classifier, "--objective", "ce=1,hidden-kl=0.1",
                "--max-steps", "1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "hidden" in r.stderr.decode()


@pytest.mark.parametrize("arch", ["bilstm", "cnn", "transformer"])
def test_small_student_from_scratch_saves_and_evaluates(arch, labelled, parallel, tmp_path):
    out = str(tmp_path / arch)
    r = run_xlt("distill", labelled, "--student-arch", arch, "--vocab-size", "300", "--objective", "kd",
                "--max-steps", "3", "--batch-size", "8", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""  # --quiet: no progress bar of transformers' save_pretrained either
    m = ckpt_manifest(out)
    assert m["student_arch"] == arch and m["vocab_size"] <= 300
    r = run_xlt("eval", "--model", out, parallel["fr"])
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["languages"]["fr"]["n"] == 30


def test_default_student_is_the_teachers_base_and_one_student_only(tiny_classifier, labelled, tmp_path):
    r = run_xlt("distill", labelled, "--student", tiny_classifier, "--student-arch", "bilstm", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "choose one student" in r.stderr.decode()
    # no --student: the teacher's own encoder, which soft-label recorded in `teacher.base`
    r = run_xlt("distill", labelled, "--max-steps", "1", "--batch-size", "8", "--out", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr.decode()
    assert "the teacher's base encoder" in r.stderr.decode()
    assert json.loads((tmp_path / "d" / "xlt.json").read_text())["student"] == os.path.abspath(tiny_classifier)
    r = run_xlt("distill", labelled, "--student-arch", "bilstm", "--objective", "bogus", "--out", str(tmp_path / "x"))
    assert r.returncode == 2


def test_pipe_pair_soft_label_distill(tiny_classifier, tiny_bert, parallel, tmp_path):
    out = tmp_path / "piped"
    cmd = (f"{sys.executable} -m xlt pair --src en {parallel['en']} {parallel['fr']} "
           f"| {sys.executable} -m xlt soft-label --teacher {tiny_classifier} "
           f"| {sys.executable} -m xlt distill --student {tiny_bert} --objective kd --max-steps 2 --batch-size 8 --out {out} -")
    r = subprocess.run(cmd, shell=True, capture_output=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    assert ckpt_manifest(str(out))["train_langs"] == {"fr": 30}


def test_distill_pseudo_balance_cli(tiny_classifier, tmp_path):
    """--balance reweights the kept pseudo-labels per class: same run, same batch, another loss;
    the kept counts per language and class are reported and recorded."""
    labels = ["entailment", "neutral", "contradiction"]
    confident = {0: [0.9, 0.05, 0.05], 1: [0.1, 0.8, 0.1]}
    recs = []
    for i, (p, h, _) in enumerate(BASE + BASE[:2]):
        probs = confident[0] if i < 6 else confident[1]
        if i == 7:
            probs = [0.4, 0.3, 0.3]  # below --min-confidence 0.5
        recs.append({"id": f"b{i}", "lang": "fr", "premise": p, "hypothesis": h,
                     "teacher": {"probs": probs, "labels": labels, "model": "sha256:test"}})
    path = tmp_path / "soft.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in recs))
    losses = {}
    for flag in ([], ["--balance"]):
        out = str(tmp_path / f"pl{len(flag)}")
        r = run_xlt("distill", str(path), "--student", tiny_classifier, "--objective", "pseudo", "--min-confidence", "0.5",
                    *flag, "--max-steps", "1", "--batch-size", "8", "--log-every", "1", "--seed", "3", "--out", out)
        assert r.returncode == 0, r.stderr.decode()
        m = ckpt_manifest(out)
        assert m["objective"]["balance"] is bool(flag)
        assert m["pseudo_labels"] == {"seen": 8, "kept": 7, "langs": {"fr": {
            "seen": 8, "kept": 7, "kept_by_class": {"entailment": 6, "neutral": 1}}}}
        assert "pseudo-labels" in r.stderr.decode()
        losses[bool(flag)] = m["training"]["log"][0]["loss"]
    assert losses[True] != pytest.approx(losses[False], abs=1e-6)


def test_gold_labels_of_the_shared_run():
    """xlt.train.run.gold_labels: indices into the (teacher's) label set, -100 for none or one
    outside it; with gold labels required, "no label at all" is reported before "no label set"."""
    from xlt.errors import InputError
    from xlt.train.data import Corpus, Example, LabelSet
    from xlt.train.run import gold_labels

    def corpus(*labels):
        examples = [Example(("a",), -1, "fr", i, {"_label": lab}) for i, lab in enumerate(labels)]
        return Corpus(examples, ("text",), LabelSet.from_values(x for x in labels if x is not None), {}, {"fr": len(labels)})

    teacher = LabelSet(["entailment", "neutral", "contradiction"])
    assert gold_labels(corpus("neutral", None, "other", "entailment"), teacher) == [1, -100, -100, 0]
    with pytest.raises(InputError, match="objective ce needs gold labels, and no record has one"):
        gold_labels(corpus(None, None), LabelSet([]), required="objective ce")
    with pytest.raises(InputError, match="no label set"):
        gold_labels(corpus("a", None), LabelSet(["a"]), required="objective ce")
    with pytest.raises(InputError, match="objective ce needs gold labels"):
        gold_labels(corpus("other", None), teacher, required="objective ce")
