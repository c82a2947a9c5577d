"""Padding a batch of token id lists (dynamic padding): the one collate every batch goes through.

Imports nothing of xlt, so the sentence and the word encodings (`xlt.train.data.Encoded`,
`xlt.tagging.encode.WordEncoded`) share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def collate(ids: Sequence[Sequence[int]], *, pad_id: int, type_ids: Sequence[Sequence[int]] | None = None) -> dict[str, Any]:
    """Pad a batch of token id lists to its own longest member (dynamic padding)."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if type_ids is not None:
        tt = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(type_ids):
            tt[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        batch["token_type_ids"] = tt
    return batch
