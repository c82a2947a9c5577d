"""Distillation objectives, one loss per module (each docstring names its paper and equation).

    kd         KDLoss           T^2 KL(p_T || q_T)                  Hinton et al. 2015
    mse        LogitMSELoss     ||z_t - z_s||^2 on logits           Ba & Caruana 2014 / XD set-up
    hidden-kl  HiddenKLLoss     KL(softmax(h_t) || softmax(h_s))    BERT-KLD
    ce         CELoss           gold-label cross-entropy
    pseudo     PseudoLabelLoss  CE on confident teacher argmax      MONOX-PL

`CombinedObjective` sums them with `--objective` weights over a `DistillBatch`.
"""

from __future__ import annotations

from xlt.distill.losses.ce import CELoss
from xlt.distill.losses.combined import CombinedObjective, DistillBatch, ObjectiveResult
from xlt.distill.losses.hidden_kl import HiddenKLLoss
from xlt.distill.losses.kd import KDLoss
from xlt.distill.losses.mse import LogitMSELoss
from xlt.distill.losses.pseudo import PseudoLabelLoss, PseudoLabels

__all__ = ["CELoss", "CombinedObjective", "DistillBatch", "HiddenKLLoss", "KDLoss", "LogitMSELoss",
           "ObjectiveResult", "PseudoLabelLoss", "PseudoLabels"]
