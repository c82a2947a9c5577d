"""End-of-run report of pseudo-labelling: examples seen and kept, per language and pseudo-class
(for taggers: words seen and kept, per language and pseudo-tag).

Torch-free and streaming: `update` takes one batch at a time (tensors or lists), so the report
never holds more than its counters. `merge` combines the reports of data-parallel ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _as_list(values: Any) -> list[Any]:
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)


class PseudoLabelReport:
    """Counts of seen and kept examples per language, and of kept examples per (language, class).

    `labels`: class names by id (for `to_dict`/`rows`); without it classes are shown as ids.
    `unit`: what is counted, "examples" or "words" (tagging: one pseudo-label per word; `to_dict`
    then says so).
    """

    def __init__(self, labels: Sequence[str] | None = None, *, unit: str = "examples") -> None:
        self.labels = list(labels) if labels is not None else None
        self.unit = unit
        self.seen: dict[str, int] = {}
        self.kept: dict[str, int] = {}
        self.kept_by_class: dict[str, dict[int, int]] = {}

    def update(self, langs: Sequence[str], pseudo_labels: Any, keep: Any) -> None:
        """Add one batch: per example (or word) its language, the teacher's argmax class and whether it was kept."""
        langs, ys, ks = list(langs), _as_list(pseudo_labels), _as_list(keep)
        if not len(langs) == len(ys) == len(ks):
            raise ValueError(f"PseudoLabelReport.update: {len(langs)} languages, {len(ys)} labels, {len(ks)} keep flags")
        for lang, y, k in zip(langs, ys, ks):
            self.seen[lang] = self.seen.get(lang, 0) + 1
            if k:
                self.kept[lang] = self.kept.get(lang, 0) + 1
                by = self.kept_by_class.setdefault(lang, {})
                by[int(y)] = by.get(int(y), 0) + 1

    def merge(self, other: "PseudoLabelReport") -> "PseudoLabelReport":
        """Add `other`'s counts into this report (e.g. from another rank); returns self."""
        for lang, n in other.seen.items():
            self.seen[lang] = self.seen.get(lang, 0) + n
        for lang, n in other.kept.items():
            self.kept[lang] = self.kept.get(lang, 0) + n
        for lang, by in other.kept_by_class.items():
            mine = self.kept_by_class.setdefault(lang, {})
            for y, n in by.items():
                mine[y] = mine.get(y, 0) + n
        return self

    @property
    def total_seen(self) -> int:
        return sum(self.seen.values())

    @property
    def total_kept(self) -> int:
        return sum(self.kept.values())

    def _name(self, y: int) -> str:
        if self.labels is not None and 0 <= y < len(self.labels):
            return str(self.labels[y])
        return str(y)

    def to_dict(self) -> dict[str, Any]:
        """{"seen", "kept", "langs": {lang: {"seen", "kept", "kept_by_class": {class: n}}}} for the manifest
        (plus "unit": "words" when the counts are of words)."""
        langs = {}
        for lang in sorted(self.seen):
            by = self.kept_by_class.get(lang, {})
            langs[lang] = {"seen": self.seen[lang], "kept": self.kept.get(lang, 0),
                           "kept_by_class": {self._name(y): by[y] for y in sorted(by)}}
        out: dict[str, Any] = {"seen": self.total_seen, "kept": self.total_kept, "langs": langs}
        if self.unit != "examples":
            out["unit"] = self.unit
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per language plus "all": lang, seen, kept, kept_pct and a count per class."""
        classes = sorted({y for by in self.kept_by_class.values() for y in by}
                         | set(range(len(self.labels or []))))
        out = []
        for lang in [*sorted(self.seen), "all"]:
            if lang == "all":
                seen, kept = self.total_seen, self.total_kept
                by: dict[int, int] = {}
                for b in self.kept_by_class.values():
                    for y, n in b.items():
                        by[y] = by.get(y, 0) + n
            else:
                seen, kept, by = self.seen[lang], self.kept.get(lang, 0), self.kept_by_class.get(lang, {})
            row = {"lang": lang, "seen": seen, "kept": kept, "kept_pct": round(100.0 * kept / seen, 1) if seen else 0.0}
            row.update({self._name(y): by.get(y, 0) for y in classes})
            out.append(row)
        return out
