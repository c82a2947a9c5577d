"""The CTranslate2 engine (xlt.inference.ct2_engine) against the torch engine, and `--engine` on soft-label/eval."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_xlt
from tinymodels import vocab

LABELS = ["entailment", "neutral", "contradiction"]
PAIRS = [
    ("the man sits in the park", "a dog runs"),
    ("le chien est dans la maison", "the cat sleeps on the big red table"),
    ("x", "y"),
    ("the old woman reads a book", "she reads"),
    ("der hund und die katze", "the children play in the street with the dog and the cat"),
] * 3


def make_tokenizer(out_dir: str, *, token_types: bool):
    """A WordPiece tokenizer; without token types like XLM-R's and DistilBERT's tokenizers."""
    from transformers import BertTokenizerFast

    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    words = vocab()
    words[0], words[1] = words[1], words[0]  # [PAD] at 1, as in XLM-R (RoBERTa positions start after it)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True, model_max_length=64,
                            model_input_names=names)
    tok.save_pretrained(out_dir)
    return tok


def make_classifier(out_dir: str, family: str, *, intermediate: int = 64) -> str:
    """A tiny random sequence classifier of `family`, built from its config (no downloads); BERT's
    feed-forward layers `intermediate` wide."""
    import torch
    import transformers as T

    token_types = family in ("bert", "roberta")  # RoBERTa here with 2 token types, to exercise the ids
    tok = make_tokenizer(out_dir, token_types=token_types)
    torch.manual_seed(1)
    common = dict(initializer_range=0.1, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={x: i for i, x in enumerate(LABELS)})
    if family == "bert":
        config = T.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=intermediate, max_position_embeddings=64, type_vocab_size=2, **common)
        model = T.BertForSequenceClassification(config)
    elif family == "distilbert":
        config = T.DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                    max_position_embeddings=64, pad_token_id=tok.pad_token_id, **common)
        model = T.DistilBertForSequenceClassification(config)
    else:
        cls_config, cls_model = {"xlm-roberta": (T.XLMRobertaConfig, T.XLMRobertaForSequenceClassification),
                                 "roberta": (T.RobertaConfig, T.RobertaForSequenceClassification)}[family]
        # RoBERTa positions start after the padding index: room for 64 tokens after it
        config = cls_config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64 + tok.pad_token_id + 1,
                            type_vocab_size=2 if token_types else 1, pad_token_id=tok.pad_token_id, **common)
        model = cls_model(config)
    # large random weights (initializer_range) so the first token depends on the text; heads scaled up
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("classifier" in name or "pooler" in name) and name.endswith("weight"):
                p.mul_(10)
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One conversion cache for the module (the XLT_HOME of every engine built here)."""
    home = str(tmp_path_factory.mktemp("xlt-home"))
    old = os.environ.get("XLT_HOME")
    os.environ["XLT_HOME"] = home
    yield home
    if old is None:
        os.environ.pop("XLT_HOME", None)
    else:
        os.environ["XLT_HOME"] = old


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    out = {}
    for fam in ("bert", "xlm-roberta", "roberta", "distilbert"):
        out[fam] = make_classifier(str(tmp_path_factory.mktemp(fam)), fam)
    return out


def softmax(x):
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "roberta", "distilbert"])
def test_ct2_matches_torch_on_every_head(family, families, cache):
    from xlt.inference.classifier import Classifier

    path = families[family]
    torch_clf = Classifier(path, engine="torch", batch_size=4, device="cpu")
    f32 = Classifier(path, engine="ct2", compute_type="float32", batch_size=4, device="cpu", threads=1)
    assert (torch_clf.engine, f32.engine, f32.compute_type, f32.model) == ("torch", "ct2", "float32", None)
    a = torch_clf.predict(PAIRS, hidden=True)
    b = f32.predict(PAIRS, hidden=True)
    assert a.logits.shape == b.logits.shape == (len(PAIRS), 3)
    assert a.logits.std(axis=0).min() > 0.05 and np.abs(a.logits).max() > 0.5  # a wrong head would show
    np.testing.assert_allclose(b.logits, a.logits, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.hidden, a.hidden, rtol=1e-4, atol=1e-3)
    assert (a.logits.argmax(1) == b.logits.argmax(1)).all()
    single = [(p,) for p, _ in PAIRS]
    np.testing.assert_allclose(f32.predict(single).logits, torch_clf.predict(single).logits, rtol=1e-4, atol=1e-3)
    i8 = Classifier(path, engine="ct2", batch_size=4, device="cpu", threads=1, rescore_margin=0)
    assert i8.compute_type == "int8" and i8.engine_name == "ct2:int8"
    c = i8.predict(PAIRS)  # int8 weights on a random model: loose
    assert np.abs(softmax(c.logits) - softmax(a.logits)).max() < 0.2
    assert (c.logits.argmax(1) == a.logits.argmax(1)).mean() >= 0.8


