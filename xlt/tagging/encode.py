"""Words -> subword ids, and where each word's first subword is (`WordEncoded`).

Words are never re-split: the tokenizer gets them as they are (`is_split_into_words=True`), so a
word holding spaces stays one word. A word that gets no subword of its own (truncated away by
`max_length`, or a character the tokenizer drops) is *not covered*: position -1, no prediction,
and counted so callers can say how many words they lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.errors import UsageError
from xlt.train.batch import collate

Words = Sequence[str]


@dataclass
class WordEncoded:
    """Token ids per example (unpadded), token type ids when the tokenizer makes them, and for
    every word of every example the position of its first subword (-1: not covered)."""

    ids: list[list[int]]
    types: list[list[int]] | None
    first: list[list[int]]

    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def uncovered(self) -> int:
        """How many words have no subword (truncated or dropped by the tokenizer)."""
        return sum(1 for row in self.first for p in row if p < 0)

    def batch(self, rows: Sequence[int], *, pad_id: int) -> dict[str, Any]:
        """Padded ids plus `word_pos` [B, W] (first-subword positions, 0 where no word) and
        `word_mask` [B, W] (True where the word is covered)."""
        import torch

        batch = collate([self.ids[i] for i in rows], pad_id=pad_id,
                        type_ids=[self.types[i] for i in rows] if self.types is not None else None)
        width = max(len(self.first[i]) for i in rows)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, i in enumerate(rows):
            first = torch.tensor(self.first[i], dtype=torch.long)
            pos[r, : len(first)] = first.clamp(min=0)
            mask[r, : len(first)] = first >= 0
        batch["word_pos"] = pos
        batch["word_mask"] = mask
        return batch


def first_subwords(word_ids: Sequence[int | None], n_words: int) -> list[int]:
    """The position of the first subword of each of `n_words` words, given the word index of every
    position (None for special tokens), as a fast tokenizer's `word_ids()` gives it; -1 for a word
    with no subword."""
    first = [-1] * n_words
    for pos, w in enumerate(word_ids):
        if w is not None and first[w] < 0:
            first[w] = pos
    return first


def encode_words(tokenizer: Any, words: Sequence[Words], *, max_length: int, chunk: int = 1024) -> WordEncoded:
    """Tokenize lists of words (truncated to `max_length` subwords, unpadded) and find each word's
    first subword. Needs a fast tokenizer (one that maps subwords back to words)."""
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError(f"tagging needs a fast tokenizer (word ids per subword); {type(tokenizer).__name__} is not one")
    ids: list[list[int]] = []
    types: list[list[int]] | None = None
    first: list[list[int]] = []
    for start in range(0, len(words), chunk):
        part = [list(w) for w in words[start:start + chunk]]
        enc = tokenizer(part, is_split_into_words=True, truncation=True, max_length=max_length, padding=False)
        ids.extend(enc["input_ids"])
        if "token_type_ids" in enc:
            types = (types or []) + list(enc["token_type_ids"])
        first.extend(first_subwords(enc.word_ids(j), len(ws)) for j, ws in enumerate(part))
    return WordEncoded(ids, types, first)
