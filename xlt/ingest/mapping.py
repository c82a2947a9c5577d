"""Rows of a source -> records of the xlt contract.

`MappingSpec` says which column fills which field (`--map`, a preset, the format's defaults, and
contract-named columns taken as they are), where ids and languages come from, and how labels are
named. `bind` checks it against a source's columns once (a missing column is a usage error that
names the columns there are); `RowMapper.records` turns one row into its record, or into one
record per language for a row that holds every language (`xnli` `all_languages`), and says what
is wrong with a bad row as a `RecordError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from xlt.errors import RecordError, UsageError
from xlt.ingest import conll
from xlt.ingest.presets import Preset
from xlt.io import find_invalid

Row = dict[str, Any]
Record = dict[str, Any]

TEXT_FIELDS = ("premise", "hypothesis", "sentence1", "sentence2", "text")
PAIRS = (("premise", "hypothesis"), ("sentence1", "sentence2"))
#: Columns with these names fill the same field when nothing else maps them.
CONTRACT_COLUMNS = (*TEXT_FIELDS, "label", "tokens", "tags")
#: Output key order: the record contract's, then anything else mapped or kept.
KEY_ORDER = ("id", "lang", *TEXT_FIELDS, "tokens", "tags", "label")
#: What each format's rows are called by default (the names the hub's datasets use).
FORMAT_MAPS: dict[str, dict[str, str]] = {
    "conllu": {"tokens": "tokens", "tags": "upos", "text": "text"},
    "conll": {"tokens": "tokens", "tags": "ner_tags"},
}
FORMAT_ID_FROM = {"conllu": "idx"}
_LANG_CODE = re.compile(r"^[a-z]{2,3}$")


def _lang_code(value: str) -> str | None:
    """The ISO 639 code in a config or locale: `fr`, `fr-FR`, `zh_CN`, `PAN-X.fr`, `fr_gsd` -> `fr`."""
    code = re.split(r"[-_]", value.rsplit(".", 1)[-1], maxsplit=1)[0].lower()
    return code if _LANG_CODE.match(code) else None


def _parse_value(text: str) -> Any:
    """`--labels` items: integers stay integers (as `xlt teach --labels` reads them)."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _key(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class LabelMap:
    """`--labels a,b,c`: the label set in order (a ClassLabel's index i becomes the i-th name; other
    labels must be in the set); `--labels old=new,...`: a renaming (labels not named are refused)."""

    values: tuple[Any, ...]
    rename: dict[str, Any] | None = None

    @classmethod
    def parse(cls, spec: str, *, option: str = "--labels") -> "LabelMap":
        items = [x.strip() for x in spec.split(",") if x.strip()]
        if not items:
            raise UsageError(f"{option}: give the labels, comma-separated (a,b,c or old=new,...)")
        with_eq = [x for x in items if "=" in x]
        if with_eq and len(with_eq) != len(items):
            raise UsageError(f"{option} {spec}: either all items are old=new or none is")
        if with_eq:
            pairs = [x.split("=", 1) for x in items]
            rename = {_key(_parse_value(old)): _parse_value(new) for old, new in pairs}
            if len(rename) != len(pairs):
                raise UsageError(f"{option} {spec}: a label is renamed twice")
            return cls(tuple(dict.fromkeys(rename.values())), rename)
        values = tuple(_parse_value(x) for x in items)
        if len({_key(v) for v in values}) != len(values):
            raise UsageError(f"{option} {spec}: a label is named twice")
        return cls(values)

    def names(self) -> str:
        return ", ".join(map(str, self.rename if self.rename is not None else self.values))

    def index(self, i: int, names: Sequence[str]) -> Any:
        """A ClassLabel index under a positional --labels."""
        if not 0 <= i < len(self.values):
            raise RecordError(f"label {i} ({names[i]}) has no name in --labels ({self.names()})")
        return self.values[i]

    def apply(self, value: Any) -> Any:
        key = _key(value)
        if self.rename is not None:
            if key not in self.rename:
                raise RecordError(f"label {value!r} is not one of {self.names()} (--labels)")
            return self.rename[key]
        for v in self.values:
            if _key(v) == key:
                return v
        raise RecordError(f"label {value!r} is not one of {self.names()} (--labels)")


