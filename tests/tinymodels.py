"""Tiny random models built at test time (hermetic: no hub, no downloads)."""

from __future__ import annotations

import os
import string

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: Words common in the samples and tests; everything else falls back to characters.
WORDS = """the a an and or not no is are was were he she it they i you we his her their my to of in on at
for with by from man woman dog cat child children people car house city street park book table
sits runs walks eats sleeps plays reads writes drives sings cooks smiles cries works talks
big small red blue green old young happy sad tall short good bad new
le la les un une et est sont chien chat homme femme enfant maison voiture rue
der die das ein eine und ist sind hund katze mann frau kind haus
el los las y es perro gato hombre mujer niño casa coche""".split()


def vocab(extra: list[str] | None = None) -> list[str]:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    words = list(dict.fromkeys(WORDS + (extra or [])))
    return SPECIALS + chars + pieces + [w for w in words if w not in chars]


def make_tokenizer(out_dir: str, *, extra_words: list[str] | None = None):
    """A real WordPiece BertTokenizerFast over a small vocabulary, saved to `out_dir`."""
    from transformers import BertTokenizerFast

    os.makedirs(out_dir, exist_ok=True)
    words = vocab(extra_words)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True, model_max_length=128)
    tok.save_pretrained(out_dir)
    return tok


def make_tiny_bert(out_dir: str, *, labels: list[str] | None = None, hidden: int = 32, layers: int = 2,
                   heads: int = 2, seed: int = 0, classifier: bool = False) -> str:
    """A tiny random BERT encoder (or sequence classifier with `labels`) with its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tok = make_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 2, max_position_embeddings=128, type_vocab_size=2,
    )
    if classifier or labels:
        labels = labels or ["entailment", "neutral", "contradiction"]
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {l: i for i, l in enumerate(labels)}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(out_dir)
    return out_dir
