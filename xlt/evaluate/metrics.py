"""Classification metrics and bootstrap statistics (numpy; no torch).

- accuracy, macro-F1 (mean over classes of the per-class F1; a class absent from both gold and
  predictions is left out, a class with no correct prediction counts 0).
- `bootstrap_ci`: percentile bootstrap 95 % interval of accuracy (Efron & Tibshirani 1993).
- `paired_bootstrap`: paired bootstrap test of two systems on the same records (Koehn 2004,
  "Statistical Significance Tests for Machine Translation Evaluation"; the significance test of
  the robust-training paper): resample records with replacement, recompute both accuracies on
  each sample; p = share of samples where the difference does not have the observed sign.

Both resample *units* (records; for tagging, sentences): with `totals` a unit carries counts, and
the statistic is the ratio sum(correct) / sum(totals) over the units drawn (token accuracy: correct
words / words; entity F1: 2 x correct spans / (predicted + gold spans)), so the correlation of the
words of one sentence is kept. Without `totals` every unit counts 1 (the plain mean), as before.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from typing import Any


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    if not gold:
        return float("nan")
    return sum(int(g == p) for g, p in zip(gold, pred)) / len(gold)


def macro_f1(gold: Sequence[int], pred: Sequence[int], n_classes: int) -> float:
    scores = []
    for c in range(n_classes):
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else float("nan")


def bootstrap_ci(correct: Sequence[int] | Any, *, samples: int, seed: int = 0, level: float = 0.95,
                 totals: Sequence[float] | Any | None = None) -> tuple[float, float]:
    """Percentile interval of the mean of 0/1 `correct` over `samples` resamples; with `totals`
    (one count per unit), of sum(correct) / sum(totals) over the units drawn. A resample whose
    totals sum to 0 has no value and is left out; (nan, nan) when none has one."""
    import numpy as np

    c = np.asarray(correct, dtype=np.float64)
    t = np.ones_like(c) if totals is None else np.asarray(totals, dtype=np.float64)
    if c.shape != t.shape:
        raise ValueError("bootstrap_ci needs one total per unit")
    if c.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in range(samples):
            ix = rng.integers(0, c.size, c.size)
            means[s] = c[ix].sum() / t[ix].sum()
    means = means[np.isfinite(means)]
    if means.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(correct_a: Any, correct_b: Any, *, samples: int, seed: int = 0,
                     groups: Sequence[Any] | None = None, totals: Any = None, totals_b: Any = None) -> dict[str, float]:
    """Paired bootstrap of accuracy(A) - accuracy(B) on the same records.

    With `groups` (e.g. one language per record), each resample draws within every group and the
    statistic is the mean of per-group accuracies (the language average), so the test of the
    average matches how the average is reported. With `totals` (counts per unit, see the module
    docstring) each system's score is sum(correct) / sum(totals), with `totals_b` B's own
    denominators (entity F1: predicted spans differ between systems). A resample without a value
    (totals summing to 0) is left out.
    Returns delta, the 95 % interval of the delta, and a two-sided p-value.
    """
    import numpy as np

    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired test needs both systems scored on the same records")
    ta = np.ones_like(a) if totals is None else np.asarray(totals, dtype=np.float64)
    tb = ta if totals_b is None else np.asarray(totals_b, dtype=np.float64)
    if ta.shape != a.shape or tb.shape != a.shape:
        raise ValueError("paired test needs one total per unit")
    nan = {"delta": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": float("nan")}
    if a.size == 0:
        return nan
    rng = np.random.default_rng(seed)
    if groups is None:
        index_sets = [np.arange(a.size)]
    else:
        g = np.asarray(groups)
        index_sets = [np.flatnonzero(g == k) for k in dict.fromkeys(groups)]
    diff = a - b

    def delta(ix: Any) -> float:
        if totals_b is None:  # shared denominators: the mean difference (the plain case: diff.mean())
            return diff[ix].sum() / ta[ix].sum()
        return a[ix].sum() / ta[ix].sum() - b[ix].sum() / tb[ix].sum()

    with np.errstate(invalid="ignore", divide="ignore"):
        observed = float(np.mean([delta(ix) for ix in index_sets]))
        if not np.isfinite(observed):
            return nan
        deltas = np.empty(samples)
        for s in range(samples):
            deltas[s] = np.mean([delta(ix[rng.integers(0, ix.size, ix.size)]) for ix in index_sets])
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        return {**nan, "delta": observed}
    if observed > 0:
        p = float(np.mean(deltas <= 0))
    elif observed < 0:
        p = float(np.mean(deltas >= 0))
    else:
        p = 1.0
    p = min(1.0, 2 * p) if observed != 0 else 1.0
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {"delta": observed, "ci95": [float(lo), float(hi)], "p_value": p}


def round_metric(x: float | None) -> float | None:
    """A metric as reports store it: 5 decimals, and None (never NaN) where it is undefined."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 5)