@dataclass(frozen=True)
class MappingSpec:
    """How rows become records, before it is checked against a source."""

    fields: dict[str, str] = field(default_factory=dict)  # contract field -> source column
    origin: dict[str, str] = field(default_factory=dict)  # contract field -> the option that said so
    lang: str | None = None
    lang_from: str | None = None
    lang_from_strict: bool = True
    lang_from_config: bool = False
    file_lang: str | None = None
    id_from: str | None = None
    id_from_strict: bool = True
    labels: LabelMap | None = None
    keep: tuple[str, ...] = ()
    langs: tuple[str, ...] | None = None


def parse_map(items: Sequence[str]) -> dict[str, str]:
    """`--map premise=sentence1` (repeatable, or comma-separated) -> {"premise": "sentence1"}."""
    out: dict[str, str] = {}
    for item in (x.strip() for spec in items for x in spec.split(",")):
        if not item:
            continue
        target, sep, column = (s.strip() for s in item.partition("="))
        if not sep or not target or not column:
            raise UsageError(f"--map takes FIELD=COLUMN (e.g. premise=sentence1), not {item!r}")
        if target in out:
            raise UsageError(f"--map names the field {target!r} twice")
        out[target] = column
    return out


def _drop_tagging(fields: dict[str, str]) -> None:
    """`slots` makes the tokens and tags: a format's own tokens/tags mapping gives way."""
    for name in ("tokens", "tags"):
        fields.pop(name, None)


def build_spec(
    *,
    preset: Preset | None = None,
    fmt: str | None = None,
    maps: Sequence[str] = (),
    column: str | None = None,
    lang: str | None = None,
    lang_from: str | None = None,
    id_from: str | None = None,
    labels: str | None = None,
    keep: Sequence[str] = (),
    langs: str | None = None,
) -> MappingSpec:
    """Format defaults < preset < command line. `column` is `--column`, the tag column: a CoNLL-U
    column name (`xpos`) for CoNLL-U files, a column of the rows otherwise."""
    fields: dict[str, str] = {}
    origin: dict[str, str] = {}
    if fmt in FORMAT_MAPS:
        fields.update(FORMAT_MAPS[fmt])
        origin.update({k: f"the {fmt} format" for k in FORMAT_MAPS[fmt]})
    id_col, id_strict = FORMAT_ID_FROM.get(fmt or ""), False
    spec = MappingSpec()
    if preset is not None:
        if "slots" in preset.map:
            _drop_tagging(fields)
        fields.update(preset.map)
        origin.update({k: f"--preset {preset.name}" for k in preset.map})
        if preset.id_from:
            id_col, id_strict = preset.id_from, False
        spec = replace(spec, lang_from=preset.lang_from, lang_from_strict=False,
                       lang_from_config=preset.lang_from_config, file_lang=preset.file_lang,
                       labels=LabelMap.parse(preset.labels, option=f"--preset {preset.name} labels") if preset.labels else None)
    user = parse_map(maps)
    for target in ("id", "lang"):
        if target in user:
            col = user.pop(target)
            if target == "id":
                id_from = id_from or col
            else:
                lang_from = lang_from or col
    if "slots" in user:
        _drop_tagging(fields)
    fields.update(user)
    origin.update({k: f"--map {k}={v}" for k, v in user.items()})
    if column is not None:
        fields["tags"] = conll.conllu_row_name(column) if fmt == "conllu" else column.strip()
        origin["tags"] = f"--column {column}"
    if id_from:
        id_col, id_strict = id_from, True
    if lang is not None and lang_from is not None:
        raise UsageError("give --lang or --lang-from, not both")
    if lang is not None:
        if not lang.strip():
            raise UsageError("--lang: give a language code (e.g. fr)")
        spec = replace(spec, lang_from=None)  # the command line wins over a preset's column
    if lang_from:
        spec = replace(spec, lang_from=lang_from, lang_from_strict=True)
    chosen = tuple(x.strip() for x in langs.split(",") if x.strip()) if langs is not None else None
    if chosen is not None and not chosen:
        raise UsageError("--langs: give languages, comma-separated (e.g. en,fr)")
    return replace(spec, fields=fields, origin=origin, lang=lang, id_from=id_col, id_from_strict=id_strict,
                   labels=LabelMap.parse(labels) if labels else spec.labels,
                   keep=tuple(k.strip() for spec_ in keep for k in spec_.split(",") if k.strip()),
                   langs=chosen)


