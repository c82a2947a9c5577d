"""Tagging metrics: token accuracy, a per-tag table, entity spans (seqeval) and the per-sentence
counts that bootstrap intervals and paired tests resample.

Tags are indices into a label set; a word the model could not see (past `--max-length`) is
predicted `UNCOVERED` (-1), which is never a tag: it is wrong for token accuracy, a miss for its
gold tag, and `O` for entity spans (so an entity it cuts is not found).

Entity spans are CoNLL-style exact matches (Tjong Kim Sang & De Meulder 2003, the `conlleval`
script), found by `seqeval` in its default mode, the same chunking `seqeval.metrics.f1_score`
uses: a span is right when its type, start and end all match the gold span. Metrics whose
denominator is 0 (no predicted, or no gold spans) are NaN here and `null` in reports, where
seqeval would print 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: The prediction of a word without model output (truncated away).
UNCOVERED = -1

#: The outside tag of BIO / IOB2 tag sets.
OUTSIDE = "O"


def ratio(num: float, den: float) -> float:
    """num / den, NaN when den is 0 (a metric with nothing to measure)."""
    return num / den if den else float("nan")


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (F1 = 2 correct / (predicted + gold))."""
    return {"precision": ratio(correct, predicted), "recall": ratio(correct, gold),
            "f1": ratio(2 * correct, predicted + gold)}


def correct_words(gold: Sequence[int], pred: Sequence[int]) -> int:
    """How many words of one sentence have their gold tag predicted (uncovered words never)."""
    if len(gold) != len(pred):
        raise ValueError("one prediction per word")
    return sum(1 for a, b in zip(gold, pred) if a == b and b != UNCOVERED)


def token_accuracy(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]]) -> float:
    """Share of words whose predicted tag is the gold tag, over all words of all sentences
    (uncovered words are wrong); NaN without words."""
    right = sum(correct_words(g, p) for g, p in zip(gold, pred, strict=True))
    return ratio(right, sum(len(g) for g in gold))


def tag_table(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]],
              names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per tag (word level): precision, recall, F1 and support (gold words with that tag), in the
    order of `names` (tag index -> name)."""
    tp = [0] * len(names)
    npred = [0] * len(names)
    ngold = [0] * len(names)
    for g, p in zip(gold, pred, strict=True):
        for a, b in zip(g, p, strict=True):
            ngold[a] += 1
            if b != UNCOVERED:
                npred[b] += 1
                tp[b] += int(a == b)
    return {name: {**prf(tp[k], npred[k], ngold[k]), "support": ngold[k]} for k, name in enumerate(names)}


def is_bio(tags: Sequence[Any]) -> bool:
    """Whether a tag set is BIO / IOB2: every tag `O`, `B-<type>` or `I-<type>`, and at least one
    is not `O` (integers, `PER`, `E-PER`, `S-PER` are not)."""
    inside = False
    for t in tags:
        if not isinstance(t, str):
            return False
        if t == OUTSIDE:
            continue
        if len(t) < 3 or t[:2] not in ("B-", "I-") or not t[2:].strip():
            return False
        inside = True
    return inside


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The (type, first word, last word) spans of one sentence's BIO tags, as seqeval's default
    (CoNLL) mode chunks them: an `I-x` after `O` or another type starts a span, like conlleval."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(str(t), int(a), int(b)) for t, a, b in get_entities(list(tags))]


@dataclass
class EntityCounts:
    """Span counts of one sentence (or a sum of them): predicted, gold and correct spans, also
    per entity type ({type: [predicted, gold, correct]})."""

    predicted: int = 0
    gold: int = 0
    correct: int = 0
    types: dict[str, list[int]] = field(default_factory=dict)

    def add(self, other: "EntityCounts") -> None:
        self.predicted += other.predicted
        self.gold += other.gold
        self.correct += other.correct
        for t, c in other.types.items():
            mine = self.types.setdefault(t, [0, 0, 0])
            for k in range(3):
                mine[k] += c[k]

    def scores(self) -> dict[str, float]:
        return prf(self.correct, self.predicted, self.gold)


def entity_counts(gold: Sequence[str], pred: Sequence[str]) -> EntityCounts:
    """Exact-match span counts of one sentence (gold and predicted BIO tags, one per word)."""
    g = set(entity_spans(gold))
    p = set(entity_spans(pred))
    types: dict[str, list[int]] = {}
    for span in p:
        types.setdefault(span[0], [0, 0, 0])[0] += 1
    for span in g:
        types.setdefault(span[0], [0, 0, 0])[1] += 1
    for span in g & p:
        types[span[0]][2] += 1
    return EntityCounts(len(p), len(g), len(g & p), types)


def entity_report(total: EntityCounts) -> dict[str, Any]:
    """Precision / recall / F1 of summed span counts, and per entity type with its support (gold
    spans), types sorted."""
    return {**total.scores(), "types": {t: {**prf(c[2], c[0], c[1]), "support": c[1]}
                                        for t, c in sorted(total.types.items())}}


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro precision / recall / F1 of exact spans over sentences (seqeval's `precision_score`,
    `recall_score`, `f1_score`), and the same per entity type (`entity_report`)."""
    total = EntityCounts()
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ValueError("one predicted tag per word")
        total.add(entity_counts(g, p))
    return entity_report(total)


def tag_names(tags: Sequence[int], names: Sequence[str]) -> list[str]:
    """Tag indices -> names, `O` for an uncovered word (for spans: no entity predicted there)."""
    return [OUTSIDE if t == UNCOVERED else names[t] for t in tags]


@dataclass
class SentenceCounts:
    """What a sentence contributes to each metric, one entry per sentence (numpy int arrays), so
    intervals and paired tests resample sentences: `words`, `correct` words, and with a BIO tag
    set the spans `predicted`, `gold` and `entity_correct` (else None), and their sum with counts
    per type (`spans`)."""

    words: Any
    correct: Any
    predicted: Any = None
    gold: Any = None
    entity_correct: Any = None
    spans: EntityCounts | None = None

    def accuracy(self) -> float:
        return ratio(float(self.correct.sum()), float(self.words.sum()))

    def f1_units(self) -> tuple[Any, Any]:
        """Per sentence (2 x correct spans, predicted + gold spans): entity F1 as a ratio of sums."""
        return 2 * self.entity_correct, self.predicted + self.gold


def sentence_counts(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]], names: Sequence[str], *,
                    entities: bool) -> SentenceCounts:
    """Per-sentence counts of `pred` against `gold` (tag indices; `names` index -> tag name);
    span counts too when `entities` (a BIO tag set)."""
    import numpy as np

    words = np.array([len(g) for g in gold], dtype=np.int64)
    correct = np.array([correct_words(g, p) for g, p in zip(gold, pred, strict=True)], dtype=np.int64)
    out = SentenceCounts(words, correct)
    if entities:
        counts = [entity_counts(tag_names(g, names), tag_names(p, names)) for g, p in zip(gold, pred)]
        out.predicted = np.array([c.predicted for c in counts], dtype=np.int64)
        out.gold = np.array([c.gold for c in counts], dtype=np.int64)
        out.entity_correct = np.array([c.correct for c in counts], dtype=np.int64)
        out.spans = EntityCounts()
        for c in counts:
            out.spans.add(c)
    return out
