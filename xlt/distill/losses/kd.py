"""Soft-label knowledge distillation: KL(p_T || q_T) * T^2.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", section 2: the student
matches the teacher's class distribution softened by temperature T,
    p_T = softmax(z_teacher / T),  q_T = softmax(z_student / T),
    L_kd = T^2 * (1/B) sum_i KL(p_T,i || q_T,i) = T^2 * (1/B) sum_i sum_c p_T,ic (log p_T,ic - log q_T,ic).
The T^2 factor keeps the gradient scale comparable across temperatures (the gradient of the KL
w.r.t. the student logits scales as 1/T^2 for large T).

Used by FreeTransfer-X (Guo et al. 2022, NAACL Findings) in both steps of its two-step KD
framework, and by MONOX-KD (monolingual teacher -> multilingual student) with T = 0.1. MONOX writes
the objective as cross-entropy against the teacher's soft labels, CE(p_T, q_T) = KL(p_T || q_T) + H(p_T);
H(p_T) does not depend on the student, so both have the same gradient. This module reports the KL
(0 when the student equals the teacher), not the CE.
"""

from __future__ import annotations

import torch
from torch import nn

from xlt.distill.losses._checks import teacher_log_probs
from xlt.errors import UsageError


class KDLoss(nn.Module):
    """`T^2 * KL(teacher_T || student_T)`, mean over the batch (see the module docstring).

    `temperature`: T > 0. `t2_scale`: multiply by T^2 (Hinton et al.); False gives the plain KL,
    e.g. for T < 1 where T^2 would shrink the term (T = 0.1 -> x0.01).
    Teacher input: `teacher_logits` [B, C], or `teacher_probs` [B, C] when only probabilities
    were stored (p_T ∝ p^(1/T)).
    """

    name = "kd"

    def __init__(self, temperature: float = 1.0, *, t2_scale: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise UsageError(f"--temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.t2_scale = t2_scale

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                teacher_probs: torch.Tensor | None = None) -> torch.Tensor:
        t = self.temperature
        log_p = teacher_log_probs(teacher_logits, teacher_probs, t, student_logits, self.name)
        log_q = torch.log_softmax(student_logits.float() / t, dim=-1)
        p = log_p.exp()
        # xlogy: p log p is 0 where p = 0 (a stored probability of exactly 0), not NaN.
        kl = (torch.xlogy(p, p) - p * log_q).sum(dim=-1).mean()
        return kl * (t * t) if self.t2_scale else kl
