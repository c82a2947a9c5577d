"""Run a teacher once per distinct input: parallel text repeats its source view.

`xlt pair --src en` gives each of N target languages' records the same English record as its
`src` view, so a teacher reading the views would run N times on each English text. `UniqueRuns`
keeps each distinct input's output for the rest of one run and runs the model only on inputs it
has not seen. The key is the whole input (every text field, every word), with the `hidden` flag,
for one teacher object: an output is reused only for exactly the input that produced it.
The memory is bounded (`limit` inputs, oldest forgotten first). Saved predictions, which are read
in step with the input, always get every row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from xlt.inference.types import Outputs, Texts


def _key(text: tuple[Any, ...], hidden: bool) -> tuple[Any, ...]:
    return (hidden, *(tuple(x) if isinstance(x, list) else x for x in text))


class UniqueRuns:
    """`predict(texts, hidden=)` like the teacher's (`Outputs`, or `WordOutputs` for a tagger),
    computing only inputs not seen before in this object's life. `computed` / `reused` count
    inputs for the log."""

    def __init__(self, teacher: Any, *, limit: int = 200_000) -> None:
        self.teacher = teacher
        self.limit = limit
        self.memo: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
        self.computed = 0
        self.reused = 0

    def predict(self, texts: Texts, *, hidden: bool = False) -> Any:
        if getattr(self.teacher, "engine", None) == "predictions":  # read in step with the input: every row
            return self.teacher.predict(texts, hidden=hidden)
        keys = [_key(t, hidden) for t in texts]
        new: dict[tuple[Any, ...], int] = {}
        todo: list[tuple[Any, ...]] = []
        for k, t in zip(keys, texts):
            if k not in self.memo and k not in new:
                new[k] = len(todo)
                todo.append(t)
        fresh: list[tuple[Any, ...]] = []
        if todo:
            fresh = _rows(self.teacher.predict(todo, hidden=hidden), len(todo))
        self.computed += len(todo)
        self.reused += len(texts) - len(todo)
        rows = [fresh[new[k]] if k in new else self.memo[k] for k in keys]
        for k, j in new.items():
            self.memo[k] = fresh[j]
        while len(self.memo) > self.limit:
            self.memo.popitem(last=False)
        return _outputs(rows, tagging=bool(getattr(self.teacher, "tagging", False)), hidden=hidden)

    def note(self) -> str | None:
        if not self.reused:
            return None
        return (f"the teacher ran on {self.computed} distinct input(s) and reused those outputs for "
                f"{self.reused} repeated one(s)")


def _rows(out: Any, n: int) -> list[tuple[Any, ...]]:
    """Per-input (logits, hidden or None, covered or None) rows of an engine's outputs."""
    covered = getattr(out, "covered", None)
    return [(out.logits[i], out.hidden[i] if out.hidden is not None else None,
             covered[i] if covered is not None else None) for i in range(n)]


def _outputs(rows: Sequence[tuple[Any, ...]], *, tagging: bool, hidden: bool) -> Any:
    import numpy as np

    if tagging:
        from xlt.tagging.model import WordOutputs

        return WordOutputs([r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows] if hidden else None)
    if not rows:
        return Outputs(np.zeros((0, 0), dtype=np.float32), None)
    return Outputs(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]) if hidden else None)
