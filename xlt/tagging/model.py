"""Token classifiers read word by word: per-word logits at each word's first subword, the
training objective on them, inference over `WordEncoded` batches and dev scoring.

A checkpoint is a tagger when its config's architecture is a `...ForTokenClassification`
(`is_tagger`); it then loads with `AutoModelForTokenClassification`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.tagging.encode import WordEncoded


def is_tagger(path: str) -> bool:
    """Whether the model dir `path` holds a token classifier (its config.json says so)."""
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        with open(cfg, encoding="utf-8") as fh:
            archs = json.load(fh).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForTokenClassification") for a in archs)


def word_logits(logits: Any, word_pos: Any) -> Any:
    """[B, T, C] subword logits (or hidden states) -> [B, W, C] at each word's first subword."""
    return logits.gather(1, word_pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))


@dataclass
class WordOutputs:
    """Per-record outputs of a tagger: `logits[i]` is [W_i, C] (one row per word of record i),
    `covered[i]` [W_i] says which words have outputs (rows of uncovered words are zeros), and
    `hidden[i]` [W_i, H] the last layer's first-subword vectors when asked."""

    logits: list[Any]
    covered: list[Any]
    hidden: list[Any] | None = None

    def uncovered(self) -> int:
        return int(sum(int((~c).sum()) for c in self.covered))


def run_word_model(model: Any, encoded: WordEncoded, *, pad_id: int, batch_size: int, device: Any,
                   hidden: bool = False) -> WordOutputs:
    """Per-word logits (and hidden vectors) of every example of `encoded`, in its order."""
    import numpy as np
    import torch

    from xlt.train.data import sorted_batches

    n = len(encoded.ids)
    logits: list[Any] = [None] * n
    vectors: list[Any] = [None] * n
    covered = [np.asarray([p >= 0 for p in row], dtype=bool) for row in encoded.first]
    with torch.inference_mode():
        for rows in sorted_batches(encoded.lengths(), batch_size=batch_size):
            batch = encoded.batch(rows, pad_id=pad_id)
            pos = batch.pop("word_pos").to(device)
            batch.pop("word_mask")
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=True) if hidden else model(**batch)
            lg = word_logits(out.logits.float(), pos).cpu().numpy()
            hs = word_logits(out.hidden_states[-1].float(), pos).cpu().numpy() if hidden else None
            for r, i in enumerate(rows):
                w = len(encoded.first[i])
                logits[i] = np.where(covered[i][:, None], lg[r, :w], 0.0).astype(np.float32)
                if hs is not None:
                    vectors[i] = np.where(covered[i][:, None], hs[r, :w], 0.0).astype(np.float32)
    return WordOutputs(logits, covered, vectors if hidden else None)


def pad_words(rows: Sequence[Sequence[Any]], *, fill: float, dtype: Any) -> Any:
    """Per-example per-word values (lists of ints, or of vectors) -> one [N, W(, C)] tensor,
    padded with `fill`; batches cut it to their own width."""
    import torch

    width = max((len(r) for r in rows), default=0)
    first = next((r[0] for r in rows if len(r)), None)
    tail = tuple(torch.as_tensor(first).shape) if first is not None else ()
    out = torch.full((len(rows), width, *tail), fill, dtype=dtype)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = torch.as_tensor(r, dtype=dtype)
    return out


def word_batch_builder(encoded: WordEncoded, *, pad: int, gold: Any, tensors: Any) -> Any:
    """Batches of word-encoded examples: ids, word positions, gold tags [B, W] (-100 padded) and
    per-word tensors (teacher outputs, [N, W, ...]) cut to the batch's width."""

    def make_batch(rows: Sequence[int]) -> dict[str, Any]:
        idx = list(rows)
        batch = encoded.batch(idx, pad_id=pad)
        width = batch["word_pos"].shape[1]
        batch["labels"] = gold[idx, :width]
        for k, v in tensors.items():
            batch[k] = v[idx, :width]
        return batch

    return make_batch


def word_dev_scorer(model_encoded: WordEncoded, gold: Sequence[Sequence[int]], langs: Sequence[str], *,
                    pad: int, batch_size: int) -> Any:
    """Token accuracy (all languages and per language) of a tagger on dev examples; uncovered
    words count as wrong."""

    def score(model: Any) -> dict[str, Any]:
        device = next(model.parameters()).device
        out = run_word_model(model, model_encoded, pad_id=pad, batch_size=batch_size, device=device)
        right: dict[str, int] = {}
        total: dict[str, int] = {}
        for i, tags in enumerate(gold):
            pred = out.logits[i].argmax(axis=-1)
            ok = sum(1 for j, t in enumerate(tags) if t >= 0 and out.covered[i][j] and int(pred[j]) == t)
            right[langs[i]] = right.get(langs[i], 0) + ok
            total[langs[i]] = total.get(langs[i], 0) + sum(1 for t in tags if t >= 0)
        n = sum(total.values())
        return {"accuracy": round(sum(right.values()) / n, 5) if n else 0.0,
                "languages": {l: round(right[l] / total[l], 5) if total[l] else 0.0 for l in sorted(total)},
                "n": n}

    return score
