"""The weighted sum of objective terms that `xlt distill` minimizes, and its input contract.

    L = sum_k w_k * L_k,   k in {kd, mse, hidden-kl, ce, pseudo}

with weights from `--objective` (e.g. "kd=1,ce=0.5"; BERT-KLD's JointLoss = CE + lambda * KL is
"ce=1,hidden-kl=0.1"). Each L_k is documented in its own module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from xlt.distill.losses.ce import CELoss
from xlt.distill.losses.hidden_kl import HiddenKLLoss
from xlt.distill.losses.kd import KDLoss
from xlt.distill.losses.mse import LogitMSELoss
from xlt.distill.losses.pseudo import PseudoLabelLoss, PseudoLabels
from xlt.distill.spec import OBJECTIVES, check_weights, format_weights, parse_weights
from xlt.errors import UsageError


@dataclass
class DistillBatch:
    """What the objective reads for one batch (B examples, C classes, H hidden size).

    student_logits  [B, C]  the student's logits (with grad)
    labels          [B]     gold class ids, -100 where an example has none
    teacher_logits  [B, C]  the teacher's logits (stored by `xlt soft-label` or computed live)
    teacher_probs   [B, C]  the teacher's probabilities, when only those were stored
    student_hidden  [B, H]  the student's pooled sentence vector (`XltSmall...` output `.hidden`)
    teacher_hidden  [B, H]  the teacher's final [CLS] vector
    Teacher tensors are treated as constants (detached). For taggers (`xlt.distill.run`) a row is
    a word, not an example: B is the batch's covered words, flattened.
    """

    student_logits: torch.Tensor
    labels: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    teacher_probs: torch.Tensor | None = None
    student_hidden: torch.Tensor | None = None
    teacher_hidden: torch.Tensor | None = None

    def available(self) -> set[str]:
        """The input names this batch carries ("teacher" when either teacher tensor is there)."""
        have = {f.name for f in fields(self) if getattr(self, f.name) is not None}
        if have & {"teacher_logits", "teacher_probs"}:
            have.add("teacher")
        return have


@dataclass
class ObjectiveResult:
    """`loss` to backpropagate; `terms`: each term's unweighted value, detached, for logging
    (plus "pseudo_kept", the kept fraction, with a pseudo term); `pseudo`: the pseudo-labels and
    keep mask for `PseudoLabelReport` (None without a pseudo term)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    pseudo: PseudoLabels | None = None


class CombinedObjective(nn.Module):
    """Weighted sum of the named terms. `weights`: {"kd": 1.0, "ce": 0.5} or the spec "kd=1,ce=0.5".

    `temperature` (and `t2_scale`) configure `kd`; `min_confidence` and `balance` configure
    `pseudo`; `hidden-kl`'s lambda is its weight. Call with a `DistillBatch` or its fields as
    keyword arguments. A term whose inputs are missing raises UsageError; `check_inputs` raises
    the same error before training starts.
    """

    def __init__(self, weights: Mapping[str, float] | str, *, temperature: float = 1.0, t2_scale: bool = True,
                 min_confidence: float = 0.0, balance: bool = False) -> None:
        super().__init__()
        self.weights: dict[str, float] = (parse_weights(weights) if isinstance(weights, str)
                                          else check_weights(dict(weights)))
        self.temperature, self.t2_scale = temperature, t2_scale
        self.min_confidence, self.balance = min_confidence, balance
        self.kd = KDLoss(temperature, t2_scale=t2_scale)
        self.mse = LogitMSELoss()
        self.hidden_kl = HiddenKLLoss()
        self.ce = CELoss()
        self.pseudo = PseudoLabelLoss(min_confidence, balance=balance)

    @property
    def needs(self) -> set[str]:
        """Input names the chosen terms read (see `xlt.distill.spec.OBJECTIVES`)."""
        return {n for name in self.weights for n in OBJECTIVES[name].needs}

    def check_inputs(self, available: Iterable[str]) -> None:
        """Raise UsageError naming the first term that `available` inputs cannot feed."""
        have = set(available)
        if have & {"teacher_logits", "teacher_probs"}:
            have.add("teacher")
        for name in self.weights:
            missing = [n for n in OBJECTIVES[name].needs if n not in have]
            if missing:
                raise UsageError(f"objective term {name!r} needs {', '.join(missing)}, which the input does not provide")

    def describe(self) -> dict[str, Any]:
        """Resolved settings for the checkpoint manifest."""
        return {"objective": format_weights(self.weights), "temperature": self.temperature, "t2_scale": self.t2_scale,
                "min_confidence": self.min_confidence, "balance": self.balance}

    def forward(self, batch: DistillBatch | None = None, **inputs: Any) -> ObjectiveResult:
        if batch is None:
            batch = DistillBatch(**inputs)
        elif inputs:
            raise TypeError("pass either a DistillBatch or keyword inputs, not both")
        self.check_inputs(batch.available())
        total: torch.Tensor | None = None
        terms: dict[str, torch.Tensor] = {}
        pseudo: PseudoLabels | None = None
        for name, weight in self.weights.items():
            with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):
                if name == "pseudo":
                    pseudo = self.pseudo(batch.student_logits, batch.teacher_logits, batch.teacher_probs)
                    value = pseudo.loss
                    terms["pseudo_kept"] = pseudo.keep.float().mean().detach()
                else:
                    value = self._term(name, batch)
            terms[name] = value.detach()
            if weight > 0:
                total = weight * value if total is None else total + weight * value
        assert total is not None  # parse_weights guarantees a positive weight
        return ObjectiveResult(total, terms, pseudo)

    def _term(self, name: str, b: DistillBatch) -> torch.Tensor:
        if name == "kd":
            return self.kd(b.student_logits, b.teacher_logits, b.teacher_probs)
        if name == "mse":
            return self.mse(b.student_logits, b.teacher_logits)
        if name == "hidden-kl":
            return self.hidden_kl(b.student_hidden, b.teacher_hidden)
        if name == "ce":
            return self.ce(b.student_logits, b.labels)
        raise AssertionError(name)
