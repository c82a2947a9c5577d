"""What every inference engine shares: its input (`Inputs`), its output (`Outputs`), the `Engine`
interface a `Classifier` holds, the batching loop (`gather_outputs`) and `softmax`.

Imports nothing else of xlt, so any module may use these types without pulling an engine in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

Texts = Sequence[tuple[str, ...]]


@dataclass
class Outputs:
    """Per-example logits [N, C] and, when asked, first-token hidden vectors [N, H] (numpy)."""

    logits: Any
    hidden: Any | None = None


class Inputs:
    """One chunk of records for an engine: their texts (one tuple of text fields per record) and
    their token ids (`encoded`, an `xlt.train.data.Encoded`), made on first use, so an engine that
    reads the texts themselves never tokenizes."""

    def __init__(self, texts: Texts, encode: Callable[[Texts], Any]) -> None:
        self.texts = texts
        self._encode = encode

    @cached_property
    def encoded(self) -> Any:
        return self._encode(self.texts)


class Engine(Protocol):
    """What computes a classifier's outputs; `xlt.inference.classifier.Classifier` holds one.

    A new engine is one new class with these members (and its place in
    `xlt.inference.classifier.open_engine`).
    """

    kind: str  # "torch", "ct2", "predictions": Classifier.engine
    resolved: str  # where the model is (a directory, a hub id, a predictions file)
    labels: Sequence[Any]  # label values in the order of the logits' columns (id2label)
    manifest: dict[str, Any]  # the checkpoint's xlt.json ({} for any other model)
    tokenizer: Any  # None when the engine reads the texts, not token ids
    model: Any  # the torch module behind the outputs (per-layer states), else None
    device: Any
    compute_type: str | None

    @property
    def name(self) -> str:
        """What ran, for signatures: `torch`, `ct2:float32`, `ct2:int8+float32<0.03`, `predictions`."""
        ...

    @property
    def digest(self) -> str:
        """The model's content digest (`xlt.digest.dir_digest`), or what stands for it."""
        ...

    def run(self, inputs: Inputs, *, batch_size: int, hidden: bool = False) -> Outputs:
        """Outputs for every record of `inputs`, in its order."""
        ...

    def note(self) -> str | None:
        """What the engine did worth a log line at the end of a run, or None."""
        ...


def gather_outputs(n: int, batches: Iterable[Sequence[int]],
                   forward: Callable[[Sequence[int]], tuple[Any, Any | None]]) -> Outputs:
    """Outputs of `n` records run batch by batch: `batches` (e.g. `xlt.train.data.sorted_batches`)
    cover the rows 0..n-1 in any order; `forward(rows)` gives the logits (and hidden vectors, or
    None) of those rows, which land in their rows of the result."""
    import numpy as np

    logits: Any = None
    hidden: Any = None
    for rows in batches:
        lg, h = forward(rows)
        if logits is None:
            logits = np.zeros((n, lg.shape[1]), dtype=np.float32)
        logits[rows] = lg
        if h is not None:
            if hidden is None:
                hidden = np.zeros((n, h.shape[1]), dtype=np.float32)
            hidden[rows] = h
    if logits is None:
        logits = np.zeros((0, 0), dtype=np.float32)
    return Outputs(logits, hidden)


def softmax(logits: Any, temperature: float = 1.0) -> Any:
    import numpy as np

    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