def test_int8_near_ties_are_rescored_in_float32(families, cache):
    """Records whose int8 top-2 margin is below --rescore-margin take the float32 encoder's outputs;
    the others keep int8's, untouched."""
    from xlt.inference.ct2_engine import top2_margin
    from xlt.inference.classifier import Classifier

    path = families["xlm-roberta"]
    run = dict(engine="ct2", batch_size=4, device="cpu", threads=1)
    f32 = Classifier(path, compute_type="float32", **run).predict(PAIRS, hidden=True)
    plain = Classifier(path, rescore_margin=0, **run).predict(PAIRS, hidden=True)
    assert np.abs(plain.logits - f32.logits).max() > 1e-3  # int8 differs from float32 here
    margins = top2_margin(plain.logits)
    cut = float(np.median(margins))
    clf = Classifier(path, rescore_margin=cut, **run)
    assert clf.engine_name == f"ct2:int8+float32<{cut:g}"
    mixed = clf.predict(PAIRS, hidden=True)
    low = margins < cut
    assert 0 < low.sum() < len(PAIRS)
    np.testing.assert_allclose(mixed.logits[low], f32.logits[low], atol=1e-5)
    np.testing.assert_allclose(mixed.hidden[low], f32.hidden[low], atol=1e-5)
    np.testing.assert_array_equal(mixed.logits[~low], plain.logits[~low])
    np.testing.assert_array_equal(mixed.hidden[~low], plain.hidden[~low])
    assert (clf.runner.scored, clf.runner.rescored) == (len(PAIRS), int(low.sum()))
    assert f"{int(low.sum())} of {len(PAIRS)} records" in clf.engine_note()
    # margin 1: every record in float32; float32 itself has nothing to re-score
    every = Classifier(path, rescore_margin=1.0, **run)
    np.testing.assert_allclose(every.predict(PAIRS).logits, f32.logits, atol=1e-5)
    exact = Classifier(path, compute_type="float32", rescore_margin=0, **run)
    assert exact.engine_name == "ct2:float32" and exact.engine_note() is None
    from xlt.errors import UsageError

    with pytest.raises(UsageError, match="--rescore-margin re-scores the near-ties of an int8"):
        Classifier(path, compute_type="float32", rescore_margin=0.5, **run)
    # the library's default is the fast one (soft-label's); eval asks for exact
    assert Classifier(path, **run).engine_name == "ct2:int8+float32<0.03"
    assert Classifier(path, exact=True, **run).engine_name == "ct2:float32"


def test_pairs_use_token_type_ids(families, cache):
    """BERT pairs: the second segment's type ids reach the CTranslate2 encoder."""
    from xlt.inference.classifier import Classifier
    from xlt.train.data import tokenize

    clf = Classifier(families["bert"], engine="ct2", compute_type="float32", device="cpu", threads=1)
    enc = tokenize(clf.tokenizer, PAIRS[:2], max_length=64)
    assert enc.types is not None and any(1 in t for t in enc.types)
    with_types = clf.runner.first_token(enc.ids, enc.types)
    zeros = clf.runner.first_token(enc.ids, None)
    assert np.abs(with_types - zeros).max() > 1e-3
    ref = Classifier(families["bert"], engine="torch", device="cpu").predict(PAIRS[:2], hidden=True).hidden
    np.testing.assert_allclose(with_types, ref, atol=1e-4)


def test_engine_choice(families, tmp_path, cache):
    from xlt.inference.classifier import choose_engine
    from xlt.inference.ct2_engine import ct2_unsupported
    from xlt.errors import UsageError

    assert choose_engine("auto", families["bert"]) == "ct2"
    assert choose_engine("torch", families["bert"]) == "torch"
    student = make_student(tmp_path / "student")
    assert "xlt-small" in ct2_unsupported(student)
    assert choose_engine("auto", student) == "torch"
    with pytest.raises(UsageError, match="--engine ct2"):
        choose_engine("ct2", student)
    # RoBERTa positions after padding index 0: CTranslate2's converter would misplace them
    cfg = json.load(open(os.path.join(families["roberta"], "config.json")))
    (tmp_path / "pad0").mkdir()
    json.dump({**cfg, "pad_token_id": 0}, open(tmp_path / "pad0" / "config.json", "w"))
    (tmp_path / "pad0" / "model.safetensors").write_bytes(b"")
    assert "padding index 0" in ct2_unsupported(str(tmp_path / "pad0"))
    assert ct2_unsupported(families["roberta"]) is None
    with pytest.raises(UsageError, match="--engine must be"):
        choose_engine("onnx", families["bert"])


