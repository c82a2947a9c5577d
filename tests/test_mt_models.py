"""Tiny random Marian and M2M-100 translation models with real SentencePiece tokenizers, built at
test time (hermetic: no hub). Random weights produce garbage text: tests check structure."""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings

WORDS = """the a an and or not no is are was were he she it they i you we his her their my to of in on at
for with by from man woman dog cat child children people car house city street park book table
sits runs walks eats sleeps plays reads writes drives sings cooks smiles cries works talks
big small red blue green old young happy sad tall short good bad new
le la les un une et est sont chien chat homme femme enfant maison voiture rue""".split()


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "." for _ in range(n)]


def train_sentencepiece(path: str, corpus: list[str], vocab_size: int) -> list[str]:
    """A real unigram SentencePiece model (only <unk> reserved, id 0); returns its pieces."""
    import sentencepiece as spm

    with open(path, "wb") as fh:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus), model_writer=fh, vocab_size=vocab_size, model_type="unigram",
            character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=False,
            minloglevel=2, num_threads=1,
        )
    sp = spm.SentencePieceProcessor(model_file=path)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _quiet():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def make_marian(out: str, *, source_lang: str = "en", target_lang: str = "fr", d_model: int = 32, layers: int = 2,
                heads: int = 2, ffn: int = 64, vocab_size: int = 150, max_positions: int = 64, seed: int = 0,
                corpus: list[str] | None = None, model_vocab_size: int | None = None, init_std: float = 2.0) -> str:
    """A random MarianMTModel (OPUS-MT layout: source.spm/target.spm, a shared vocab.json with
    </s>=0, <unk>=1, <pad> last) saved with its MarianTokenizer to `out`.

    `model_vocab_size` larger than the tokenizer's vocabulary pads the vocabulary with unused
    `<madeupN>` entries (to give a benchmark model a realistic embedding/output size). A large
    `init_std` makes the random model's output depend on its input (tests can see misrouting)."""
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    _quiet()
    os.makedirs(out, exist_ok=True)
    pieces = train_sentencepiece(os.path.join(out, "source.spm"), corpus or sentences(), vocab_size)
    shutil.copy(os.path.join(out, "source.spm"), os.path.join(out, "target.spm"))
    tokens = ["</s>", "<unk>"] + [p for p in pieces if p != "<unk>"]
    if model_vocab_size:
        tokens += [f"<madeup{i}>" for i in range(model_vocab_size - len(tokens) - 1)]
    tokens.append("<pad>")
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump({t: i for i, t in enumerate(tokens)}, fh, ensure_ascii=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = MarianTokenizer(os.path.join(out, "source.spm"), os.path.join(out, "target.spm"),
                              os.path.join(out, "vocab.json"), source_lang=source_lang, target_lang=target_lang,
                              model_max_length=max_positions)
    tok.save_pretrained(out)
    n = len(tokens)
    torch.manual_seed(seed)
    config = MarianConfig(
        vocab_size=n, d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_position_embeddings=max_positions,
        pad_token_id=n - 1, eos_token_id=0, decoder_start_token_id=n - 1, forced_eos_token_id=0, init_std=init_std,
    )
    MarianMTModel(config).save_pretrained(out)
    return out


def make_m2m100(out: str, *, d_model: int = 32, layers: int = 2, heads: int = 2, ffn: int = 64, vocab_size: int = 150,
                max_positions: int = 64, seed: int = 0, init_std: float = 2.0) -> str:
    """A random M2M100ForConditionalGeneration with a real M2M100Tokenizer (vocab.json +
    sentencepiece.bpe.model; 100 `__xx__` language tokens after the vocabulary, then 8 made-up
    words, as in facebook/m2m100_418M) saved to `out`."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    _quiet()
    os.makedirs(out, exist_ok=True)
    spm_path = os.path.join(out, "sentencepiece.bpe.model")
    pieces = train_sentencepiece(spm_path, sentences(), vocab_size)
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [p for p in pieces if p != "<unk>"]
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump({t: i for i, t in enumerate(tokens)}, fh, ensure_ascii=False)
    tok = M2M100Tokenizer(os.path.join(out, "vocab.json"), spm_path, num_madeup_words=8, model_max_length=max_positions)
    tok.save_pretrained(out)
    n = len(tokens) + len(tok.lang_code_to_token) + 8
    torch.manual_seed(seed)
    config = M2M100Config(
        vocab_size=n, d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_position_embeddings=max_positions,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=init_std,
    )
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    return out
