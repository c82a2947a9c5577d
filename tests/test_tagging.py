"""Sequence tagging core: the record shape, first-subword alignment, teach for taggers (objective,
truncation, dev selection, robust training, resume, DDP)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_xlt
from xlt.errors import RecordError, UsageError
from xlt.records import TAGGING, check_tags, check_text, infer_fields, parse_fields

ROOT = Path(__file__).resolve().parent.parent

DET = ["the", "a"]
ADJ = ["big", "small", "red", "old", "happy"]
NOUN = ["dog", "cat", "man", "woman", "child", "car", "house", "book"]
VERB = ["sits", "runs", "walks", "eats", "sleeps", "reads"]
ADP = ["in", "on", "at", "with"]


def sentences(n: int, *, seed: int = 0, lang: str = "en") -> list[dict]:
    """Rule-made tagging records (DET ADJ? NOUN VERB (ADP DET NOUN)?), learnable by a tiny model."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words, tags = [rng.choice(DET)], ["DET"]
        if rng.random() < 0.5:
            words.append(rng.choice(ADJ)); tags.append("ADJ")
        words += [rng.choice(NOUN), rng.choice(VERB)]; tags += ["NOUN", "VERB"]
        if rng.random() < 0.5:
            words += [rng.choice(ADP), rng.choice(DET), rng.choice(NOUN)]; tags += ["ADP", "DET", "NOUN"]
        out.append({"id": f"t{i}", "lang": lang, "tokens": words, "tags": tags, "text": " ".join(words)})
    return out


def write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tag_data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("tagdata")
    return {"train": write(d / "train.jsonl", sentences(48, seed=1)), "dev": write(d / "dev.jsonl", sentences(16, seed=2))}


