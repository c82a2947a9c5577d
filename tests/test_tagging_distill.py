"""`xlt soft-label` and `xlt distill` for taggers: per-word teacher outputs (first subword of each
word, FreeTransfer-X word-level KD), their checks, every objective per word, small tagger students."""

from __future__ import annotations

import json

import pytest

from conftest import run_xlt

# word-for-word parallel sentences (same number of words): the src view of each French record
EN = [("the dog runs", "DET NOUN VERB"), ("a big cat sleeps", "DET ADJ NOUN VERB"),
      ("the old man walks", "DET ADJ NOUN VERB"), ("she reads a book", "PRON VERB DET NOUN"),
      ("the children play", "DET NOUN VERB"), ("he drives the red car", "PRON VERB DET ADJ NOUN")]
FR = ["le chien court", "un grand chat dort", "le vieil homme marche", "elle lit un livre",
      "les enfants jouent", "il conduit la voiture rouge"]
TAGS = ["ADJ", "DET", "NOUN", "PRON", "VERB"]


def lines(b: bytes) -> list[dict]:
    return [json.loads(x) for x in b.decode().splitlines() if x.strip()]


def write(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def manifest(ckpt: str) -> dict:
    with open(f"{ckpt}/xlt.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tag-data")
    en = [{"id": f"s{rep}-{i}", "lang": "en", "tokens": s.split(), "tags": t.split()}
          for rep in range(2) for i, (s, t) in enumerate(EN)]
    fr = [{"id": f"s{rep}-{i}", "lang": "fr", "tokens": f.split(), "tags": t.split(),
           "src": {"lang": "en", "tokens": s.split()}}
          for rep in range(2) for i, ((s, t), f) in enumerate(zip(EN, FR))]
    # a mix of languages: French records read through their English view, English ones as they are
    mixed = fr + en[:4]
    return {"en": write(d / "en.jsonl", en), "fr": write(d / "fr.jsonl", fr), "mixed": write(d / "mixed.jsonl", mixed),
            "dir": d}


@pytest.fixture(scope="module")
def tagger(data, tmp_path_factory):
    """A tiny BERT tagger taught on the English records, and its encoder."""
    from tinymodels import make_tiny_bert

    base = make_tiny_bert(str(tmp_path_factory.mktemp("tag-bert")))
    out = str(tmp_path_factory.mktemp("tagger") / "ck")
    r = run_xlt("teach", "--model", base, "--out", out, "--epochs", "1", "--batch-size", "2", data["en"])
    assert r.returncode == 0, r.stderr.decode()
    return {"ck": out, "base": base}


@pytest.fixture(scope="module")
def soft(tagger, data):
    out = data["dir"] / "soft.jsonl"
    r = run_xlt("soft-label", "--teacher", tagger["ck"], "--hidden", "-o", str(out), data["mixed"])
    assert r.returncode == 0, r.stderr.decode()
    return str(out)


@pytest.fixture(scope="module")
def clf(tagger):
    from xlt.inference.classifier import Classifier

    return Classifier(tagger["ck"], device="cpu")


def test_soft_label_writes_per_word_outputs_aligned_to_tokens(soft, clf, tagger):
    import numpy as np

    recs = lines(open(soft, "rb").read())
    assert len(recs) == 16
    for rec in recs:
        t = rec["teacher"]
        assert set(t) == {"logits", "probs", "labels", "temperature", "model", "base", "hidden"}
        assert t["labels"] == TAGS and t["base"] == tagger["base"]
        n = len(rec["tokens"])
        assert len(t["logits"]) == len(t["probs"]) == len(t["hidden"]) == n
        assert all(len(row) == len(TAGS) for row in t["logits"] + t["probs"])
        assert all(len(row) == 32 for row in t["hidden"])
        assert np.asarray(t["probs"]).sum(axis=-1) == pytest.approx([1.0] * n, abs=1e-5)
    # the teacher read the English view of the French records: as a direct prediction on those words
    words = [(r["src"]["tokens"] if "src" in r else r["tokens"],) for r in recs]
    out = clf.predict(words, hidden=True)
    for rec, lg, h in zip(recs, out.logits, out.hidden):
        assert np.asarray(rec["teacher"]["logits"]) == pytest.approx(lg, abs=1e-5)
        assert np.asarray(rec["teacher"]["hidden"]) == pytest.approx(h, abs=1e-5)


def test_a_word_gets_its_first_subwords_outputs_and_stays_one_word(clf):
    """Golden: the row of a word split into several subwords is the model's own token logits at
    its first subword; a word holding a space is one word (one row), read at its first subword."""
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification

    from xlt.distill.softlabel import soft_label

    words = ["the", "walking", "big dog", "runs"]
    rec = {"id": "1", "lang": "en", "tokens": words}
    (got,) = list(soft_label([("x.jsonl:1", rec)], clf, hidden=True))
    t = got["teacher"]
    assert len(t["logits"]) == len(t["hidden"]) == 4 and got["tokens"] == words

    model = AutoModelForTokenClassification.from_pretrained(clf.resolved).eval()
    enc = clf.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        full = model(**enc, output_hidden_states=True)
    ids, word_ids = enc["input_ids"][0].tolist(), enc.word_ids(0)
    first = [word_ids.index(w) for w in range(4)]
    assert word_ids.count(1) > 2  # "walking": several subwords
    assert word_ids.count(2) == 2 and clf.tokenizer.convert_ids_to_tokens(ids[first[2]]) == "big"
    logits = full.logits[0].numpy()
    assert np.asarray(t["logits"]) == pytest.approx(logits[first], abs=1e-5)
    assert np.asarray(t["hidden"]) == pytest.approx(full.hidden_states[-1][0].numpy()[first], abs=1e-5)
    assert not np.allclose(logits[first[1]], logits[first[1] + 1], atol=1e-4)  # the golden tells them apart


def test_view_checks_word_count_coverage_and_teacher_kind(clf, tiny_classifier):
    from xlt.distill.softlabel import ViewCheck
    from xlt.errors import RecordError, UsageError
    from xlt.inference.classifier import Classifier

    check = ViewCheck("auto", None, teacher=clf)
    check({"id": "1", "lang": "fr", "tokens": ["le", "chien"], "src": {"lang": "en", "tokens": ["the", "dog"]}})
    with pytest.raises(RecordError, match=r'"src.tokens" has 1 words and "tokens" 2'):
        check({"id": "1", "lang": "fr", "tokens": ["le", "chien"], "src": {"lang": "en", "tokens": ["the dog"]}})
    ViewCheck("self", None, teacher=clf)({"id": "1", "lang": "fr", "tokens": ["le"], "src": {"tokens": ["a", "b"]}})
    short = ViewCheck("auto", None, teacher=clf)
    clf_max, clf.max_length = clf.max_length, 8
    try:
        with pytest.raises(RecordError, match=r"sees 6 of the 12 words .*6 past its max length of 8"):
            short({"id": "1", "lang": "en", "tokens": ["the"] * 12})
    finally:
        clf.max_length = clf_max
    with pytest.raises(UsageError, match="is a tagger .* premise, hypothesis"):
        check({"id": "1", "lang": "en", "premise": "a", "hypothesis": "b"})
    with pytest.raises(UsageError, match="is a tagger"):
        ViewCheck("auto", ("premise", "hypothesis"), teacher=clf)
    seq = Classifier(tiny_classifier, device="cpu")
    with pytest.raises(UsageError, match="is a sequence classifier .* tagging records"):
        ViewCheck("auto", None, teacher=seq)({"id": "1", "lang": "en", "tokens": ["a", "b"]})


def test_teacher_check_per_word():
    from xlt.distill.softlabel import TeacherCheck
    from xlt.errors import RecordError

    def rec(**t):
        return {"id": "1", "lang": "en", "tokens": ["a", "b"], "teacher": {"labels": ["X", "Y"], **t}}

    check = TeacherCheck()
    check(rec(logits=[[1, 2], [3, -4]], hidden=[[0.1], [0.2]]))
    assert check.kind == "logits" and check.names == ["X", "Y"]
    bad = {
        r'"teacher.logits" has 1 rows for the 2 words': rec(logits=[[1, 2]]),
        "one list of numbers per word": rec(logits=[1, 2]),
        r'"teacher.logits\[1\]" has 3 values, expected 2': rec(logits=[[1, 2], [1, 2, 3]]),
        r'"teacher.logits\[0\]\[1\]" is not a finite': rec(logits=[[1, float("nan")], [1, 2]]),
    }
    for message, r in bad.items():
        with pytest.raises(RecordError, match=message):
            TeacherCheck()(r)
    with pytest.raises(RecordError, match=r'"teacher.probs\[1\]" must be probabilities'):
        TeacherCheck()(rec(probs=[[0.5, 0.5], [1.5, 0]]))
    hidden = TeacherCheck(need_hidden=True)
    hidden(rec(logits=[[1, 2], [3, 4]], hidden=[[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(RecordError, match=r'"teacher.hidden\[1\]" has 1 values, expected 2'):
        hidden(rec(logits=[[1, 2], [3, 4]], hidden=[[0.1, 0.2], [0.3]]))
    # per-word outputs on a sentence record, and the other way round
    with pytest.raises(RecordError, match="not a tagging record"):
        TeacherCheck()({"id": "1", "lang": "en", "text": "a b", "teacher": {"labels": ["X", "Y"], "logits": [[1, 2]]}})


def test_word_objective_is_the_classification_terms_on_covered_words():
    """Golden: kd, mse, ce and pseudo per word are the sentence-level terms on the flattened
    covered words; padding and uncovered words (word_mask False) are left out."""
    import torch

    from xlt.distill.losses import CELoss, CombinedObjective, KDLoss, LogitMSELoss, PseudoLabelLoss
    from xlt.distill.run import distillation_objective

    torch.manual_seed(0)
    token_logits = torch.randn(2, 6, 3)  # [B, T, C]
    pos = torch.tensor([[1, 2, 4], [1, 3, 0]])  # first subwords; row 2 has 2 words (one padding slot)
    mask = torch.tensor([[True, False, True], [True, True, False]])  # word 1 of row 1 is not covered
    teacher = torch.randn(2, 3, 3)
    labels = torch.tensor([[0, 2, -100], [1, 1, -100]])

    class Model:
        def __call__(self, **inputs):
            return type("Out", (), {"logits": token_logits})()

    batch = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "word_pos": pos, "word_mask": mask,
             "labels": labels, "teacher_logits": teacher}
    student = torch.stack([token_logits[0, 1], token_logits[0, 4], token_logits[1, 1], token_logits[1, 3]])
    t = torch.stack([teacher[0, 0], teacher[0, 2], teacher[1, 0], teacher[1, 1]])
    y = torch.tensor([0, -100, 1, 1])
    expected = {"kd": KDLoss(2.0)(student, t), "mse": LogitMSELoss()(student, t), "ce": CELoss()(student, y),
                "pseudo": PseudoLabelLoss(0.0)(student, t).loss}
    combined = CombinedObjective("kd=1,mse=1,ce=1,pseudo=1", temperature=2.0)
    objective = distillation_objective(combined, teacher_keys=["teacher_logits"], use_labels=True, need_hidden=False,
                                       tagging=True)
    loss, terms = objective(Model(), batch)
    for name, value in expected.items():
        assert terms[name] == pytest.approx(float(value), abs=1e-6)
    assert float(loss) == pytest.approx(sum(float(v) for v in expected.values()), abs=1e-5)
    assert terms["pseudo_kept"] == 1.0
    # no covered word at all: a zero loss, not NaN
    loss, _ = objective(Model(), {**batch, "word_mask": torch.zeros_like(mask)})
    assert float(loss) == 0.0


@pytest.mark.parametrize("arch", ["transformer", "bilstm", "cnn"])
def test_small_tagger_students(arch):
    import torch
    from transformers import AutoModelForTokenClassification

    from xlt.distill.students import XltSmallForTokenClassification, build_student, token_vectors

    torch.manual_seed(0)
    model = build_student(arch, vocab_size=50, labels=TAGS, pad_token_id=0, tagging=True, pooled_size=24,
                          embedding_size=32, num_layers=1, lstm_hidden=16, num_filters=8, ffn_size=32).eval()
    assert isinstance(model, XltSmallForTokenClassification)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = ids != 0
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                labels=torch.tensor([[-100, 1, 2, 3, -100], [-100, 4, -100, -100, -100]]))
    assert out.logits.shape == (2, 5, len(TAGS)) and token_vectors(out).shape == (2, 5, 24)
    assert out.hidden_states[-1] is out.hidden and torch.isfinite(out.loss)
    # padding does not change the outputs of the real positions
    alone = model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3])
    assert torch.allclose(alone.logits[0], out.logits[1, :3], atol=1e-5)
    assert AutoModelForTokenClassification.from_config(model.config).__class__ is XltSmallForTokenClassification


def test_distill_every_objective_into_an_encoder_tagger(soft, tagger, tmp_path):
    from transformers import AutoModelForTokenClassification

    from xlt.inference.classifier import Classifier

    import numpy as np

    # a confidence threshold in the middle of the teacher's: some words kept, some dropped
    conf = sorted(max(p) for rec in lines(open(soft, "rb").read()) for p in rec["teacher"]["probs"])
    threshold = f"{np.median(conf):.6f}"
    out = str(tmp_path / "st")
    r = run_xlt("distill", soft, "--student", tagger["base"], "--objective", "kd=1,mse=0.5,ce=0.5,pseudo=1,hidden-kl=0.1",
                "--min-confidence", threshold, "--temperature", "2", "--out", out, "--epochs", "1", "--batch-size", "4")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    m = manifest(out)
    assert m["fields"] == ["tokens"] and m["labels"] == TAGS and m["objective"]["objective"].startswith("kd=1")
    pl = m["pseudo_labels"]
    assert pl["unit"] == "words" and pl["seen"] == 46 + 15
    assert set(pl["langs"]) == {"en", "fr"} and pl["langs"]["en"]["seen"] == 15
    assert 0 < pl["kept"] < pl["seen"]  # the confidence filter drops words
    assert sum(n for lang in pl["langs"].values() for n in lang["kept_by_class"].values()) == pl["kept"]
    assert set(pl["langs"]["fr"]["kept_by_class"]) <= set(TAGS)
    assert "pseudo-labels per word: {'lang': 'fr'" in err and "'lang': 'all'" in err
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForTokenClassification"
    pred = Classifier(out, device="cpu").predict([(["le", "chien court", "vite"],)])
    assert pred.logits[0].shape == (3, len(TAGS)) and pred.covered[0].all()


@pytest.mark.parametrize("arch", ["transformer", "bilstm", "cnn"])
def test_distill_into_small_tagger_students(arch, soft, tmp_path):
    from transformers import AutoModelForTokenClassification

    import xlt.distill.students  # noqa: F401  (registers the xlt-small classes)
    from xlt.inference.classifier import Classifier

    out = str(tmp_path / arch)
    objective = {"transformer": "kd=1,ce=0.5,hidden-kl=0.1", "bilstm": "mse=1,pseudo=1", "cnn": "kd,ce"}[arch]
    r = run_xlt("distill", soft, "--student-arch", arch, "--vocab-size", "300", "--objective", objective,
                "--out", out, "--epochs", "1", "--batch-size", "4")
    assert r.returncode == 0, r.stderr.decode()
    assert type(AutoModelForTokenClassification.from_pretrained(out)).__name__ == "XltSmallForTokenClassification"
    clf = Classifier(out, device="cpu")
    assert clf.tagging and clf.labels.names == TAGS
    pred = clf.predict([(["le", "grand chien", "dort"],), (["a"],)])
    assert [p.shape for p in pred.logits] == [(3, len(TAGS)), (1, len(TAGS))]


def test_online_teacher_reads_the_src_view_per_word(soft, tagger, data, tmp_path):
    """--teacher runs the tagger on each record's English view, per word: the same outputs
    soft-label stored; a view with another number of words is FILE:LINE, skippable."""
    import numpy as np

    from xlt.distill.run import _read_with_signals
    from xlt.train.loop import TrainConfig
    from xlt.train.run import RunOptions

    run = RunOptions(out=str(tmp_path / "unused"), cfg=TrainConfig(device="cpu"))
    corpus, signals = _read_with_signals([data["mixed"]], run, {"teacher"}, teacher=tagger["ck"], teacher_view="auto",
                                         objective="kd")
    online = signals.tensors["teacher_logits"].numpy()
    stored = lines(open(soft, "rb").read())
    assert online.shape == (16, 5, len(TAGS))
    for i, rec in enumerate(stored):
        n = len(rec["tokens"])
        assert online[i, :n] == pytest.approx(np.asarray(rec["teacher"]["logits"]), abs=1e-5)
        assert not online[i, n:].any()

    recs = lines(open(data["fr"], "rb").read())
    recs[2]["src"]["tokens"] = recs[2]["src"]["tokens"][:-1]
    bad = write(tmp_path / "bad.jsonl", recs)
    out = str(tmp_path / "st")
    r = run_xlt("distill", bad, "--teacher", tagger["ck"], "--student-arch", "bilstm", "--vocab-size", "300",
                "--objective", "kd=1,pseudo=1", "--out", out, "--epochs", "1", "--batch-size", "4")
    assert r.returncode == 2 and "bad.jsonl:3: field \"src.tokens\" has 3 words and \"tokens\" 4" in r.stderr.decode()
    r = run_xlt("distill", bad, "--teacher", tagger["ck"], "--student-arch", "bilstm", "--vocab-size", "300",
                "--objective", "kd=1,pseudo=1", "--out", out, "--epochs", "1", "--batch-size", "4", "--on-error", "skip")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    m = manifest(out)
    assert m["teacher"] == tagger["ck"] and m["teacher_view"] == "auto" and m["train_langs"] == {"fr": 11}
    assert m["pseudo_labels"]["unit"] == "words" and m["pseudo_labels"]["seen"] == 46 - 4
    assert "skipped 1 bad record" in err


def test_soft_label_src_word_count_mismatch_is_exit_2(tagger, data, tmp_path):
    recs = lines(open(data["fr"], "rb").read())[:3]
    recs[1]["src"]["tokens"].append("extra")
    bad = write(tmp_path / "mm.jsonl", recs)
    r = run_xlt("soft-label", "--teacher", tagger["ck"], bad)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b""
    assert 'mm.jsonl:2: field "src.tokens" has 5 words and "tokens" 4' in err
    r = run_xlt("soft-label", "--teacher", tagger["ck"], "--on-error", "skip", bad)
    assert r.returncode == 0 and [x["id"] for x in lines(r.stdout)] == [recs[0]["id"], recs[2]["id"]]


def test_malformed_per_word_teacher_outputs_are_exit_2(soft, tagger, tmp_path):
    recs = lines(open(soft, "rb").read())[:4]
    recs[2]["teacher"]["logits"] = recs[2]["teacher"]["logits"][:-1]
    bad = write(tmp_path / "bad.jsonl", recs)
    r = run_xlt("distill", bad, "--student", tagger["base"], "--out", str(tmp_path / "st"), "--epochs", "1")
    err = r.stderr.decode()
    assert r.returncode == 2 and "bad.jsonl:3:" in err and '"teacher.logits" has 3 rows for the 4 words' in err
    assert not (tmp_path / "st").exists()
