"""Cross-entropy on gold labels.

    L_ce = -(1/|L|) sum_{i in L} log softmax(z_student,i)_{y_i},   L = {i : y_i != -100}

The standard supervised term; joined with soft-label terms it gives Hinton et al. 2015's weighted
average of soft and hard objectives, and with `hidden-kl` the BERT-KLD JointLoss. Examples without
a gold label carry -100 and are left out; a batch with none gives 0 (not NaN).
"""

from __future__ import annotations

import torch
from torch import nn

from xlt.distill.losses._checks import need
from xlt.errors import UsageError

IGNORE = -100


class CELoss(nn.Module):
    """Mean cross-entropy over the examples whose label is not -100 (0 when there are none)."""

    name = "ce"

    def forward(self, student_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        y = need(labels, "gold labels", self.name)
        if y.shape != student_logits.shape[:1]:
            raise UsageError(f"objective term 'ce': labels {tuple(y.shape)} do not match logits {tuple(student_logits.shape)}")
        has = y != IGNORE
        n_classes = student_logits.shape[-1]
        if bool(((y[has] < 0) | (y[has] >= n_classes)).any()):
            raise UsageError(f"objective term 'ce': a label id is outside 0..{n_classes - 1} (and is not -100)")
        per = nn.functional.cross_entropy(student_logits.float(), y.masked_fill(~has, 0), reduction="none")
        return (per * has).sum() / has.sum().clamp(min=1)
