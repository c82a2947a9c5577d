"""Stream parallel records into representations for `analyze`.

Every distinct text view becomes one item (a row of vectors): each record is a target item; its
`src` view (`xlt pair --src`, `xlt translate`) a source item, shared by every record with the same
source text; records without `src` are joined by `id` after the stream, those of the source
language (`--src`) being the source items. Only the vectors, a few fields per item and, for the
join, each record's id are kept: N items x layers x H floats, what retrieval needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from xlt.errors import InputError, RecordError, UsageError, XltError
from xlt.records import Record, check_id, check_lang, check_text, infer_fields, is_tagging, record_lang, src_view
from xlt.train.data import LabelSet, label_key


class AnalyzeInputCheck:
    """`validate` for the reader: the text fields (given, the model's, else inferred from the first
    good record), `lang`, and either a `src` view with its `lang` and text fields or an `id` to join
    by; a gold label must be one of the model's when the model is a classifier."""

    def __init__(self, fields: tuple[str, ...] | None, labels: LabelSet | None) -> None:
        self.fields = fields
        self.labels = labels

    def __call__(self, rec: Record) -> None:
        fields = self.fields or infer_fields(rec)
        if is_tagging(fields):
            raise UsageError("xlt analyze compares sentence representations of classifiers; tagging records "
                             "(tokens + tags) are not supported")
        check_text(rec, fields)
        check_lang(rec)
        if rec.get("src") is not None:
            src = src_view(rec, fields)
            if not isinstance(src.get("lang"), str) or not src["lang"].strip():
                raise RecordError('missing field "src.lang" (the source view\'s language)')
        else:
            check_id(rec)
        label = rec.get("label")
        if label is not None:
            self.labels.index(label) if self.labels is not None else label_key(label)
        self.fields = fields


@dataclass
class Collected:
    """Items (text views) with their vectors, and which target item is parallel to which source."""

    langs: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    is_source: list[bool] = field(default_factory=list)
    vectors: Any = None          # [N, K, H] student first-token vectors of the K layers read
    logits: Any = None           # [N, C] student logits
    teacher_row: Any = None      # [N] row of teacher_vectors for source items, -1 elsewhere
    teacher_vectors: Any = None  # [M, H] teacher's final first-token vectors of the source items
    teacher_logits: Any = None   # [M, C']
    source_of: Any = None        # [N] the parallel source item of each target item, -1 if none
    default_source: str = "en"
    missing: dict[str, int] = field(default_factory=dict)  # target language -> records without a source

    @property
    def count(self) -> int:
        return len(self.langs)


def _finite(array: Any, model: str, wheres: Sequence[str]) -> None:
    finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    if not finite.all():
        where = wheres[int(np.argmin(finite))]
        raise XltError(f"{model} produced a non-finite vector (NaN or Infinity) for {where}; "
                       "nothing is analyzed from a broken model")


def collect(located: Iterable[tuple[str, Record]], student: Any, *, teacher: Any = None,
            layers: Sequence[int] | None, src_lang: str, check: AnalyzeInputCheck, chunk: int = 512) -> Collected:
    """Read the records in chunks, run the student on every item (and the teacher on the source
    items), then join the records without a `src` view by id. `layers`: see `represent`."""
    collector = _Collector(student, teacher, layers=layers, src_lang=src_lang, check=check)
    records = iter(located)
    for part in iter(lambda: list(islice(records, chunk)), []):
        collector.read(part)
    return collector.result()


@dataclass
class _Chunk:
    """The texts of one chunk of records: every new item's for the student, the source items'
    for the teacher, each with its location for error messages."""

    texts: list[tuple[str, ...]] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)
    t_texts: list[tuple[str, ...]] = field(default_factory=list)
    t_wheres: list[str] = field(default_factory=list)


