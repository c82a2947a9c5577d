"""Logit matching: squared L2 distance between teacher and student logits.

    L_mse = (1/B) sum_i || z_teacher,i - z_student,i ||_2^2      (sum over classes, mean over batch)

This is the regression-on-logits distillation of Ba & Caruana 2014 ("Do Deep Nets Really Need to
be Deep?", eq. 1: (1/2T) sum_t ||g(x_t) - z_t||^2, here without the 1/2, a constant a term weight
absorbs). In the cross-lingual XD set-up the same multilingual model is the teacher on the English
text (a frozen copy, its logits stored by `xlt soft-label`) and the student on the translation,
so the student is pulled towards its own English behaviour. (Xu & Yang 2017, "Cross-lingual
Distillation for Text Classification", ACL, transfer soft probabilistic predictions over a
parallel corpus; for that probability-matching form use `kd`.)

Equal to C * torch.nn.functional.mse_loss(z_s, z_t) for C classes. Needs teacher *logits*:
logits are not shift-invariant, so they cannot be recovered from stored probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from xlt.distill.losses._checks import need, same_shape


class LogitMSELoss(nn.Module):
    """(1/B) sum_i ||z_t,i - z_s,i||^2 between teacher and student logits [B, C]."""

    name = "mse"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        z_t = need(teacher_logits, "teacher logits (stored probabilities are not enough for mse)", self.name)
        same_shape(student_logits, z_t, "student logits", "teacher logits", self.name)
        diff = student_logits.float() - z_t.detach().float()
        return diff.pow(2).sum(dim=-1).mean()