def make_student(path) -> str:
    import torch

    from xlt.distill.students import build_student

    tok = make_tokenizer(str(path), token_types=False)
    torch.manual_seed(0)
    model = build_student("bilstm", vocab_size=len(tok), labels=LABELS, pad_token_id=0,
                          max_position_embeddings=64, embedding_size=16, lstm_hidden=16)
    model.save_pretrained(str(path), safe_serialization=True)
    return str(path)


def nli_file(tmp_path) -> str:
    p = tmp_path / "nli.jsonl"
    with open(p, "w", encoding="utf-8") as fh:
        for i, (a, b) in enumerate(PAIRS):
            fh.write(json.dumps({"id": str(i), "lang": "en", "premise": a, "hypothesis": b, "label": LABELS[i % 3]}) + "\n")
    return str(p)


def records(out: bytes) -> list[dict]:
    return [json.loads(x) for x in out.decode().splitlines()]


def test_soft_label_ct2_equals_torch_and_conversion_is_cached(families, tmp_path):
    data = nli_file(tmp_path)
    env = {"XLT_HOME": str(tmp_path / "home")}
    base = ("soft-label", "--teacher", families["bert"], "--hidden", "--threads", "1", data)
    r1 = run_xlt(*base, "--engine", "ct2", "--compute-type", "float32", env=env)
    assert r1.returncode == 0, r1.stderr.decode()
    assert "converting the encoder" in r1.stderr.decode() and "(ct2:float32)" in r1.stderr.decode()
    (conv,) = os.listdir(tmp_path / "home" / "encoders")
    mtime = os.stat(tmp_path / "home" / "encoders" / conv / "model.bin").st_mtime_ns
    r2 = run_xlt(*base, "--engine", "ct2", "--compute-type", "float32", env=env)
    assert r2.returncode == 0 and "converting" not in r2.stderr.decode()
    assert os.stat(tmp_path / "home" / "encoders" / conv / "model.bin").st_mtime_ns == mtime
    assert r2.stdout == r1.stdout
    rt = run_xlt(*base, "--engine", "torch", env=env)
    assert rt.returncode == 0 and "(torch)" in rt.stderr.decode()
    ct2, ref = records(r1.stdout), records(rt.stdout)
    assert len(ct2) == len(ref) == len(PAIRS)
    for a, b in zip(ct2, ref):
        assert a["teacher"]["labels"] == b["teacher"]["labels"] and a["teacher"]["model"] == b["teacher"]["model"]
        np.testing.assert_allclose(a["teacher"]["probs"], b["teacher"]["probs"], atol=1e-4)
        np.testing.assert_allclose(a["teacher"]["hidden"], b["teacher"]["hidden"], atol=1e-4)
    # auto picks ct2 (int8 on CPU) for a BERT teacher: a second conversion, probabilities close
    ra = run_xlt(*base[:-1], "--engine", "auto", data, env=env)
    assert ra.returncode == 0 and "(ct2:int8+float32<0.03)" in ra.stderr.decode()
    assert len(os.listdir(tmp_path / "home" / "encoders")) == 2
    for a, b in zip(records(ra.stdout), ref):
        np.testing.assert_allclose(a["teacher"]["probs"], b["teacher"]["probs"], atol=0.2)