def weights(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


# -- the record shape -----------------------------------------------------------------------------

def test_the_shape_is_inferred_from_tokens_and_forced_by_name():
    assert infer_fields({"tokens": ["a"], "tags": ["DET"], "text": "a"}) == TAGGING  # before `text`
    assert infer_fields({"tokens": ["a"]}) == TAGGING  # unlabelled (translated, soft-labelled) text
    assert infer_fields({"text": "a b"}) == ("text",)
    assert parse_fields("tagging") == TAGGING
    with pytest.raises(UsageError, match="tagging"):
        parse_fields("tokens,text")


@pytest.mark.parametrize("record, message", [
    ({"tokens": "the dog", "tags": ["DET"]}, 'field "tokens" must be a list'),
    ({"tokens": [], "tags": []}, 'field "tokens" is empty'),
    ({"tokens": ["the", " "], "tags": ["DET", "X"]}, 'field "tokens\\[1\\]" is empty'),
    ({"tokens": ["the", 3], "tags": ["DET", "X"]}, 'field "tokens\\[1\\]" must be a string'),
    ({"tokens": ["the", "dog"], "tags": ["DET"]}, 'field "tags" has 1 tags for 2 tokens'),
    ({"tokens": ["the"], "tags": "DET"}, 'field "tags" must be a list'),
    ({"tokens": ["the"], "tags": [None]}, 'field "tags\\[0\\]"'),
    ({"tokens": ["the"]}, 'missing field "tags"'),
])
def test_bad_tagging_records_are_record_errors(record, message):
    with pytest.raises(RecordError, match=message):
        check_tags(record)


def test_words_with_spaces_are_words():
    rec = {"tokens": ["25 000", "người"], "tags": ["NUM", "NOUN"]}
    check_text(rec, TAGGING)
    assert check_tags(rec, has={"NUM", "NOUN"}.__contains__) == ["NUM", "NOUN"]
    with pytest.raises(RecordError, match="tag 'NOUN' is not in the label set"):
        check_tags(rec, has={"NUM"}.__contains__)


# -- first-subword alignment ----------------------------------------------------------------------

def test_first_subword_alignment_golden(tiny_bert):
    from transformers import AutoTokenizer

    from xlt.tagging.encode import encode_words, first_subwords

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    words = ["the", "dogs", "25 000", "xq", "."]
    enc = encode_words(tok, [words], max_length=64)
    pieces = tok.convert_ids_to_tokens(enc.ids[0])
    # [CLS] the dog ##s 2 ##5 0 ##0 ##0 x ##q . [SEP]: "25 000" stays one word (its two
    # whitespace pieces are subwords of that word), each word is read at its first subword
    assert pieces == ["[CLS]", "the", "dog", "##s", "2", "##5", "0", "##0", "##0", "x", "##q", ".", "[SEP]"]
    assert enc.first == [[1, 2, 4, 9, 11]]
    assert first_subwords([None, 0, 0, 2, None], 3) == [1, -1, 3]  # word 1 got no subword
    # truncated to 6 subwords: [CLS] the dog ##s 2 [SEP] -> the last two words are not covered
    short = encode_words(tok, [words], max_length=6)
    assert short.first == [[1, 2, 4, -1, -1]] and short.uncovered() == 2
    batch = short.batch([0], pad_id=0)
    assert batch["word_pos"].tolist() == [[1, 2, 4, 0, 0]]
    assert batch["word_mask"].tolist() == [[True, True, True, False, False]]


def test_the_objective_reads_only_first_subwords(tiny_bert):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from xlt.tagging.encode import encode_words
    from xlt.train.teach import tagging_objective

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    enc = encode_words(tok, [["the", "dogs", "sleeps"], ["a", "cat"]], max_length=64)
    batch = enc.batch([0, 1], pad_id=0)
    batch["labels"] = torch.tensor([[0, 1, 2], [0, -100, -100]])
    batch["labels"][1, 1] = 1
    loss, _ = tagging_objective()(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
    # by hand: sentence 0 words at subword positions 1, 2 (dog; ##s ignored), 4; sentence 1 at 1, 2
    rows = torch.stack([logits[0, 1], logits[0, 2], logits[0, 4], logits[1, 1], logits[1, 2]])
    expected = F.cross_entropy(rows, torch.tensor([0, 1, 2, 0, 1]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- teach ----------------------------------------------------------------------------------------

def test_teach_a_tagger_learns_and_selects_on_dev(tiny_bert, tag_data, tmp_path):
    out = str(tmp_path / "tagger")
    r = run_xlt("teach", tag_data["train"], "--model", tiny_bert, "--out", out, "--dev", tag_data["dev"],
                "--epochs", "8", "--batch-size", "8", "--lr", "3e-3", "--eval-every", "12", "--seed", "1")
    assert r.returncode == 0, r.stderr.decode()
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["architectures"] == ["BertForTokenClassification"]
    m = json.load(open(os.path.join(out, "xlt.json")))
    assert m["fields"] == ["tokens"] and m["labels"] == ["ADJ", "ADP", "DET", "NOUN", "VERB"]
    history = m["dev"]["history"]
    assert len(history) == 4 and all("languages" in h and h["n"] > 0 for h in history)
    assert max(h["accuracy"] for h in history) > 0.9  # the rules are learnable: well above the 0.37 majority tag

    from xlt.inference.classifier import Classifier

    clf = Classifier(out)
    assert clf.tagging and clf.engine == "torch"  # auto falls back: taggers run on torch
    recs = sentences(4, seed=9)
    outs = clf.predict([(r["tokens"],) for r in recs])
    for rec, lg, cov in zip(recs, outs.logits, outs.covered):
        assert lg.shape == (len(rec["tokens"]), 5) and cov.all()


def test_teach_truncates_long_sentences_with_a_counted_warning(tiny_bert, tmp_path):
    long = {"id": "long", "lang": "en", "tokens": ["the", "dog"] * 40, "tags": ["DET", "NOUN"] * 40}
    train = write(tmp_path / "t.jsonl", sentences(6) + [long])
    r = run_xlt("teach", train, "--model", tiny_bert, "--out", str(tmp_path / "ck"), "--epochs", "1",
                "--batch-size", "4", "--max-length", "16")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    # 16 subwords: [CLS] + 14 words + [SEP]; 66 of the long sentence's 80 words lost their label
    assert "66 training word(s) lost their label" in err


def test_a_tag_outside_the_label_set_names_file_and_line(tiny_bert, tmp_path):
    recs = sentences(4)
    recs[2]["tags"][0] = "PROPN"
    train = write(tmp_path / "t.jsonl", recs)
    r = run_xlt("teach", train, "--model", tiny_bert, "--out", str(tmp_path / "ck"), "--labels", "ADJ,ADP,DET,NOUN,VERB")
    assert r.returncode == 2
    assert f"{train}:3:" in r.stderr.decode() and "PROPN" in r.stderr.decode()
    recs[2]["tags"] = recs[2]["tags"][:-1]
    write(tmp_path / "t.jsonl", recs)
    r = run_xlt("teach", train, "--model", tiny_bert, "--out", str(tmp_path / "ck"))
    assert r.returncode == 2 and f"{train}:3:" in r.stderr.decode() and "tags for" in r.stderr.decode()


def test_robust_training_works_for_taggers(tiny_bert, tag_data, tmp_path):
    for method in ("adv", "rs"):
        out = str(tmp_path / method)
        r = run_xlt("teach", tag_data["train"], "--model", tiny_bert, "--out", out, "--epochs", "1", "--batch-size", "8",
                    "--robust", method, "--epsilon", "0.01")
        assert r.returncode == 0, r.stderr.decode()
        m = json.load(open(os.path.join(out, "xlt.json")))
        assert m["robust"]["method"] == method and m["training"]["steps"] == 6


def test_resume_after_kill_gives_the_same_tagger(tiny_bert, tag_data, tmp_path):
    args = [tag_data["train"], "--model", tiny_bert, "--epochs", "25", "--batch-size", "8", "--lr", "1e-3",
            "--save-every", "20", "--seed", "3", "--log-every", "1000"]
    ref = str(tmp_path / "ref")
    r = run_xlt("teach", *args, "--out", ref)
    assert r.returncode == 0, r.stderr.decode()
    out = str(tmp_path / "killed")
    state = out + ".partial/state.json"
    proc = subprocess.Popen([sys.executable, "-m", "xlt", "teach", *args, "--out", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first saved state; make it longer"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = run_xlt("teach", *args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr.decode()
    assert "resumed from" in r.stderr.decode()
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_ddp_two_cpu_processes_train_a_tagger(tiny_bert, tag_data, tmp_path):
    out = str(tmp_path / "ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29651",
           "-m", "xlt", "teach", tag_data["train"], "--model", tiny_bert, "--out", out, "--dev", tag_data["dev"],
           "--epochs", "2", "--batch-size", "8", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    m = json.load(open(os.path.join(out, "xlt.json")))
    # 48 records, batch 8 -> 6 batches split over 2 ranks: 3 steps per epoch
    assert m["training"]["resolved"]["world_size"] == 2 and m["training"]["steps"] == 6
    assert m["dev"]["history"] and "languages" in m["dev"]["history"][0]


def test_lora_trains_a_tagger(tiny_bert, tag_data, tmp_path):
    out = str(tmp_path / "lora")
    r = run_xlt("teach", tag_data["train"], "--model", tiny_bert, "--out", out, "--epochs", "1", "--batch-size", "8",
                "--peft", "lora", "--lora-targets", "query,value")
    assert r.returncode == 0, r.stderr.decode()
    from xlt.inference.classifier import Classifier

    merged, adapter = Classifier(out), Classifier(os.path.join(out, "adapter"))
    assert merged.tagging and adapter.tagging
    recs = [(r["tokens"],) for r in sentences(3, seed=5)]
    for a, b in zip(merged.predict(recs).logits, adapter.predict(recs).logits):
        assert abs(a - b).max() < 1e-4
