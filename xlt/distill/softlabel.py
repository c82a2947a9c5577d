"""`soft-label`: attach a teacher's logits and probabilities (and [CLS] hidden vectors) to records.

1:1 and streaming: records are read in chunks, each chunk run through the teacher batched and
length-sorted, and written in input order. The teacher reads each record's `src` view when
present (the teacher's language), else the record itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

from xlt.errors import InputError, RecordError, UsageError, XltError
from xlt.records import Record, finite_numbers, infer_fields, view

VIEWS = ("auto", "src", "self")


class ViewCheck:
    """`validate` for the reader: the view the teacher reads (`src` or the record) has the text
    fields, so `--on-error skip` skips records without it like any other bad input. The fields
    are `fields`, else the teacher's, else inferred from the first good record."""

    def __init__(self, which: str, fields: tuple[str, ...] | None) -> None:
        if which not in VIEWS:
            raise UsageError(f"--view must be one of {', '.join(VIEWS)}, not {which!r}")
        self.which = which
        self.fields = fields

    def __call__(self, rec: Record) -> None:
        fields = self.fields or infer_fields(rec)  # the views share the record's text fields
        view(rec, fields, self.which)
        self.fields = fields


def teacher_base(teacher: Any) -> str | None:
    """The encoder a teacher was trained from (its manifest's base model or student), as a name
    `--student` accepts: the default student of `distill` for records this teacher labelled."""
    manifest = getattr(teacher, "manifest", None) or {}
    for resolved_key, name_key in (("base_model_resolved", "base_model"), ("student_resolved", "student")):
        name = manifest.get(name_key)
        if name:
            resolved = manifest.get(resolved_key)
            # a built-in or hub name travels as it is; a local directory by its absolute path
            return str(resolved) if resolved and os.path.isdir(str(resolved)) and os.path.isabs(str(resolved)) else str(name)
    path = getattr(teacher, "resolved", None)
    if path and not manifest:  # a plain Hugging Face classifier: its own encoder
        return os.path.abspath(path) if os.path.isdir(path) else str(path)
    return None


def soft_label(
    located: Iterable[tuple[str, Record]],
    teacher: Any,
    *,
    which: str = "auto",
    fields: tuple[str, ...] | None = None,
    temperature: float = 1.0,
    hidden: bool = False,
    chunk: int = 1024,
    digits: int = 6,
    check: ViewCheck | None = None,
) -> Iterator[Record]:
    """Yield each record with a `teacher` key: logits, probs (softmax at `temperature`), the label
    names in column order, the temperature, the teacher's digest, its base encoder (`base`, the
    default student of `distill`), and optionally `hidden`.

    A teacher output that is not finite stops the stage (XltError naming the record): a NaN
    soft label is never written."""
    import numpy as np

    from xlt.inference.types import softmax

    check = check or ViewCheck(which, fields or teacher.fields)  # the reader's own, when it validated with one
    if not math.isfinite(temperature) or temperature <= 0:
        raise UsageError(f"--temperature must be a finite number > 0, not {temperature}")
    labels = teacher.labels.values
    digest = teacher.digest
    base = teacher_base(teacher)
    buf: list[tuple[str, Record]] = []
    texts: list[tuple[str, ...]] = []

    def flush() -> Iterator[Record]:
        out = teacher.predict(texts, hidden=hidden)
        probs = softmax(out.logits, temperature)
        finite = np.isfinite(probs).all(axis=-1) & np.isfinite(out.logits).all(axis=-1)
        if hidden:
            finite &= np.isfinite(out.hidden).all(axis=-1)
        if not finite.all():
            where = buf[int(np.argmin(finite))][0]
            raise XltError(f"the teacher {getattr(teacher, 'path', '')} produced non-finite outputs for {where} "
                           f"(at --temperature {temperature:g}); nothing was written")
        for i, (_, rec) in enumerate(buf):
            t: dict[str, Any] = {
                "logits": [round(float(x), digits) for x in out.logits[i]],
                "probs": [round(float(x), digits) for x in probs[i]],
                "labels": labels, "temperature": temperature, "model": digest,
            }
            if base is not None:
                t["base"] = base
            if hidden:
                t["hidden"] = [round(float(x), digits) for x in out.hidden[i]]
            rec = dict(rec)
            rec["teacher"] = t
            yield rec
        buf.clear()
        texts.clear()

    for where, rec in located:
        try:
            check(rec)  # a no-op for records the reader already validated with it
        except RecordError as exc:
            raise InputError(f"{where}: {exc}") from None
        assert check.fields is not None
        v = view(rec, check.fields, which)
        buf.append((where, rec))
        texts.append(tuple(v[f] for f in check.fields))
        if len(buf) >= chunk:
            yield from flush()
    if buf:
        yield from flush()