class _Collector:
    """The state of `collect` between chunks: the items so far, their vectors, and the tables
    that find a record's source item (by its `src` view, or by id after the stream)."""

    def __init__(self, student: Any, teacher: Any, *, layers: Sequence[int] | None, src_lang: str,
                 check: AnalyzeInputCheck) -> None:
        self.student, self.teacher, self.layers, self.check = student, teacher, layers, check
        self.src_lang = src_lang
        self.out = Collected(default_source=src_lang)
        self.vec_parts: list[Any] = []
        self.logit_parts: list[Any] = []
        self.t_vec_parts: list[Any] = []
        self.t_logit_parts: list[Any] = []
        self.teacher_row: list[int] = []
        self.source_of: list[int] = []
        self.src_items: dict[tuple[str, str, str], int] = {}  # (lang, id, digest of the texts) -> item
        self.by_id: dict[str, dict[str, int]] = {}            # lang -> id -> item, records without `src`
        self.n_teacher = 0

    def read(self, located: Sequence[tuple[str, Record]]) -> None:
        """Add a chunk of records' items and run the model(s) on their texts."""
        fields = self.check.fields
        assert fields is not None
        chunk = _Chunk()
        for where, rec in located:
            text = tuple(rec[f] for f in fields)
            if rec.get("src") is not None:
                self._add_with_src(chunk, where, rec, text, fields)
            else:
                self._add_by_id(chunk, where, rec, text)
        self._represent(chunk)

    def _add(self, lang: str, label: Any, source: bool) -> int:
        self.out.langs.append(lang)
        self.out.labels.append(label)
        self.out.is_source.append(source)
        self.source_of.append(-1)
        self.teacher_row.append(-1)
        return len(self.out.langs) - 1

    def _teach(self, chunk: _Chunk, item: int, text: tuple[str, ...], where: str) -> None:
        if self.teacher is not None:
            self.teacher_row[item] = self.n_teacher
            self.n_teacher += 1
            chunk.t_texts.append(text)
            chunk.t_wheres.append(where)

    def _add_with_src(self, chunk: _Chunk, where: str, rec: Record, text: tuple[str, ...],
                      fields: tuple[str, ...]) -> None:
        """A target item, and its `src` view as a source item unless an earlier record had it."""
        src = rec["src"]
        item = self._add(record_lang(rec), rec.get("label"), False)
        chunk.texts.append(text)
        chunk.wheres.append(where)
        s_text = tuple(src[f] for f in fields)
        s_lang = str(src["lang"])
        key = (s_lang, str(rec.get("id", "")), hashlib.sha1(json.dumps(s_text).encode("utf-8")).hexdigest())
        s_item = self.src_items.get(key)
        if s_item is None:
            s_item = self.src_items[key] = self._add(s_lang, src.get("label", rec.get("label")), True)
            chunk.texts.append(s_text)
            chunk.wheres.append(f"{where} (src)")
            self._teach(chunk, s_item, s_text, f"{where} (src)")
        self.source_of[item] = s_item

    def _add_by_id(self, chunk: _Chunk, where: str, rec: Record, text: tuple[str, ...]) -> None:
        """An item joined by id after the stream: a source item in the --src language."""
        lang = record_lang(rec)
        rid = str(rec["id"])
        table = self.by_id.setdefault(lang, {})
        if rid in table:
            raise InputError(f'{where}: duplicate id "{rid}" for language "{lang}"')
        item = table[rid] = self._add(lang, rec.get("label"), lang == self.src_lang)
        chunk.texts.append(text)
        chunk.wheres.append(where)
        if lang == self.src_lang:
            self._teach(chunk, item, text, where)

    def _represent(self, chunk: _Chunk) -> None:
        from xlt.analyze.represent import represent

        reps = represent(self.student, chunk.texts, layers=self.layers)
        _finite(reps.vectors, self.student.path, chunk.wheres)
        self.vec_parts.append(np.asarray(reps.vectors, dtype=np.float32))
        self.logit_parts.append(np.asarray(reps.logits, dtype=np.float32))
        if not chunk.t_texts:
            return
        t_reps = represent(self.teacher, chunk.t_texts, layers=None)
        _finite(t_reps.vectors, self.teacher.path, chunk.t_wheres)
        h_t, h_s = t_reps.vectors.shape[-1], reps.vectors.shape[-1]
        if h_t != h_s:
            raise UsageError(f"--teacher {self.teacher.path}: its hidden size {h_t} differs from the model's {h_s}; "
                             "teacher-student distances compare vectors of one size")
        self.t_vec_parts.append(np.asarray(t_reps.vectors[:, 0], dtype=np.float32))
        self.t_logit_parts.append(np.asarray(t_reps.logits, dtype=np.float32))

    def _join_by_id(self) -> None:
        """Each record without `src` gets the --src record with its id as its source (if any)."""
        sources = self.by_id.get(self.src_lang, {})
        for lang, table in self.by_id.items():
            if lang == self.src_lang:
                continue
            for rid, item in table.items():
                s_item = sources.get(rid, -1)
                self.source_of[item] = s_item
                if s_item < 0:
                    self.out.missing[lang] = self.out.missing.get(lang, 0) + 1

    def result(self) -> Collected:
        out = self.out
        if not out.langs:
            return out
        self._join_by_id()
        out.vectors = np.concatenate(self.vec_parts)
        out.logits = np.concatenate(self.logit_parts)
        out.teacher_row = np.asarray(self.teacher_row, dtype=np.int64)
        out.source_of = np.asarray(self.source_of, dtype=np.int64)
        if self.t_vec_parts:
            out.teacher_vectors = np.concatenate(self.t_vec_parts)
            out.teacher_logits = np.concatenate(self.t_logit_parts)
        return out
