"""An ensemble teacher: several classifiers read the same texts, their logits are averaged.

    z_ens(x) = (1/M) sum_m z_m(x)         (each member's logits in the first member's label order)

Averaging logits (not probabilities) keeps the ensemble's output a logit vector, so `mse` (XD)
and `kd` (softmax(z_ens / T)) read it like one teacher's. Used by `soft-label` and distill's
online teacher when `--teacher` is given more than once (KD from an ensemble of seeds). Members
must agree on the label names (any order) and on the task shape (all sequence classifiers or all
taggers); each runs on its own engine and tokenizer. Hidden vectors are refused: the members'
spaces are not one space, and their mean is no teacher's vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from xlt.errors import UsageError
from xlt.inference.types import Outputs, Texts


class Ensemble:
    """Classifier-shaped (what soft-label and distill read of a teacher) over `members` (loaded
    `Classifier`s, two or more)."""

    def __init__(self, members: Sequence[Any], *, option: str = "--teacher") -> None:
        if len(members) < 2:
            raise UsageError(f"an ensemble needs two or more {option} models, not {len(members)}")
        first = members[0]
        for m in members[1:]:
            if sorted(m.labels.names) != sorted(first.labels.names):
                raise UsageError(f"{option} {m.path} has the labels {m.labels.names} and {option} {first.path} "
                                 f"{first.labels.names}: an ensemble's members must share one label set")
            if bool(m.tagging) != bool(first.tagging):
                raise UsageError(f"{option} {m.path} and {option} {first.path}: one is a tagger and the other a "
                                 "sequence classifier; an ensemble's members must do the same task")
        self.members = list(members)
        self.path = "+".join(str(m.path) for m in members)
        self.labels = first.labels
        self.tagging = bool(first.tagging)
        self.fields = first.fields
        self.manifest = first.manifest  # the default student: the first member's base encoder
        self.resolved = first.resolved
        # a tagger ensemble: the reader checks word coverage with the first member's tokenizer at the
        # shortest member's length; a word another tokenizer loses still ends `covered` (predict)
        self.tokenizer = first.tokenizer
        self.max_length = min((int(m.max_length) for m in members if m.max_length), default=None)
        self._orders = [[m.labels.names.index(n) for n in first.labels.names] for m in members]

    @property
    def digest(self) -> str:
        """`ensemble:` + a hash of the members' digests (order-free: the mean is)."""
        joined = "\n".join(sorted(str(m.digest) for m in self.members))
        return "ensemble:" + hashlib.sha256(joined.encode()).hexdigest()[:16]

    @property
    def engine_name(self) -> str:
        return "+".join(m.engine_name for m in self.members)

    def engine_note(self) -> str | None:
        notes = [n for n in (m.engine_note() for m in self.members) if n]
        return "; ".join(notes) or None

    @property
    def source_langs(self) -> list[str]:
        return list(dict.fromkeys(lang for m in self.members for lang in m.source_langs))

    def predict(self, texts: Texts, *, hidden: bool = False) -> Any:
        """The mean of the members' logits (per word for taggers; a word counts as covered only
        when every member sees it)."""
        if hidden:
            raise UsageError("hidden vectors from an ensemble of teachers: the members' vector spaces differ, so "
                             "there is no ensemble vector (use one --teacher for --hidden / hidden-kl)")
        outs = [m.predict(texts) for m in self.members]
        if not self.tagging:
            logits = sum(o.logits[:, order] for o, order in zip(outs, self._orders)) / len(outs)
            return Outputs(logits)
        from xlt.tagging.model import WordOutputs

        n = len(texts)
        logits = [sum(o.logits[i][:, order] for o, order in zip(outs, self._orders)) / len(outs) for i in range(n)]
        covered = [outs[0].covered[i].copy() for i in range(n)]
        for o in outs[1:]:
            for i in range(n):
                covered[i] &= o.covered[i]
        for i in range(n):
            logits[i][~covered[i]] = 0.0
        return WordOutputs(logits, covered)


def teacher_paths(teacher: str | Sequence[str] | None) -> list[str]:
    """`--teacher` as a list: one path (a string is one path, never its characters) or several."""
    return [teacher] if isinstance(teacher, str) else list(teacher or [])


def load_teacher(paths: str | Sequence[str], *, option: str = "--teacher", **run: Any) -> Any:
    """One `Classifier` for one path, an `Ensemble` of them for several (`run`: Classifier's
    keyword options, shared by every member)."""
    from xlt.inference.classifier import Classifier

    paths = teacher_paths(paths)
    if not paths:
        raise UsageError(f"{option} is required")
    members = [Classifier(p, option=option, **run) for p in paths]
    return members[0] if len(members) == 1 else Ensemble(members, option=option)
