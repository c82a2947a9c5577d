"""The record contract: task shapes, text fields, languages, views.

A record is one JSON object: `id` (string, equal across languages for parallel data), `lang`
(ISO 639-1), the task's text fields, optional `label`. A tagging record carries `tokens` (a list of
words, never re-split: a word may hold spaces) and optional `tags` (one per word) instead of text
fields and `label`; its one "text field" is `tokens`. Parallel records carry a `src` view
(`{"lang": "en", <text fields>}`); cross-lingual pairs carry per-field `langs`. Stages add
`teacher` (soft-label) and `aug` (perturb). Unknown keys always pass through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from xlt.errors import RecordError, UsageError

Record = dict[str, Any]

#: Task shapes in the order they are tried when inferring fields from a record (tagging before
#: single: a tagging record may keep its sentence in `text`).
SHAPES: dict[str, tuple[str, ...]] = {
    "nli": ("premise", "hypothesis"),
    "paraphrase": ("sentence1", "sentence2"),
    "tagging": ("tokens",),
    "single": ("text",),
}

#: The fields of the tagging shape: one list of words; its gold labels are in `tags`.
TAGGING: tuple[str, ...] = SHAPES["tagging"]


def is_tagging(fields: Sequence[str] | None) -> bool:
    """Whether `fields` are the tagging shape's (a list of words per record, a tag per word)."""
    return fields is not None and tuple(fields) == TAGGING


def parse_fields(spec: str | None) -> tuple[str, ...] | None:
    """`--fields premise,hypothesis` (or a shape name: nli, paraphrase, tagging, single) -> field names."""
    if spec is None or not spec.strip():
        return None
    spec = spec.strip()
    if spec in SHAPES:
        return SHAPES[spec]
    fields = tuple(f.strip() for f in spec.split(",") if f.strip())
    if "tokens" in fields and fields != TAGGING:
        raise UsageError(f"--fields {spec}: tokens is the tagging shape's one field (--fields tagging)")
    if not 1 <= len(fields) <= 2:
        raise UsageError(f"--fields takes one or two comma-separated field names, not {spec!r}")
    if len(set(fields)) != len(fields):
        raise UsageError(f"--fields names a field twice: {spec!r}")
    return fields


def infer_fields(record: Record) -> tuple[str, ...]:
    """The text fields of `record` by the shapes of the contract (pair shapes first; `tokens` as a
    list of words is the tagging shape, with or without `tags`)."""
    for name, fields in SHAPES.items():
        if name == "tagging":
            if isinstance(record.get("tokens"), list):
                return fields
        elif all(f in record for f in fields):
            return fields
    shapes = " or ".join("/".join(f) for f in SHAPES.values())
    raise RecordError(f"cannot tell the task's text fields (expected {shapes}; force with --fields)")


def check_text(record: Record, fields: Sequence[str], *, where: str = "") -> None:
    """Each of `fields` is present, a string and not empty (or blank); the tagging shape's `tokens`
    a non-empty list of such strings."""
    if is_tagging(fields):
        check_words(record, where=where)
        return
    for f in fields:
        if f not in record:
            raise RecordError(f'missing field "{where}{f}"')
        value = record[f]
        if not isinstance(value, str):
            raise RecordError(f'field "{where}{f}" must be a string, got {type(value).__name__}')
        if not value.strip():
            raise RecordError(f'field "{where}{f}" is empty')


def check_words(record: Record, *, where: str = "") -> list[str]:
    """The record's `tokens`: a non-empty list of words, each a non-blank string (kept as they are:
    a word may hold spaces, e.g. Vietnamese or `25 000`)."""
    if "tokens" not in record:
        raise RecordError(f'missing field "{where}tokens"')
    words = record["tokens"]
    if not isinstance(words, list):
        raise RecordError(f'field "{where}tokens" must be a list of words, got {type(words).__name__}')
    if not words:
        raise RecordError(f'field "{where}tokens" is empty')
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise RecordError(f'field "{where}tokens[{i}]" must be a string, got {type(w).__name__}')
        if not w.strip():
            raise RecordError(f'field "{where}tokens[{i}]" is empty')
    return words


