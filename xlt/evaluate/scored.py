"""What `xlt eval` keeps of the records it scored (`Scored`), shared by the classifier report
(`xlt.evaluate.scoring`) and the tagger report (`xlt.evaluate.tagging`), and the percentage
format of their tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scored:
    """What is kept per record: languages, gold index (-1 without label), predictions per model.
    For a tagger (`tagging`) gold is a list of tag indices (None without tags) and a prediction a
    list of tag indices, `xlt.tagging.metrics.UNCOVERED` for a word the model could not see."""

    langs: list[str] = field(default_factory=list)
    pair_langs: list[tuple[str, str]] = field(default_factory=list)
    gold: list[Any] = field(default_factory=list)
    preds: list[list[Any]] = field(default_factory=list)
    unlabelled: int = 0
    unlabelled_by_lang: dict[str, int] = field(default_factory=dict)
    tagging: bool = False


def pct(x: Any) -> str:
    """A rate as a percentage with two decimals, `-` when undefined (None)."""
    return "-" if x is None else f"{100 * x:.2f}"
