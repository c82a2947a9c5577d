"""Pseudo-labelling: the teacher's argmax as a hard label, kept only where the teacher is confident.

MONOX-PL (monolingual teacher -> multilingual student, pseudo-label variant): for each unlabelled
target-language example the teacher's most probable class is the label, kept when the teacher's
probability for it reaches a minimum confidence tau (tau = 0 keeps every example):
    y~_i = argmax_c p_ic,  K = {i : max_c p_ic >= tau},
    L_pl = -(1/|K|) sum_{i in K} log softmax(z_student,i)_{y~_i}      (0 when K is empty, not NaN)
with p the teacher's distribution at temperature 1 (from logits, or the stored probabilities).

Class balancing (`balance=True`): a confident teacher often over-predicts one class, and the kept
set inherits that skew. Each kept example is weighted by the inverse frequency of its pseudo-class
among the batch's kept examples, w_i = 1 / n_{y~_i}, and L = sum_K w_i l_i / sum_K w_i: every class
present in the batch contributes equally (the mean of the per-class mean losses). It is
per-batch (stateless, so a resumed run computes the same loss) rather than resampling the data.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from xlt.distill.losses._checks import teacher_log_probs
from xlt.errors import UsageError


class PseudoLabels(NamedTuple):
    """The loss over kept examples, and per example: kept?, pseudo-label, teacher confidence."""

    loss: torch.Tensor
    keep: torch.Tensor        # [B] bool
    labels: torch.Tensor      # [B] long, the teacher's argmax (also for dropped rows)
    confidence: torch.Tensor  # [B] float, the teacher's probability of that class


class PseudoLabelLoss(nn.Module):
    """Cross-entropy against the teacher's argmax where its probability is >= `min_confidence`.

    `forward(...)` returns `PseudoLabels(loss, keep, labels, confidence)`; `loss, keep, *_ = ...`.
    """

    name = "pseudo"

    def __init__(self, min_confidence: float = 0.0, *, balance: bool = False) -> None:
        super().__init__()
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"--min-confidence must be in [0, 1], got {min_confidence}")
        self.min_confidence = float(min_confidence)
        self.balance = balance

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                teacher_probs: torch.Tensor | None = None) -> PseudoLabels:
        log_p = teacher_log_probs(teacher_logits, teacher_probs, 1.0, student_logits, self.name)
        log_conf, labels = log_p.max(dim=-1)
        confidence = log_conf.exp()
        keep = confidence >= self.min_confidence
        per = nn.functional.cross_entropy(student_logits.float(), labels, reduction="none")
        w = keep.float()
        if self.balance:
            counts = torch.bincount(labels[keep], minlength=student_logits.shape[-1]).float()
            w = w / counts[labels].clamp(min=1)
        # sum(w) >= 1 whenever something is kept (one per present class when balanced); 0/1 otherwise.
        loss = (per * w).sum() / w.sum().clamp(min=1)
        return PseudoLabels(loss, keep, labels, confidence)
