"""A byte-level BPE vocabulary learned from the distillation text, for the small students.

Byte-level BPE (as GPT-2/RoBERTa: NFKC, then bytes mapped to printable symbols, then merges) never
produces [UNK], so every script in the target languages is covered whatever the corpus. Special
tokens are [PAD] [UNK] [CLS] [SEP] (ids 0-3); single texts encode as "[CLS] A [SEP]" and pairs as
"[CLS] A [SEP] B [SEP]". The result is a transformers `PreTrainedTokenizerFast`: it saves with
`save_pretrained` and loads with `AutoTokenizer.from_pretrained`, next to the student's weights.
The students have no segment embeddings, so it returns only input_ids and attention_mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from xlt.errors import UsageError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
#: Specials plus the 256 byte symbols: the smallest vocabulary that can still learn merges.
MIN_VOCAB = len(SPECIAL_TOKENS) + 256 + 1


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int = 10000, min_frequency: int = 2,
                        model_max_length: int = 512) -> Any:
    """Learn a byte-level BPE vocabulary of at most `vocab_size` entries from `texts` (streamed once).

    Give each text field separately (premise and hypothesis as two texts). A small corpus can
    yield fewer entries than asked for: size the student with `len(tokenizer)`. Merges need a pair
    seen `min_frequency` times.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise UsageError(f"--vocab-size {vocab_size}: a byte-level BPE vocabulary needs at least {MIN_VOCAB} entries")
    if min_frequency < 1:
        raise UsageError(f"min_frequency must be >= 1, got {min_frequency}")
    seen = 0

    def counted(it: Iterable[str]) -> Iterator[str]:
        nonlocal seen
        for text in it:
            if text:
                seen += 1
                yield text

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(counted(texts), trainer=trainer)
    if seen == 0:
        raise UsageError("cannot learn a BPE vocabulary: the input has no text")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=model_max_length,
                                   model_input_names=["input_ids", "attention_mask"])