def test_eval_signature_names_the_engine(families, tmp_path):
    data = nli_file(tmp_path)
    env = {"XLT_HOME": str(tmp_path / "home")}
    reports = {}
    for engine in ("torch", "auto"):
        r = run_xlt("eval", "--model", families["distilbert"], "--engine", engine, "--threads", "1", data, env=env)
        assert r.returncode == 0, r.stderr.decode()
        reports[engine] = json.loads(r.stdout)
    assert reports["torch"]["signature"]["engine"] == "torch"
    assert reports["auto"]["signature"]["engine"] == "ct2:float32"  # eval's default: exact
    int8 = ("--compute-type", "int8")
    r = run_xlt("eval", "--model", families["distilbert"], *int8, "--threads", "1", data, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["signature"]["engine"] == "ct2:int8+float32<0.03"
    r = run_xlt("eval", "--model", families["distilbert"], *int8, "--rescore-margin", "0", "--threads", "1", data, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["signature"]["engine"] == "ct2:int8"
    r = run_xlt("eval", "--model", families["distilbert"], *int8, "--rescore-margin", "1", "--threads", "1", data, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["signature"]["engine"] == "ct2:int8+float32<1"
    assert f"{len(PAIRS)} of {len(PAIRS)} records (100.0 %)" in r.stderr.decode()  # the end-of-run note
    assert reports["auto"]["overall"]["n"] == reports["torch"]["overall"]["n"] == len(PAIRS)
    assert reports["auto"]["languages"] == reports["torch"]["languages"]
    # a margin without an int8 compute type has nothing to re-score: said, not ignored
    r = run_xlt("eval", "--model", families["distilbert"], "--rescore-margin", "0.1", data, env=env)
    assert r.returncode == 2 and "--compute-type int8" in r.stderr.decode()


def test_usage_errors(families, tmp_path):
    data = nli_file(tmp_path)
    student = make_student(tmp_path / "student")
    r = run_xlt("soft-label", "--teacher", student, "--engine", "ct2", data)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1
    assert err.startswith("xlt soft-label: error: --engine ct2: --teacher ") and "xlt-small" in err
    r = run_xlt("eval", "--model", student, "--engine", "ct2", data)
    assert r.returncode == 2 and r.stderr.decode().startswith("xlt eval: error: --engine ct2")
    r = run_xlt("eval", "--model", families["bert"], "--engine", "torch", "--compute-type", "int8", data)
    assert r.returncode == 2 and "--compute-type" in r.stderr.decode()
    r = run_xlt("eval", "--model", families["bert"], "--engine", "ct2", "--compute-type", "int3", data,
                env={"XLT_HOME": str(tmp_path / "home")})
    assert r.returncode == 2 and "--compute-type must be one of" in r.stderr.decode()
    r = run_xlt("soft-label", "--teacher", families["bert"], "--engine", "onnx", data)
    assert r.returncode == 2 and "--engine must be one of" in r.stderr.decode()
    r = run_xlt("eval", "--model", families["bert"], "--engine", "torch", "--rescore-margin", "0.1", data)
    assert r.returncode == 2 and "--rescore-margin" in r.stderr.decode()
    r = run_xlt("soft-label", "--teacher", families["bert"], "--rescore-margin", "1.5", data)
    assert r.returncode == 2 and "--rescore-margin" in r.stderr.decode()


def test_threads_reach_the_engines(families, cache):
    """--threads: CTranslate2's intra-op threads, or torch's thread count (in a child process, as
    torch's setting is process-wide)."""
    import subprocess
    import sys

    from xlt.inference.classifier import Classifier

    assert Classifier(families["bert"], engine="ct2", device="cpu", threads=1).runner.threads == 1
    code = ("import torch; from xlt.inference.classifier import Classifier; "
            f"Classifier({families['bert']!r}, engine='torch', device='cpu', threads=1); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def negate_a_middle_tensor(path: str) -> str:
    """Flip the signs of the largest float32 tensor of `path`/model.safetensors that lies wholly
    after its first MiB and before its last (same size), then put the file's mtime back: an edit
    that a digest of size, head and tail (or of names, sizes and mtimes) cannot see."""
    import struct

    f = os.path.join(path, "model.safetensors")
    st = os.stat(f)
    mib = 1 << 20
    with open(f, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        spans = [(b - a, 8 + n + a, b - a) for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"
                 for a, b in [v["data_offsets"]] if 8 + n + a > mib and 8 + n + b < st.st_size - mib]
        _, start, size = max(spans)
        fh.seek(start)
        values = -np.frombuffer(fh.read(size), dtype=np.float32)
        fh.seek(start)
        fh.write(values.tobytes())
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(f) == st.st_size
    return f


def test_a_model_changed_in_place_is_converted_again(tmp_path):
    """The encoder cache is keyed by every byte of the model: after an in-place edit in the middle
    of the weights (size and mtime kept), ct2 gives the new model's outputs, not the cached old ones."""
    model = make_classifier(str(tmp_path / "big"), "bert", intermediate=12288)
    assert os.path.getsize(os.path.join(model, "model.safetensors")) > 4 << 20
    data = nli_file(tmp_path)
    env = {"XLT_HOME": str(tmp_path / "home")}

    def probs(name: str, *engine: str) -> np.ndarray:
        out = tmp_path / f"{name}.pred.jsonl"
        r = run_xlt("eval", "--model", model, *engine, "--threads", "1", "--predictions", str(out), data, env=env)
        assert r.returncode == 0, r.stderr.decode()
        return np.array([json.loads(x)["pred"]["probs"] for x in out.read_text().splitlines()])

    ct2 = ("--engine", "ct2", "--compute-type", "float32")
    old = probs("old", *ct2)
    negate_a_middle_tensor(model)
    new = probs("new", *ct2)
    ref = probs("torch", "--engine", "torch")
    assert np.abs(ref - old).max() > 1e-3  # the edit changed the model
    np.testing.assert_allclose(new, ref, atol=1e-4)
    assert len(os.listdir(tmp_path / "home" / "encoders")) == 2
