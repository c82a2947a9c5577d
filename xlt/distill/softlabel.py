"""`soft-label`: attach a teacher's logits and probabilities (and [CLS] hidden vectors) to records.

1:1 and streaming: records are read in chunks, each chunk run through the teacher batched and
length-sorted, and written in input order. The teacher reads each record's `src` view when
present (the teacher's language), else the record itself.

Tagging records (`tokens`) get a tagger's outputs per word (FreeTransfer-X word-level KD): one
row of logits / probabilities (/ hidden vector) per word, each read at the word's first subword,
so they are independent of any tokenizer and a student with its own vocabulary learns from them
word by word. The rows are aligned to the words the teacher read, so a `src` view must have as
many words as the record, and the teacher must see every word (none past its max length).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

from xlt.errors import InputError, RecordError, UsageError, XltError
from xlt.records import Record, check_words, finite_numbers, infer_fields, is_tagging, view

VIEWS = ("auto", "src", "self")


def _is_tagger(teacher: Any) -> bool:
    return bool(getattr(teacher, "tagging", False))


def _teacher_kind(teacher: Any) -> str:
    return "a tagger (one output per word)" if _is_tagger(teacher) else "a sequence classifier (one output per record)"


def _kind_error(teacher: Any, fields: tuple[str, ...]) -> UsageError:
    what = "tagging records (tokens)" if is_tagging(fields) else f"records of the fields {', '.join(fields)}"
    need = ("a tagger teacher (xlt teach on tokens + tags records)" if is_tagging(fields)
            else "a sequence-classification teacher, or tagging records (tokens + tags)")
    return UsageError(f"the teacher {getattr(teacher, 'path', '')} is {_teacher_kind(teacher)} and the input is "
                      f"{what}: use {need}")


def coverage_error(words: int, lost: int, max_length: Any, *, where: str = "") -> RecordError:
    """A tagging record the teacher cannot label whole: `lost` of its `words` got no subword."""
    return RecordError(f'the teacher sees {words - lost} of the {words} words of "{where}tokens" ({lost} past its '
                       f"max length of {max_length} subwords, or given no subword by its tokenizer): per-word "
                       "outputs need every word; split the record or raise --max-length")


def check_view_words(rec: Record, v: Record) -> list[str]:
    """The words a tagger teacher reads in the view `v` of `rec`: as many as the record's own
    `tokens`, so the per-word outputs align with the student's words (RecordError else)."""
    words = check_words(rec)
    if v is rec:
        return words
    theirs = check_words(v, where="src.")
    if len(theirs) != len(words):
        raise RecordError(f'field "src.tokens" has {len(theirs)} words and "tokens" {len(words)}: the teacher\'s '
                          "per-word outputs would not align with the record's words (a tagging src view needs "
                          "the same words, one for one; or --view self)")
    return theirs