def check_tags(record: Record, *, has: Any = None, where: str = "") -> list[Any]:
    """The record's `tags`: one string (or integer) per word of `tokens` (checked first); with
    `has` (a predicate, e.g. `LabelSet.has`), each one of the label set."""
    words = check_words(record, where=where)
    if "tags" not in record or record["tags"] is None:
        raise RecordError(f'missing field "{where}tags"')
    tags = record["tags"]
    if not isinstance(tags, list):
        raise RecordError(f'field "{where}tags" must be a list of tags, got {type(tags).__name__}')
    if len(tags) != len(words):
        raise RecordError(f'field "{where}tags" has {len(tags)} tags for {len(words)} tokens')
    for i, t in enumerate(tags):
        if isinstance(t, bool) or not isinstance(t, (str, int)) or (isinstance(t, str) and not t.strip()):
            raise RecordError(f'field "{where}tags[{i}]" must be a non-empty string or an integer, got {t!r}')
        if has is not None and not has(t):
            raise RecordError(f'field "{where}tags[{i}]": tag {t!r} is not in the label set')
    return tags


#: The largest magnitude a model output in a record may have: it must stay finite as float32.
FLOAT32_MAX = 3.4028234663852886e38


def finite_numbers(value: Any, name: str, *, length: int | None) -> list[float]:
    """`value` as a list of real numbers (not booleans), each finite in float32 (what the
    tensors built from it hold), of `length` items when given; RecordError naming `name` else."""
    if not isinstance(value, list):
        raise RecordError(f'field "{name}" must be a list of numbers, got {type(value).__name__}')
    if length is not None and len(value) != length:
        raise RecordError(f'field "{name}" has {len(value)} values, expected {length}')
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise RecordError(f'field "{name}[{i}]" must be a number, got {type(x).__name__}')
        if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
            raise RecordError(f'field "{name}[{i}]" is not a finite (float32) number: {x!r}')
        out.append(float(x))
    return out


def check_id(record: Record) -> str:
    if "id" not in record:
        raise RecordError('missing field "id"')
    rid = record["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise RecordError(f'field "id" must be a string, got {type(rid).__name__}')
    return str(rid)


def check_lang(record: Record) -> str:
    if "lang" not in record:
        raise RecordError('missing field "lang"')
    lang = record["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise RecordError('field "lang" must be a non-empty string (an ISO 639-1 code)')
    return lang


def record_lang(record: Record) -> str:
    """The language key used for reporting: `lang`, or `P-H` from `langs` when fields differ."""
    langs = record.get("langs")
    if isinstance(langs, dict) and langs:
        values = [str(v) for v in langs.values()]
        return values[0] if len(set(values)) == 1 else "-".join(values)
    lang = record.get("lang")
    return str(lang) if lang is not None else "?"


def field_langs(record: Record, fields: Sequence[str]) -> tuple[str, ...]:
    """The language of each text field (from `langs`, else `lang`)."""
    langs = record.get("langs") if isinstance(record.get("langs"), dict) else {}
    base = str(record.get("lang", "?"))
    return tuple(str(langs.get(f, base)) for f in fields)


def texts(record: Record, fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(record[f] for f in fields)


def src_view(record: Record, fields: Sequence[str]) -> Record:
    """The record's source-language view (`src`), checked for the text fields."""
    src = record.get("src")
    if not isinstance(src, dict):
        raise RecordError('missing field "src" (the source-language view; build it with xlt pair --src or xlt translate)')
    check_text(src, fields, where="src.")
    return src


def view(record: Record, fields: Sequence[str], which: str) -> Record:
    """`which="self"`: the record; `"src"`: its source view; `"auto"`: `src` if present."""
    if which == "src" or (which == "auto" and isinstance(record.get("src"), dict)):
        return src_view(record, fields)
    check_text(record, fields)
    return record
