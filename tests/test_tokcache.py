"""The tokenization cache (xlt.train.tokcache): same ids as in-memory tokenization, written once,
read back (memory-mapped) on the next run, keyed by tokenizer/max length/fields/texts."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_xlt

PAIRS = [("the cat sat on the mat", "a cat sat"), ("no dog here", "the dog is not here at all today"),
         ("x", "y"), ("a much longer premise with many many words in it to tokenize", "short")]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XLT_NO_TOKEN_CACHE", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def entries(home) -> list[str]:
    d = home / "tokenized"
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_cached_ids_and_batches_equal_in_memory_tokenization(home, tokenizer):
    from xlt.train.data import tokenize
    from xlt.train.tokcache import ArrowEncoded, cached_tokenize

    plain = tokenize(tokenizer, PAIRS, max_length=8)
    cached = cached_tokenize(tokenizer, PAIRS, max_length=8, fields=("premise", "hypothesis"))
    assert isinstance(cached, ArrowEncoded)
    assert cached.lengths() == plain.lengths() and max(plain.lengths()) == 8  # truncated
    assert [cached.ids[i] for i in range(len(PAIRS))] == plain.ids
    assert plain.types is not None and list(cached.types) == plain.types
    for rows in ([0, 1, 2, 3], [3, 1], [2]):
        a, b = cached.batch(rows, pad_id=0), plain.batch(rows, pad_id=0)
        assert sorted(a) == sorted(b) == ["attention_mask", "input_ids", "token_type_ids"]
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].tolist() == b[k].tolist(), k
    assert len(entries(home)) == 1
    meta = json.loads((home / "tokenized" / entries(home)[0] / "meta.json").read_text())
    assert meta["n"] == 4 and meta["max_length"] == 8 and meta["fields"] == ["premise", "hypothesis"]


def test_second_call_reads_the_cache_without_tokenizing(home, tokenizer, monkeypatch):
    import xlt.train.tokcache as tc

    first = tc.cached_tokenize(tokenizer, PAIRS, max_length=16, fields=("premise", "hypothesis"))

    def refuse(*args, **kwargs):
        raise AssertionError("re-tokenized despite the cache")

    monkeypatch.setattr(tc, "tokenize", refuse)
    again = tc.cached_tokenize(tokenizer, PAIRS, max_length=16, fields=("premise", "hypothesis"))
    assert again.lengths() == first.lengths()
    assert again.batch([0, 1, 2, 3], pad_id=0)["input_ids"].tolist() == first.batch([0, 1, 2, 3], pad_id=0)["input_ids"].tolist()
    # another max length, other fields or other texts are other entries (and do tokenize)
    monkeypatch.undo()
    monkeypatch.setenv("XLT_HOME", str(home))
    tc.cached_tokenize(tokenizer, PAIRS, max_length=12, fields=("premise", "hypothesis"))
    tc.cached_tokenize(tokenizer, PAIRS, max_length=16, fields=("hypothesis", "premise"))
    tc.cached_tokenize(tokenizer, PAIRS[:3], max_length=16, fields=("premise", "hypothesis"))
    assert len(entries(home)) == 4
    assert not [e for e in entries(home) if ".tmp-" in e]


def test_opt_out_writes_nothing(home, tokenizer, monkeypatch):
    from xlt.train.data import Encoded
    from xlt.train.tokcache import ArrowEncoded, cached_tokenize

    monkeypatch.setenv("XLT_NO_TOKEN_CACHE", "1")
    enc = cached_tokenize(tokenizer, [("only one text",)], max_length=8, fields=("text",))
    assert isinstance(enc, Encoded) and not isinstance(enc, ArrowEncoded)
    assert entries(home) == []


def test_tokenizer_digest_follows_the_vocabulary(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    from xlt.train.tokcache import tokenizer_digest

    a = AutoTokenizer.from_pretrained(tiny_bert)
    b = AutoTokenizer.from_pretrained(tiny_bert)
    assert tokenizer_digest(a) == tokenizer_digest(b) is not None
    b.add_tokens(["zzzyyy"])
    assert tokenizer_digest(a) != tokenizer_digest(b)


def test_teach_twice_tokenizes_once(tiny_bert, tmp_path):
    rows = [{"premise": f"the cat {w} sat", "hypothesis": "no cat" if i % 2 else "a cat", "label": i % 2}
            for i, w in enumerate(["red", "blue", "big", "small"] * 4)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"XLT_HOME": str(tmp_path / "home"), "XLT_NO_TOKEN_CACHE": ""}
    common = ["teach", str(data), "--model", tiny_bert, "--max-steps", "1", "--batch-size", "8", "--dev", str(data)]
    r1 = run_xlt(*common, "--out", str(tmp_path / "a.ckpt"), env=env)
    assert r1.returncode == 0, r1.stderr.decode()
    err1 = r1.stderr.decode()
    assert "tokenization cache: tokenized 16 training records" in err1
    assert "tokenization cache: read 16 tokenized dev records" in err1  # same texts as the training file
    r2 = run_xlt(*common, "--out", str(tmp_path / "b.ckpt"), env=env)
    assert r2.returncode == 0, r2.stderr.decode()
    err2 = r2.stderr.decode()
    assert "tokenization cache: read 16 tokenized training records" in err2
    assert "tokenization cache: tokenized" not in err2
    assert len(os.listdir(tmp_path / "home" / "tokenized")) == 1