class ViewCheck:
    """`validate` for the reader: the view the teacher reads (`src` or the record) has the text
    fields, so `--on-error skip` skips records without it like any other bad input. The fields
    are `fields`, else the teacher's, else inferred from the first good record.

    Tagging records: the view's `tokens` have as many words as the record's, and with a
    `teacher` (a `Classifier`) it sees every word. A teacher of the other kind than the records
    (a tagger on sentence records, a sequence classifier on tagging records) is a UsageError."""

    def __init__(self, which: str, fields: tuple[str, ...] | None, *, teacher: Any = None) -> None:
        if which not in VIEWS:
            raise UsageError(f"--view must be one of {', '.join(VIEWS)}, not {which!r}")
        self.which = which
        self.teacher = teacher
        self.explicit = fields is not None  # --fields: the records are read as the user says
        self.fields = fields or (teacher.fields if teacher is not None else None)
        if teacher is not None and self.explicit and is_tagging(fields) != _is_tagger(teacher):
            raise _kind_error(teacher, tuple(fields or ()))

    def __call__(self, rec: Record) -> None:
        if self.teacher is not None and not self.explicit:
            try:
                shape = infer_fields(rec)
            except RecordError:
                shape = None  # the checks below say what is missing
            if shape is not None and is_tagging(shape) != _is_tagger(self.teacher):
                raise _kind_error(self.teacher, shape)
        fields = self.fields or infer_fields(rec)  # the views share the record's text fields
        v = view(rec, fields, self.which)
        if is_tagging(fields):
            words = check_view_words(rec, v)
            tokenizer = getattr(self.teacher, "tokenizer", None)
            if tokenizer is not None and _is_tagger(self.teacher):
                from xlt.tagging.encode import encode_words

                lost = encode_words(tokenizer, [words], max_length=self.teacher.max_length).uncovered()
                if lost:
                    raise coverage_error(len(words), lost, self.teacher.max_length,
                                         where="" if v is rec else "src.")
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
    default student of `distill`), and optionally `hidden`. For tagging records (a tagger
    teacher) logits, probs and hidden are lists with one row per word of `tokens`.

    A teacher output that is not finite stops the stage (XltError naming the record): a NaN
    soft label is never written."""
    import numpy as np

    from xlt.inference.types import softmax

    from xlt.inference.unique import UniqueRuns

    check = check or ViewCheck(which, fields, teacher=teacher)  # the reader's own, when it validated with one
    runs = UniqueRuns(teacher)  # parallel records share their src view: the teacher reads each once
    if not math.isfinite(temperature) or temperature <= 0:
        raise UsageError(f"--temperature must be a finite number > 0, not {temperature}")
    labels = teacher.labels.values
    digest = teacher.digest
    base = teacher_base(teacher)
    buf: list[tuple[str, Record]] = []
    texts: list[tuple[Any, ...]] = []

    def rounded(x: Any) -> Any:
        return [rounded(r) for r in x] if x.ndim > 1 else [round(float(v), digits) for v in x]

    def flush() -> Iterator[Record]:
        out = runs.predict(texts, hidden=hidden)
        # per record: logits [C] (or [W, C] per word), the same rows of hidden vectors
        logits = list(out.logits)
        vectors = list(out.hidden) if hidden else None
        for i, (where, _) in enumerate(buf):
            covered = getattr(out, "covered", None)
            if covered is not None and not covered[i].all():  # the reader's ViewCheck refuses these first
                lost = int((~covered[i]).sum())
                raise InputError(f"{where}: {coverage_error(len(covered[i]), lost, teacher.max_length)}")
        probs = [softmax(z, temperature) for z in logits]
        for i, (where, _) in enumerate(buf):
            if not (np.isfinite(probs[i]).all() and np.isfinite(logits[i]).all()
                    and (vectors is None or np.isfinite(vectors[i]).all())):
                raise XltError(f"the teacher {getattr(teacher, 'path', '')} produced non-finite outputs for {where} "
                               f"(at --temperature {temperature:g}); nothing was written")
        for i, (_, rec) in enumerate(buf):
            t: dict[str, Any] = {
                "logits": rounded(logits[i]),
                "probs": rounded(probs[i]),
                "labels": labels, "temperature": temperature, "model": digest,
            }
            if base is not None:
                t["base"] = base
            if vectors is not None:
                t["hidden"] = rounded(vectors[i])
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
    if runs.note():
        from xlt import log

        log.info(str(runs.note()))


class TeacherCheck:
    """`check` for records carrying soft labels (`teacher`, written by `xlt soft-label`).

    Every record must have the teacher outputs the first one has (logits, else probabilities;
    the hidden vector when `need_hidden`), one value per label of the label set, each a finite
    number (probabilities in [0, 1] with a positive sum), and the same label names (in any
    order). The label set is `labels` (`--labels`), else the first record's. A record that breaks
    this is bad input: FILE:LINE and the field, or skipped with `--on-error skip`.

    Tagging records (`fields`, else the record's shape, `xlt.records.infer_fields`) carry those
    outputs per word: one row for each word of `tokens`, each row as above.
    """

    def __init__(self, labels: Any = None, *, need_hidden: bool = False, fields: tuple[str, ...] | None = None) -> None:
        self.names: list[str] | None = list(labels.names) if labels is not None else None
        self.values: list[Any] | None = list(labels.values) if labels is not None else None
        self.need_hidden = need_hidden
        self.fields = fields
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
        words = self._words(rec)
        rows = _rows(t[kind], f"teacher.{kind}", words=words, length=len(names))
        if kind == "probs":
            for j, values in enumerate(rows):
                if any(v < 0 or v > 1 for v in values) or sum(values) <= 0:
                    at = f"[{j}]" if words is not None else ""
                    raise RecordError(f'field "teacher.probs{at}" must be probabilities in [0, 1] with a positive sum')
        hidden_size = self.hidden_size
        if self.need_hidden:
            if "hidden" not in t:
                raise RecordError('missing field "teacher.hidden" (objective hidden-kl: soft-label with --hidden, '
                                  'or pass --teacher CKPT)')
            for values in _rows(t["hidden"], "teacher.hidden", words=words, length=hidden_size):
                hidden_size = len(values)
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

    def _words(self, rec: Record) -> int | None:
        """How many words the record's per-word outputs must have (None: not a tagging record)."""
        fields = self.fields
        if fields is None:
            try:
                fields = infer_fields(rec)
            except RecordError:
                return None
        return len(check_words(rec)) if is_tagging(fields) else None


def _rows(value: Any, name: str, *, words: int | None, length: int | None) -> list[list[float]]:
    """One list of `length` finite numbers (`words` None), or one per word; RecordError else."""
    per_word = isinstance(value, list) and bool(value) and isinstance(value[0], list)
    if words is None:
        if per_word:
            raise RecordError(f'field "{name}" holds one list per word, and the record is not a tagging record '
                              '(no "tokens" list): soft-label it with a sequence classifier')
        return [finite_numbers(value, name, length=length)]
    if not isinstance(value, list) or (value and not per_word):
        raise RecordError(f'field "{name}" must hold one list of numbers per word of "tokens" ({words}); the record '
                          "is a tagging record: soft-label it with a tagger")
    if len(value) != words:
        raise RecordError(f'field "{name}" has {len(value)} rows for the {words} words of "tokens" (one per word)')
    rows = []
    for j, row in enumerate(value):
        rows.append(finite_numbers(row, f"{name}[{j}]", length=length))
        length = len(rows[-1])  # every word's row as long as the first's
    return rows
