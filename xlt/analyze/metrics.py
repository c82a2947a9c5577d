"""Alignment and teacher-student distances of representations (numpy; the KL term reuses the
hidden-kl loss itself).

For one target language with target vectors t_1..t_Nt (every record of the language) and source
vectors s_1..s_Ns (every record of the source language), g(i) the index of t_i's parallel source
record (none for a record without one), P = {i : g(i) exists}, cos(a, b) = a.b / (|a| |b|):

- cosine          (1/|P|) sum_{i in P} cos(t_i, s_g(i))
- cosine_random   the mean of cos(t_i, s_j) over every mismatched pair (i, j), j != g(i)
- cosine_gap      cosine - cosine_random: how much closer translations are than unrelated texts
- p_at_1 tgt->src bitext retrieval as in XTREME's BUCC/Tatoeba (Hu et al. 2020): the share of
                  i in P whose nearest source by cosine is s_g(i); src->tgt the same from each
                  source s_j with a parallel record to the targets, finding any i with g(i) = j.
                  A tie for the top (|score - max| <= 1e-6) counts |T ∩ gold| / |T| for the tied
                  set T: the expected P@1 when ties are broken at random, so a model that maps
                  everything to one vector scores chance, not 1.

Teacher-student distances (BERT-KLD, section 5.4): for pairs (h_t teacher on the source view,
h_s student on the target view)
- kl  (1/n) sum_i KL(softmax(h_t,i) || softmax(h_s,i)), computed by `HiddenKLLoss`
      (xlt.distill.losses.hidden_kl), the term `xlt distill --objective hidden-kl` trains
- l2  (1/n) sum_i ||h_t,i - h_s,i||_2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Scores within this of the best count as a tie for the top (cosines are in [-1, 1]).
TIE_TOL = 1e-6


def unit_rows(x: Any) -> np.ndarray:
    """Rows scaled to unit length (float64); an all-zero row stays zero (cosine 0 with anything)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def paired_cosine(a: Any, b: Any) -> np.ndarray:
    """cos(a_i, b_i) for every row i of two [n, H] arrays."""
    return (unit_rows(a) * unit_rows(b)).sum(axis=-1)


def _top(sims: np.ndarray) -> np.ndarray:
    """Per row, the candidates tied for the best score (a boolean matrix)."""
    return sims >= sims.max(axis=1, keepdims=True) - TIE_TOL


def alignment(tgt: Any, src: Any, gold: Sequence[int], *, block: int = 1024) -> dict[str, Any]:
    """Cosine of parallel pairs, of mismatched pairs, their gap, and P@1 in both directions (see
    the module docstring). `gold[i]`: the row of `src` parallel to row i of `tgt`, or -1.

    Values are None where undefined (no parallel pair, no mismatched pair)."""
    t, s = unit_rows(tgt), unit_rows(src)
    g = np.asarray(gold, dtype=np.int64).reshape(-1)
    if t.shape[0] != g.shape[0]:
        raise ValueError(f"gold has {g.shape[0]} entries for {t.shape[0]} target rows")
    paired = np.flatnonzero(g >= 0)
    out: dict[str, Any] = {"n": int(paired.size), "targets": int(t.shape[0]), "sources": int(s.shape[0]),
                           "cosine": None, "cosine_random": None, "cosine_gap": None,
                           "p_at_1_tgt_to_src": None, "p_at_1_src_to_tgt": None, "queries_src_to_tgt": 0}
    if paired.size == 0 or s.shape[0] == 0:
        return out
    total, hits = 0.0, 0.0
    for start in range(0, t.shape[0], block):  # blocks keep the similarity matrix small
        sims = t[start:start + block] @ s.T
        total += float(sims.sum())
        rows = np.flatnonzero(g[start:start + block] >= 0)
        top = _top(sims[rows])
        hits += float((top[np.arange(rows.size), g[start + rows]] / top.sum(axis=1)).sum())
    par = float(paired_cosine(t[paired], s[g[paired]]).sum())
    out["cosine"] = par / paired.size
    out["p_at_1_tgt_to_src"] = hits / paired.size
    mismatched = t.shape[0] * s.shape[0] - paired.size
    if mismatched > 0:
        out["cosine_random"] = (total - par) / mismatched
        out["cosine_gap"] = out["cosine"] - out["cosine_random"]
    queries = np.unique(g[paired])
    hits = 0.0
    for start in range(0, queries.size, block):
        rows = queries[start:start + block]
        top = _top(s[rows] @ t.T)
        hits += float(((top & (g[None, :] == rows[:, None])).sum(axis=1) / top.sum(axis=1)).sum())
    out["p_at_1_src_to_tgt"] = hits / queries.size
    out["queries_src_to_tgt"] = int(queries.size)
    return out


def hidden_kl(teacher: Any, student: Any) -> float:
    """Mean over rows of KL(softmax(teacher_i) || softmax(student_i)): `HiddenKLLoss`, the hidden-kl
    distillation term (BERT-KLD), evaluated on [n, H] arrays."""
    import torch

    from xlt.distill.losses.hidden_kl import HiddenKLLoss

    h_t = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))
    h_s = torch.from_numpy(np.ascontiguousarray(student, dtype=np.float32))
    with torch.no_grad():
        return float(HiddenKLLoss()(h_s, h_t))


def l2_distance(teacher: Any, student: Any) -> float:
    """Mean over rows of the Euclidean distance ||teacher_i - student_i||_2."""
    diff = np.asarray(teacher, dtype=np.float64) - np.asarray(student, dtype=np.float64)
    return float(np.linalg.norm(diff, axis=-1).mean())


def distances(teacher: Any, student: Any) -> dict[str, Any]:
    """`kl` and `l2` between teacher and student vectors of the same n examples (None when n = 0)."""
    n = int(np.asarray(teacher).shape[0])
    if n == 0:
        return {"n": 0, "kl": None, "l2": None}
    return {"n": n, "kl": hidden_kl(teacher, student), "l2": l2_distance(teacher, student)}


def agreement(a: Any, b: Any) -> float | None:
    """The share of rows where two [n, C] logit arrays have the same argmax (None when n = 0)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] == 0:
        return None
    return float((a.argmax(axis=-1) == b.argmax(axis=-1)).mean())