def _class_names(feature: Any) -> tuple[list[str] | None, list[str] | None]:
    """(names of a ClassLabel column, names of a list-of-ClassLabel column)."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), None
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return None, list(inner.names)
    return None, None


def _jsonable(value: Any, col: str) -> Any:
    """Arrow values JSON has no type for: dates and times as ISO 8601 text, decimals as text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return [_jsonable(v, col) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, col) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if type(value).__name__ == "Decimal":
        return str(value)
    raise RecordError(f'column "{col}" holds {type(value).__name__} values, which JSON cannot hold')


class RowMapper:
    """A `MappingSpec` checked against one source: turns its rows into records."""

    def __init__(self, spec: MappingSpec, *, source: str, columns: Sequence[str], features: Any = None,
                 config: str | None = None, path: str | None = None) -> None:
        self.spec, self.source = spec, source
        cols = list(columns)
        fields = dict(spec.fields)
        used = set(fields.values())
        for name in CONTRACT_COLUMNS:  # contract-named columns fill their field unless mapped
            if name in cols and name not in fields and name not in used:
                fields[name] = name
        if "slots" in fields:
            for f in ("tokens", "tags"):
                if f in fields and spec.origin.get(f) is None:
                    del fields[f]

        def missing(col: str, why: str) -> UsageError:
            return UsageError(f'{source}: no column "{col}" (for {why}); the columns are: {", ".join(cols) or "(none)"}')

        for target, col in fields.items():
            if col not in cols:
                raise missing(col, spec.origin.get(target, f"the {target} field"))
        for col in spec.keep:
            if col not in cols:
                raise missing(col, f"--keep {col}")
            if col in fields or col in ("id", "lang") or (col in ("tokens", "tags") and "slots" in fields):
                raise UsageError(f"--keep {col}: the record has a {col} field already; map the column to "
                                 f"another name instead (--map other_{col}={col})")
        self.id_from = spec.id_from if spec.id_from in cols else None
        if spec.id_from and self.id_from is None:
            if spec.id_from_strict:
                raise missing(spec.id_from, f"--id-from {spec.id_from}")
        if self.id_from is None and "id" in cols and "id" not in used:
            self.id_from = "id"
        self.id_strict = spec.id_from_strict and self.id_from == spec.id_from
        self.lang_from = spec.lang_from if spec.lang_from in cols else None
        if spec.lang_from and self.lang_from is None and spec.lang_from_strict:
            raise missing(spec.lang_from, f"--lang-from {spec.lang_from}")
        if self.lang_from is None and spec.lang is None and "lang" in cols:
            self.lang_from = "lang"
        self.static_lang = spec.lang  # also the fallback of a preset's language column
        if self.static_lang is None:
            if spec.lang_from_config and config:
                self.static_lang = _lang_code(config)
            if self.static_lang is None and spec.file_lang and path:
                m = re.match(spec.file_lang, os.path.basename(path))
                self.static_lang = m.group(1) if m else None

        for a, b in PAIRS:
            if (a in fields) != (b in fields):
                have, lack = (a, b) if a in fields else (b, a)
                raise UsageError(f"{source}: {have} is mapped but {lack} is not; a pair needs both (--map {lack}=COLUMN)")
        if "tags" in fields and "tokens" not in fields:
            raise UsageError(f"{source}: tags without tokens; map the tokens too (--map tokens=COLUMN)")
        self.tagging = "tokens" in fields or "slots" in fields
        if not self.tagging and not any(f in fields for f in TEXT_FIELDS):
            raise UsageError(f"{source}: no column to take the text from; the columns are: {', '.join(cols) or '(none)'}; "
                             "map one with --map text=COLUMN (or premise=/hypothesis=, sentence1=/sentence2=, "
                             "tokens=/tags=), or use a --preset")
        self.fields = fields
        features = features or {}
        self.class_names: dict[str, list[str]] = {}
        self.tag_names: dict[str, list[str]] = {}
        for col in set(fields.values()) | set(spec.keep):
            if col in features:
                names, seq = _class_names(features[col])
                if names is not None:
                    self.class_names[col] = names
                if seq is not None:
                    self.tag_names[col] = seq

    # --- one value --------------------------------------------------------------------------

    def _label(self, col: str, value: Any) -> Any:
        labels = self.spec.labels
        names = self.class_names.get(col)
        if value is None:
            return None
        if names is not None and isinstance(value, int) and not isinstance(value, bool):
            if value == -1:  # datasets' "no label" (GLUE-style test splits)
                return None
            if not 0 <= value < len(names):
                raise RecordError(f'label {value} is outside the dataset\'s {len(names)} classes ({", ".join(names)})')
            if labels is not None and labels.rename is None:
                return labels.index(value, names)
            value = names[value]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # an integer column with empty cells reads as floats
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RecordError(f'label must be a string or an integer, got {type(value).__name__} (column "{col}")')
        if isinstance(value, str) and not value.strip():
            raise RecordError(f'label is empty (column "{col}")')
        return labels.apply(value) if labels is not None else value

    def _text(self, target: str, col: str, value: Any) -> str | dict[str, str]:
        if isinstance(value, dict):
            return self._per_language(target, col, value)
        if value is None:
            raise RecordError(f'field "{target}" is missing (column "{col}" is empty)')
        if not isinstance(value, str):
            raise RecordError(f'field "{target}" must be a string, got {type(value).__name__} (column "{col}")')
        if not value.strip():
            raise RecordError(f'field "{target}" is empty (column "{col}")')
        return value

    def _per_language(self, target: str, col: str, value: dict) -> dict[str, str]:
        """`{"fr": text, ...}` (datasets' Translation) or `{"language": [...], "translation":
        [...]}` (TranslationVariableLanguages) -> {lang: text}, the first text of each language."""
        if set(value) == {"language", "translation"} and isinstance(value["language"], list):
            langs, texts = value["language"], value["translation"]
            if not isinstance(texts, list) or len(langs) != len(texts):
                raise RecordError(f'column "{col}": "language" and "translation" differ in length')
            pairs = list(zip(langs, texts))
        else:
            pairs = list(value.items())
        out: dict[str, str] = {}
        for lang, text in pairs:
            if not isinstance(lang, str) or not lang.strip():
                raise RecordError(f'column "{col}": a language code is not a non-empty string')
            if text is None:
                continue  # a language this row has no text in (the other fields then say so)
            out.setdefault(lang, self._text(f"{target}.{lang}", col, text))  # type: ignore[arg-type]
        if not out:
            raise RecordError(f'field "{target}" has no text in any language (column "{col}")')
        return out

    def _tokens(self, col: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not value:
            raise RecordError(f'field "tokens" must be a non-empty list of words (column "{col}")')
        for i, tok in enumerate(value):
            if not isinstance(tok, str) or not tok:
                raise RecordError(f'field "tokens[{i}]" must be a non-empty string (column "{col}")')
        return value

    def _tags(self, col: str, value: Any, n: int) -> list[Any]:
        if not isinstance(value, list):
            raise RecordError(f'field "tags" must be a list (column "{col}")')
        if len(value) != n:
            raise RecordError(f'field "tags" has {len(value)} tags for {n} tokens (column "{col}")')
        names = self.tag_names.get(col)
        out = []
        for i, tag in enumerate(value):
            if names is not None and isinstance(tag, int) and not isinstance(tag, bool):
                if not 0 <= tag < len(names):
                    raise RecordError(f'field "tags[{i}]": {tag} is outside the dataset\'s {len(names)} tags')
                tag = names[tag]
            if tag is None or (isinstance(tag, str) and not tag.strip()):
                raise RecordError(f'field "tags[{i}]" is empty (column "{col}")')
            if isinstance(tag, bool) or not isinstance(tag, (str, int)):
                raise RecordError(f'field "tags[{i}]" must be a string, got {type(tag).__name__} (column "{col}")')
            out.append(tag)
        return out

    def _plain(self, col: str, value: Any) -> Any:
        """Any other column (`--map other=COLUMN`, `--keep`): class names for ClassLabel values,
        else the value as it is, if JSON can hold it."""
        names, seq = self.class_names.get(col), self.tag_names.get(col)
        if names is not None and isinstance(value, int) and 0 <= value < len(names):
            value = names[value]
        elif seq is not None and isinstance(value, list):
            value = [seq[v] if isinstance(v, int) and 0 <= v < len(seq) else v for v in value]
        value = _jsonable(value, col)
        bad = find_invalid(value, col)
        if bad:
            raise RecordError(bad)
        return value

    def _id(self, row: Row, default: str) -> str:
        if self.id_from is None:
            return default
        value = row.get(self.id_from)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.id_strict:
                raise RecordError(f'id column "{self.id_from}" is empty')
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RecordError(f'id column "{self.id_from}" must hold a string or an integer, got {type(value).__name__}')
        return str(value)

    def _lang(self, row: Row) -> str | None:
        if self.lang_from is None:
            return self.static_lang
        value = row.get(self.lang_from)
        if isinstance(value, list) and value and all(v == value[0] for v in value):
            value = value[0]  # wikiann's per-token `langs`
        if not isinstance(value, str) or not value.strip():
            if self.static_lang is None:
                raise RecordError(f'language column "{self.lang_from}" is empty or not a string')
            return self.static_lang
        return _lang_code(value) or value.strip()

    # --- one row --------------------------------------------------------------------------------

    def records(self, row: Any, default_id: str) -> list[Record]:
        """The records of one row (one, or one per language), or RecordError."""
        if not isinstance(row, dict):
            raise RecordError(f"expected a record (a mapping of columns), got {type(row).__name__}")
        values: dict[str, Any] = {}
        per_lang: dict[str, dict[str, str]] = {}
        for target, col in self.fields.items():
            if col not in row:
                raise RecordError(f'missing column "{col}" (for the {target} field)')
            value = row[col]
            if target == "label":
                values[target] = self._label(col, value)
            elif target == "slots":
                if not isinstance(value, str) or not value.strip():
                    raise RecordError(f'slot annotation (column "{col}") is empty or not a string')
                values["tokens"], values["tags"] = conll.bracket_slots(value)
            elif target == "tokens":
                values[target] = self._tokens(col, value)
            elif target == "tags":
                continue  # after the tokens, whose number it must match
            elif target in TEXT_FIELDS:
                if target == "text" and self.tagging and value is None:
                    continue  # a sentence's text is optional next to its tokens
                text = self._text(target, col, value)
                if isinstance(text, dict):
                    per_lang[target] = text
                else:
                    values[target] = text
            else:
                values[target] = self._plain(col, value)
        if "tags" in self.fields:
            values["tags"] = self._tags(self.fields["tags"], row[self.fields["tags"]], len(values["tokens"]))
        for col in self.spec.keep:
            values[col] = self._plain(col, row.get(col))
        if values.get("label", 0) is None:
            del values["label"]
        rid = self._id(row, default_id)
        if per_lang:
            return self._explode(rid, values, per_lang)
        lang = self._lang(row)
        if lang is None:
            raise UsageError(f"{self.source}: cannot tell the records' language; give --lang CODE or --lang-from COLUMN")
        return [self._ordered(rid, lang, values)]

    def _explode(self, rid: str, values: dict[str, Any], per_lang: dict[str, dict[str, str]]) -> list[Record]:
        """One record per language of a row that holds every language, all with the row's id."""
        plain = [f for f in TEXT_FIELDS if f in values]
        if plain:
            raise RecordError(f'field "{plain[0]}" has one text but "{next(iter(per_lang))}" one per language')
        first = next(iter(per_lang.values()))
        out = []
        for lang in first:
            rec = dict(values)
            for target, texts in per_lang.items():
                if lang not in texts:
                    raise RecordError(f'field "{target}" has no {lang} text (the other fields have one)')
                rec[target] = texts[lang]
            out.append(self._ordered(rid, lang, rec))
        return out

    @staticmethod
    def _ordered(rid: str, lang: str, values: dict[str, Any]) -> Record:
        rec: Record = {"id": rid, "lang": lang}
        for key in KEY_ORDER[2:]:
            if key in values:
                rec[key] = values[key]
        for key, value in values.items():
            if key not in rec:
                rec[key] = value
        return rec
