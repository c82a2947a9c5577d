"""Input checks shared by the loss modules: one clear error instead of a broadcasting surprise."""

from __future__ import annotations

import torch

from xlt.errors import UsageError


def need(value: torch.Tensor | None, what: str, term: str) -> torch.Tensor:
    if value is None:
        raise UsageError(f"objective term {term!r} needs {what}, and this batch has none")
    return value


def same_shape(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str, term: str) -> None:
    if a.ndim != 2:
        raise UsageError(f"objective term {term!r}: {a_name} must be [batch, dim], got shape {tuple(a.shape)}")
    if a.shape != b.shape:
        raise UsageError(f"objective term {term!r}: {a_name} {tuple(a.shape)} and {b_name} {tuple(b.shape)} differ in shape")


def teacher_log_probs(teacher_logits: torch.Tensor | None, teacher_probs: torch.Tensor | None,
                      temperature: float, like: torch.Tensor, term: str) -> torch.Tensor:
    """log p_T, the teacher's class distribution at temperature T, from logits or stored probabilities.

    From logits z: log softmax(z / T). From probabilities p (soft labels stored without logits):
    p_T ∝ p^(1/T), i.e. log softmax(log(p) / T), which equals the logits route because
    log p = z - logsumexp(z) differs from z by a per-row constant. Rows are renormalized, so
    rounded stored probabilities are fine; zeros stay zeros.
    """
    if teacher_logits is not None:
        same_shape(like, teacher_logits, "student logits", "teacher logits", term)
        return torch.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    probs = need(teacher_probs, "teacher logits or teacher probabilities", term).detach().float()
    same_shape(like, probs, "student logits", "teacher probs", term)
    if bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()):
        raise UsageError(f"objective term {term!r}: teacher probabilities must be finite and >= 0")
    if bool((probs.sum(dim=-1) <= 0).any()):
        raise UsageError(f"objective term {term!r}: a row of teacher probabilities sums to 0")
    return torch.log_softmax(torch.log(probs) / temperature, dim=-1)
