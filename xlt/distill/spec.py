"""Names of the distillation objective terms, what each needs, and the `--objective` weight spec.

Torch-free, so the CLI can validate `--objective kd=1,ce=0.5` before loading any model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xlt.errors import UsageError


@dataclass(frozen=True)
class Term:
    """One objective term: its name, the batch inputs it reads and the paper it follows."""

    name: str
    needs: tuple[str, ...]
    summary: str


#: Batch inputs, spelled as the fields of `xlt.distill.losses.DistillBatch`. "teacher" means
#: teacher_logits or teacher_probs (either will do).
OBJECTIVES: dict[str, Term] = {t.name: t for t in (
    Term("kd", ("teacher",), "KL(teacher_T || student_T) * T^2 on class distributions (Hinton et al. 2015)"),
    Term("mse", ("teacher_logits",), "squared L2 distance between teacher and student logits (logit matching)"),
    Term("hidden-kl", ("student_hidden", "teacher_hidden"),
         "KL(softmax(h_teacher) || softmax(h_student)) on pooled sentence vectors (BERT-KLD)"),
    Term("ce", ("labels",), "cross-entropy on gold labels (-100 = no label)"),
    Term("pseudo", ("teacher",), "cross-entropy on the teacher's argmax above --min-confidence (MONOX-PL)"),
)}

#: `--student-arch` choices of `xlt.distill.students`.
STUDENT_ARCHS: tuple[str, ...] = ("transformer", "bilstm", "cnn")


def parse_weights(spec: str) -> dict[str, float]:
    """Parse an objective spec like "kd=1,ce=0.5" (a bare name means weight 1) into {name: weight}.

    Weights are finite and >= 0 (a 0-weight term is still computed and logged, e.g. "kd=1,ce=0"
    to watch gold-label loss without training on it); at least one weight must be positive.
    Raises UsageError on unknown names, repeated names and bad weights.
    """
    weights: dict[str, float] = {}
    parts = [p.strip() for p in (spec or "").split(",")]
    if not any(parts):
        raise UsageError(f"--objective: empty; give terms like kd=1,ce=0.5 (terms: {', '.join(OBJECTIVES)})")
    for part in parts:
        if not part:
            raise UsageError(f"--objective {spec!r}: empty term between commas")
        name, eq, value = part.partition("=")
        name = name.strip()
        if name not in OBJECTIVES:
            raise UsageError(f"--objective: unknown term {name!r}; choose from {', '.join(OBJECTIVES)}")
        if name in weights:
            raise UsageError(f"--objective: term {name!r} given twice")
        if not eq:
            weight = 1.0
        else:
            try:
                weight = float(value)
            except ValueError:
                raise UsageError(f"--objective: weight of {name!r} is not a number: {value.strip()!r}") from None
            if not math.isfinite(weight) or weight < 0:
                raise UsageError(f"--objective: weight of {name!r} must be a finite number >= 0, got {value.strip()}")
        weights[name] = weight
    return check_weights(weights)


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Validate a {term: weight} mapping (the same rules as `parse_weights`); returns a copy."""
    if not weights:
        raise UsageError(f"--objective: no terms; give terms like kd=1,ce=0.5 (terms: {', '.join(OBJECTIVES)})")
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in OBJECTIVES:
            raise UsageError(f"--objective: unknown term {name!r}; choose from {', '.join(OBJECTIVES)}")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise UsageError(f"--objective: weight of {name!r} is not a number: {weight!r}") from None
        if not math.isfinite(w) or w < 0:
            raise UsageError(f"--objective: weight of {name!r} must be a finite number >= 0, got {weight}")
        out[name] = w
    if not any(w > 0 for w in out.values()):
        raise UsageError(f"--objective {format_weights(out)}: at least one weight must be positive")
    return out


def format_weights(weights: dict[str, float]) -> str:
    """The canonical spec string of `weights` (for manifests and log lines): "kd=1,ce=0.5"."""
    return ",".join(f"{k}={v:g}" for k, v in weights.items())
