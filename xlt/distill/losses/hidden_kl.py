"""KL divergence between the softmax-normalized pooled hidden vectors of teacher and student.

BERT-KLD for cross-lingual textual entailment: the teacher reads an example in language pair X-Y,
the student the same example in pair A-B, and the student is trained with
    JointLoss = CE(y, student) + lambda * KL(softmax(h_teacher) || softmax(h_student)),
where h is the final [CLS] hidden vector (for the small students: their pooled sentence vector)
and lambda in 0.01-0.5. This module is the KL part,
    L_hkl = (1/B) sum_i sum_d softmax(h_t,i)_d (log softmax(h_t,i)_d - log softmax(h_s,i)_d);
`CombinedObjective` adds CE and scales this term by its weight (lambda).

Teacher and student vectors must have the same size: a small student gets a projection to the
teacher's size with `XltSmallConfig(pooled_size=...)`.

For taggers `xlt distill` applies this same KL word by word: h is each word's last-layer vector at
its first subword (teacher and student), and the mean runs over the batch's words. That is xlt's
word-level analogue (FreeTransfer-X reads every model at the first subword of each word), not
part of BERT-KLD.
"""

from __future__ import annotations

import torch
from torch import nn

from xlt.distill.losses._checks import need, same_shape
from xlt.errors import UsageError


class HiddenKLLoss(nn.Module):
    """KL(softmax(teacher_hidden) || softmax(student_hidden)) on [B, H] vectors, mean over the batch."""

    name = "hidden-kl"

    def forward(self, student_hidden: torch.Tensor | None, teacher_hidden: torch.Tensor | None) -> torch.Tensor:
        h_s = need(student_hidden, "the student's pooled hidden vector (student_hidden)", self.name)
        h_t = need(teacher_hidden, "the teacher's [CLS] hidden vector (teacher_hidden)", self.name)
        if h_s.ndim == 2 and h_t.ndim == 2 and h_s.shape[0] == h_t.shape[0] and h_s.shape[1] != h_t.shape[1]:
            raise UsageError(f"objective term 'hidden-kl': the student's hidden size {h_s.shape[1]} differs from "
                             f"the teacher's {h_t.shape[1]}; build the student with pooled_size={h_t.shape[1]}")
        same_shape(h_s, h_t, "student hidden", "teacher hidden", self.name)
        log_p = torch.log_softmax(h_t.detach().float(), dim=-1)
        log_q = torch.log_softmax(h_s.float(), dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()

