"""Small from-scratch students (xlt.distill.students) and their BPE vocabulary (xlt.distill.bpe)."""

from __future__ import annotations

import os
import random

import pytest
import torch

from xlt.distill.bpe import train_bpe_tokenizer
from xlt.distill.losses import KDLoss
from xlt.distill.students import (XltSmallConfig, XltSmallForSequenceClassification, build_student, count_parameters,
                                  sentence_vector)
from xlt.errors import UsageError

LABELS = ["entailment", "neutral", "contradiction"]
ARCHS = ["transformer", "bilstm", "cnn"]
#: Tiny sizes for the fast tests (the full-size defaults are only counted, never trained here).
TINY = {
    "transformer": dict(embedding_size=32, num_layers=2, num_heads=2, ffn_size=64),
    "bilstm": dict(embedding_size=32, lstm_hidden=32),
    "cnn": dict(embedding_size=32, num_filters=32),
}


@pytest.fixture
def one_thread():
    """Tiny models on a shared machine run faster on one thread than fighting for two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(arch: str, vocab: int = 60, **kw) -> XltSmallForSequenceClassification:
    torch.manual_seed(0)
    return build_student(arch, vocab_size=vocab, labels=LABELS, pad_token_id=0, max_position_embeddings=32,
                         **{**TINY[arch], **kw})


def padded_batch(vocab: int = 60):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, vocab, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, n in ((1, 6), (2, 2)):
        ids[row, n:] = 0
        mask[row, n:] = 0
    return ids, mask


@pytest.mark.parametrize("arch", ARCHS)
def test_full_size_students_have_about_5m_parameters(arch):
    model = build_student(arch, vocab_size=10000, labels=LABELS, pad_token_id=0)
    n = count_parameters(model)
    print(f"{arch}: {n:,} parameters at vocab 10k")
    assert 3_000_000 <= n <= 8_000_000
    assert model.config.hidden_size == {"transformer": 256, "bilstm": 512, "cnn": 768}[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_padding_is_not_read(arch):
    model = tiny(arch).eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert out.logits.shape == (3, 3)
        assert out.hidden.shape == (3, model.config.hidden_size)
        assert all(s.shape[:2] == (3, 9) for s in out.hidden_states)
        # Each padded row scores as if it were alone and unpadded.
        for row, n in ((1, 6), (2, 2)):
            alone = model(input_ids=ids[row:row + 1, :n], attention_mask=mask[row:row + 1, :n])
            torch.testing.assert_close(alone.logits[0], out.logits[row], atol=1e-5, rtol=1e-5)
        # inputs_embeds (as xlt.robust passes them) is the same computation as input_ids.
        via_embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask)
        torch.testing.assert_close(via_embeds.logits, out.logits)
        assert model(input_ids=ids, attention_mask=mask).hidden_states is None
    labels = torch.tensor([0, 2, 1])
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(out.logits, labels).item(), rel=1e-5)


def test_transformer_pooling_and_projection():
    ids, mask = padded_batch()
    mean = tiny("transformer").eval()
    cls = tiny("transformer", pooling="cls").eval()
    with torch.no_grad():
        states = cls(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        torch.testing.assert_close(cls(input_ids=ids, attention_mask=mask).hidden, states[-1][:, 0])
        m = mask.unsqueeze(-1).float()
        last = mean(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(mean(input_ids=ids, attention_mask=mask).hidden, (last * m).sum(1) / m.sum(1))
    projected = tiny("cnn", pooled_size=48).eval()
    assert projected(input_ids=ids, attention_mask=mask).hidden.shape == (3, 48)
    assert projected.config.hidden_size == 48
    with pytest.raises(UsageError, match="exceed"):
        mean(input_ids=torch.ones(1, 40, dtype=torch.long))


def test_config_errors():
    with pytest.raises(UsageError, match="choose from transformer, bilstm, cnn"):
        XltSmallConfig(arch="gru")
    with pytest.raises(UsageError, match="pooling 'cls'"):
        XltSmallConfig(arch="bilstm", pooling="cls")
    with pytest.raises(UsageError, match="divisible"):
        XltSmallConfig(arch="transformer", embedding_size=30, num_heads=4)


def test_sentence_vector_of_student_and_bert_outputs(tiny_classifier):
    from transformers import AutoModelForSequenceClassification

    ids, mask = padded_batch()
    student = tiny("bilstm").eval()
    out = student(input_ids=ids, attention_mask=mask)
    assert sentence_vector(out) is out.hidden
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.no_grad():
        tout = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(sentence_vector(tout), tout.hidden_states[-1][:, 0])
    with pytest.raises(UsageError, match="output_hidden_states=True"):
        sentence_vector(bert(input_ids=ids, attention_mask=mask))


SENTENCES = {
    "en": "the {a} {n} {v} near the {b} {m} while a {c} {o} watches quietly",
    "fr": "le {n} {a} {v} près de la {m} pendant que le {o} regarde",
    "de": "der {a} {n} {v} neben dem {m} während die {o} schaut",
    "el": "ο {n} {v} κοντά στο {m} ενώ το {o} κοιτάζει",
    "zh": "这只{n}在{m}旁边{v}，而{o}在看",
}
WORDS = {"a": ["big", "small", "old", "red"], "b": ["green", "tall"], "c": ["young", "happy"],
         "n": ["dog", "cat", "man", "child", "chien", "Hund", "σκύλος", "狗"],
         "m": ["house", "car", "park", "maison", "Haus", "σπίτι", "房子"],
         "o": ["woman", "bird", "femme", "Frau", "γυναίκα", "女人"],
         "v": ["sits", "runs", "sleeps", "dort", "läuft", "τρέχει", "跑"]}


def corpus(n: int = 400) -> list[str]:
    rng = random.Random(0)
    langs = list(SENTENCES)
    return [SENTENCES[langs[i % len(langs)]].format(**{k: rng.choice(v) for k, v in WORDS.items()})
            for i in range(n)]


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(corpus(), vocab_size=600, model_max_length=64)


def test_bpe_learns_saves_loads_and_encodes_pairs(bpe, tmp_path):
    from transformers import AutoTokenizer

    assert 260 < len(bpe) <= 600
    assert [bpe.pad_token_id, bpe.unk_token_id, bpe.cls_token_id, bpe.sep_token_id] == [0, 1, 2, 3]
    assert "Ġdog" in bpe.get_vocab()  # learned merges, not just bytes
    bpe.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text, pair = "the big dog sits near the green house", "le chien dort près de la maison"
    enc = loaded(text, pair)
    assert enc["input_ids"] == bpe(text, pair)["input_ids"]
    assert set(enc) == {"input_ids", "attention_mask"}
    tokens = loaded.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert loaded.decode(enc["input_ids"], skip_special_tokens=True).split() == (text + " " + pair).split()
    # Byte-level: an unseen script still encodes without [UNK] and decodes back.
    unseen = loaded("кошка спит 🐈")["input_ids"]
    assert loaded.unk_token_id not in unseen
    assert loaded.decode(unseen, skip_special_tokens=True).strip() == "кошка спит 🐈"
    long = loaded([text * 5], [pair * 5], truncation=True, max_length=20, padding="max_length")
    assert len(long["input_ids"][0]) == 20 and long["input_ids"][0][-1] == loaded.sep_token_id
    batch = loaded(["a dog", "the big old cat sleeps"], padding=True)
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0


def test_bpe_errors():
    with pytest.raises(UsageError, match="at least 261"):
        train_bpe_tokenizer(["a b c"], vocab_size=100)
    with pytest.raises(UsageError, match="no text"):
        train_bpe_tokenizer(["", ""], vocab_size=1000)


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_through_auto_classes(arch, bpe, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    model = tiny(arch, vocab=len(bpe)).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    bpe.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model.safetensors")
    assert AutoConfig.from_pretrained(tmp_path).model_type == "xlt-small"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is XltSmallForSequenceClassification
    assert loaded.config.arch == arch and loaded.config.id2label == dict(enumerate(LABELS))
    assert loaded.config.label2id == {x: i for i, x in enumerate(LABELS)}
    enc = tok(["the dog sits", "le chat dort dans la maison"], ["a cat runs", "der Hund läuft"],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).logits, model(**enc).logits, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_student_distils_a_teacher_function(arch, one_thread):
    """A fixed random bag-of-words teacher over synthetic token sequences: after 200 KD steps the
    student's held-out KL(teacher || student) is far below that of its untrained self."""
    vocab, n_cls, width = 60, 3, 12
    g = torch.Generator().manual_seed(1)
    token_logits = torch.randn(vocab, n_cls, generator=g) * 2

    def teacher(ids, mask):
        m = mask.unsqueeze(-1).float()
        return (token_logits[ids] * m).sum(1) / m.sum(1)

    def data(n):
        ids = torch.randint(4, vocab, (n, width), generator=g)
        mask = (torch.arange(width)[None] < torch.randint(3, width + 1, (n, 1), generator=g)).long()
        return ids * mask, mask

    train_ids, train_mask = data(2000)
    test_ids, test_mask = data(500)
    student = tiny(arch, vocab=vocab, dropout=0.0)
    kd, kl = KDLoss(2.0), KDLoss(1.0)

    def held_out_kl() -> float:
        student.eval()
        with torch.no_grad():
            value = kl(student(input_ids=test_ids, attention_mask=test_mask).logits, teacher(test_ids, test_mask)).item()
        student.train()
        return value

    before = held_out_kl()
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(200):
        rows = torch.randint(0, len(train_ids), (32,))
        loss = kd(student(input_ids=train_ids[rows], attention_mask=train_mask[rows]).logits,
                  teacher(train_ids[rows], train_mask[rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_kl()
    print(f"{arch}: held-out KL {before:.4f} -> {after:.4f}")
    assert after < 0.3 * before


@pytest.mark.parametrize("arch", ARCHS)
def test_students_train_with_robust_embedding_perturbation(arch):
    """xlt.robust perturbs `get_input_embeddings()` outputs and feeds them back as inputs_embeds."""
    from xlt.robust import RobustConfig, robust_loss

    model = tiny(arch, dropout=0.0)
    ids, mask = padded_batch()
    labels = torch.tensor([0, 1, 2])
    plain = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
    loss = robust_loss(model, {"input_ids": ids, "attention_mask": mask}, RobustConfig.from_options("adv", epsilon=1.0),
                       loss_fn_from_outputs=lambda out: torch.nn.functional.cross_entropy(out.logits, labels))
    loss.backward()
    assert loss.item() > plain.item()  # the adversarial step found a worse input
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
