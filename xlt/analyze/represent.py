"""Representations for `analyze`: every import of inference code (xlt.inference and its tokenizing)
lives in this module, so moving the inference code costs one edit here.

The final first-token vector comes from `Classifier.predict(hidden=True)` on any engine (ct2 where
it can run). Other layers need the torch model with `output_hidden_states=True`; they are pooled
the same way (the first token of each layer's states; `hidden_states[0]` is the embeddings, layer
L the last) and run through the same length-sorted batching (`run_model`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.errors import UsageError
from xlt.inference.classifier import Classifier
from xlt.inference.torch_engine import run_model
from xlt.inference.types import Outputs
from xlt.train.data import tokenize


@dataclass
class Reps:
    """Per text: logits [n, C] and first-token vectors [n, K, H] of the K layers asked for."""

    logits: Any
    vectors: Any


def load(path: str, *, option: str, torch_needed: bool, device: str, batch_size: int, max_length: int | None,
         engine: str, compute_type: str | None, threads: int) -> Classifier:
    """A model for `analyze`: float32 (`exact`) outputs, so the numbers are the model's own; the
    torch engine when layers other than the last are read."""
    if torch_needed:
        if engine == "ct2" or compute_type:
            raise UsageError("--layer N or all reads the torch model's hidden states: use --engine torch or auto, "
                             "without --compute-type")
        engine = "torch"
    clf = Classifier(path, option=option, device=device, batch_size=batch_size, max_length=max_length,
                     engine=engine, compute_type=compute_type, exact=True, threads=threads)
    if clf.tagging:
        raise UsageError(f"{option} {path}: a tagger (token classifier); xlt analyze compares the sentence "
                         "representations of classifiers")
    return clf


def num_layers(clf: Classifier) -> int:
    """The number of transformer layers L of a torch model (hidden states 0..L)."""
    config = clf.model.config
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    if not isinstance(n, int) or n < 1:
        raise UsageError(f"{clf.path}: cannot tell how many layers this model has; use --layer last")
    return n


def is_classifier(clf: Classifier) -> bool:
    """Whether the model has a trained classification head (so its predictions mean something),
    rather than a bare encoder loaded with a new random head."""
    manifest = getattr(clf, "manifest", None) or {}
    if manifest.get("labels") is not None:
        return True
    if clf.model is None:  # ct2 runs only *ForSequenceClassification checkpoints
        return True
    archs = getattr(clf.model.config, "architectures", None) or _config_architectures(getattr(clf, "resolved", ""))
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def _config_architectures(path: str) -> list[str]:
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            return list(json.load(fh).get("architectures") or [])
    except (OSError, ValueError, AttributeError):
        return []


class _FirstTokens:
    """Wraps a torch classifier so `run_model` returns the first-token vectors of chosen layers,
    concatenated, as its `hidden` output."""

    def __init__(self, model: Any, layers: Sequence[int]) -> None:
        self.model, self.layers = model, list(layers)

    def __call__(self, **batch: Any) -> Any:
        import torch

        out = self.model(**batch)
        states = getattr(out, "hidden_states", None)
        if not states:
            raise UsageError("this model does not return per-layer hidden states; use --layer last")
        if max(self.layers) >= len(states):
            raise UsageError(f"the model has hidden states 0..{len(states) - 1}, not layer {max(self.layers)}")
        return Outputs(out.logits, torch.cat([states[k][:, 0] for k in self.layers], dim=-1))


def represent(clf: Classifier, texts: Sequence[tuple[str, ...]], *, layers: Sequence[int] | None) -> Reps:
    """Logits and first-token vectors of `texts`: the final vector from the model's own engine
    (`layers=None`), else those of `layers` (torch only)."""
    if layers is None:
        out = clf.predict(texts, hidden=True)
        return Reps(out.logits, out.hidden[:, None, :])
    encoded = tokenize(clf.tokenizer, texts, max_length=clf.max_length)
    out = run_model(_FirstTokens(clf.model, layers), encoded, pad_id=clf.pad_id, batch_size=clf.batch_size,
                    device=clf.device, hidden=True)
    return Reps(out.logits, out.hidden.reshape(len(texts), len(layers), -1))