class TeacherCheck:
    """`check` for records carrying soft labels (`teacher`, written by `xlt soft-label`).

    Every record must have the teacher outputs the first one has (logits, else probabilities;
    the hidden vector when `need_hidden`), one value per label of the label set, each a finite
    number (probabilities in [0, 1] with a positive sum), and the same label names (in any
    order). The label set is `labels` (`--labels`), else the first record's. A record that breaks
    this is bad input: FILE:LINE and the field, or skipped with `--on-error skip`.
    """

    def __init__(self, labels: Any = None, *, need_hidden: bool = False) -> None:
        self.names: list[str] | None = list(labels.names) if labels is not None else None
        self.values: list[Any] | None = list(labels.values) if labels is not None else None
        self.need_hidden = need_hidden
        self.kind: str | None = None  # "logits" or "probs": fixed by the first good record
        self.hidden_size: int | None = None
        self.base: str | None = None
        self.model: str | None = None

    def __call__(self, rec: Record) -> None:
        from xlt.train.data import label_key

        t = rec.get("teacher")
        if not isinstance(t, dict):
            raise RecordError('missing field "teacher" (soft labels: pipe the records through xlt soft-label, '
                              'or pass --teacher CKPT)' if t is None else 'field "teacher" must be an object')
        raw_labels = t.get("labels")
        if not isinstance(raw_labels, list) or len(raw_labels) < 2:
            raise RecordError('field "teacher.labels" must list the label names (two or more)')
        names = [label_key(v) for v in raw_labels]
        if len(set(names)) != len(names):
            raise RecordError(f'field "teacher.labels" names a label twice: {names}')
        if self.names is not None and sorted(names) != sorted(self.names):
            raise RecordError(f'field "teacher.labels" {names} differ from the label set {self.names}')
        kind = self.kind
        if kind is None:
            kind = "logits" if "logits" in t else "probs" if "probs" in t else None
            if kind is None:
                raise RecordError('field "teacher" has neither "logits" nor "probs"')
        if kind not in t:
            raise RecordError(f'missing field "teacher.{kind}" (the earlier records carry {kind}; every record must)')
        values = finite_numbers(t[kind], f"teacher.{kind}", length=len(names))
        if kind == "probs":
            if any(v < 0 or v > 1 for v in values) or sum(values) <= 0:
                raise RecordError('field "teacher.probs" must be probabilities in [0, 1] with a positive sum')
        hidden_size = self.hidden_size
        if self.need_hidden:
            if "hidden" not in t:
                raise RecordError('missing field "teacher.hidden" (objective hidden-kl: soft-label with --hidden, '
                                  'or pass --teacher CKPT)')
            hidden_size = len(finite_numbers(t["hidden"], "teacher.hidden", length=hidden_size))
            if hidden_size == 0:
                raise RecordError('field "teacher.hidden" is empty')
        # the record is good: it fixes what the next ones must match
        if self.names is None:
            self.names, self.values = names, list(raw_labels)
        self.kind, self.hidden_size = kind, hidden_size
        if self.model is None and isinstance(t.get("model"), str):
            self.model = t["model"]
        if self.base is None and isinstance(t.get("base"), str) and t["base"].strip():
            self.base = t["base"]
