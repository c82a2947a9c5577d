"""Examples for training and inference: label sets, text extraction, tokenization and
length-grouped batching with dynamic padding."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import log
from xlt.errors import InputError, RecordError, UsageError
from xlt.io import SkipReport, iter_located
from xlt.records import Record, check_tags, check_text, infer_fields, is_tagging, record_lang
from xlt.train.batch import collate


def label_key(value: Any) -> str:
    """Labels compare by their string form: 0 and "0" are the same class."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f'field "label" must be a string or an integer, got {type(value).__name__}')
    return str(value)


@dataclass
class LabelSet:
    """The classes of a task in index order, with their original JSON values."""

    values: list[Any]

    def __post_init__(self) -> None:
        self._index = {label_key(v): i for i, v in enumerate(self.values)}
        if len(self._index) != len(self.values):
            raise UsageError(f"labels must be distinct: {self.values}")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def names(self) -> list[str]:
        return [label_key(v) for v in self.values]

    def index(self, value: Any) -> int:
        key = label_key(value)
        if key not in self._index:
            raise RecordError(f'label {json.dumps(value, ensure_ascii=False)} is not one of {", ".join(self.names)}')
        return self._index[key]

    def has(self, value: Any) -> bool:
        try:
            return label_key(value) in self._index
        except RecordError:
            return False

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> "LabelSet":
        """Sorted (numerically when all are integers) unique labels."""
        uniq: dict[str, Any] = {}
        for v in values:
            uniq.setdefault(label_key(v), v)
        keys = list(uniq)
        if all(k.lstrip("-").isdigit() for k in keys):
            keys.sort(key=int)
        else:
            keys.sort()
        return cls([uniq[k] for k in keys])

    @classmethod
    def parse(cls, spec: str) -> "LabelSet":
        """`--labels entailment,neutral,contradiction` (integers stay integers)."""
        items = [x.strip() for x in spec.split(",") if x.strip()]
        if len(items) < 2:
            raise UsageError(f"--labels needs at least two comma-separated labels, not {spec!r}")
        return cls([int(x) if x.lstrip("-").isdigit() else x for x in items])


@dataclass
class Example:
    """One training/inference unit: the text(s), the label index (-1 if none) and the language.
    A tagging example's `texts` is `(words,)` and its `label` a list of tag indices (-1 per word
    without a usable tag), or -1 without tags."""

    texts: tuple[Any, ...]
    label: Any
    lang: str
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    """Labelled examples read from files, with provenance."""

    examples: list[Example]
    fields: tuple[str, ...]
    labels: LabelSet
    digests: dict[str, str]
    langs: dict[str, int]


class DigestingSource:
    """Computes a sha256 over every record read, for provenance of files and stdin alike."""

    def __init__(self) -> None:
        self._h: dict[str, Any] = {}

    def update(self, where: str, rec: Record) -> None:
        name = where.rsplit(":", 1)[0]
        h = self._h.get(name)
        if h is None:
            h = self._h[name] = hashlib.sha256()
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False).encode("utf-8"))

    def digests(self) -> dict[str, str]:
        return {name: "sha256:" + h.hexdigest()[:16] for name, h in self._h.items()}


def read_labelled(
    sources: Sequence[str] | None,
    *,
    fields: tuple[str, ...] | None,
    labels: LabelSet | None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
    need_label: bool = True,
    extra_keys: Sequence[str] = (),
    allow_one_label: bool = False,
    check: Callable[[Record], None] | None = None,
    gold_langs: Collection[str] | None = None,
) -> Corpus:
    """Read every record of `sources` into examples (training needs all of its input).

    Text fields come from `fields` or the first record; labels from `labels` or the data. Tagging
    records (`tokens`) take their labels from `tags`, one per word, and the label set is the set
    of tags.
    Keys in `extra_keys` (e.g. `teacher`, `src`) are kept per example for distillation. `check`
    validates what else a stage needs of each record (raising RecordError), so such errors name
    FILE:LINE and `--on-error skip` skips them. With `gold_langs`, only records in those languages
    keep their gold label (or tags): every other record's is dropped as it is read, never checked,
    counted or used (distill --gold-langs: labelled target-language text cannot leak in).
    """
    chosen = fields
    dropped = 0

    def gold_of(rec: Record) -> bool:
        return gold_langs is None or record_lang(rec) in gold_langs
    raw: list[tuple[tuple[str, ...], Any, str, dict[str, Any]]] = []
    digest = DigestingSource()

    def validate(rec: Record) -> None:
        nonlocal chosen
        if chosen is None:
            chosen = infer_fields(rec)
        check_text(rec, chosen)
        if is_tagging(chosen):
            if need_label or (rec.get("tags") is not None and gold_of(rec)):
                check_tags(rec, has=labels.has if labels is not None else None)
        elif need_label:
            if "label" not in rec or rec["label"] is None:
                raise RecordError('missing field "label"')
            if labels is not None:
                labels.index(rec["label"])
            else:
                label_key(rec["label"])
        if check is not None:
            check(rec)

    for where, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
        digest.update(where, rec)
        assert chosen is not None
        extra = {k: rec[k] for k in extra_keys if k in rec}
        gold = rec.get("tags") if is_tagging(chosen) else rec.get("label")
        if gold is not None and not gold_of(rec):
            gold, dropped = None, dropped + 1
        extra["_label"] = gold
        raw.append((tuple(rec[f] for f in chosen), gold, record_lang(rec), extra))
    if not raw:
        raise InputError(f"{', '.join(sources or ['<stdin>'])}: no records")
    if dropped:
        log.info(f"gold labels ignored on {dropped} record(s) outside the gold languages "
                 f"({', '.join(sorted(gold_langs or ()))})")
    tagging = is_tagging(chosen)
    labelset = labels or LabelSet.from_values(
        (t for r in raw if r[1] is not None for t in r[1]) if tagging else (r[1] for r in raw if r[1] is not None))
    if len(labelset) < 2 and not allow_one_label:
        raise InputError(f"training data has only one label ({', '.join(labelset.names)}); a classifier needs two or more (or pass --labels)")
    examples = []
    langs: dict[str, int] = {}
    for i, (texts, label, lang, extra) in enumerate(raw):
        if tagging:
            index: Any = [labelset.index(t) if labelset.has(t) else -1 for t in label] if label is not None else -1
        else:
            index = labelset.index(label) if label is not None and labelset.has(label) else -1
        examples.append(Example(texts, index, lang, i, extra))
        langs[lang] = langs.get(lang, 0) + 1
    assert chosen is not None
    return Corpus(examples, chosen, labelset, digest.digests(), langs)


@dataclass
class Encoded:
    """Token ids per example (no padding), and token type ids when the tokenizer makes them."""

    ids: list[list[int]]
    types: list[list[int]] | None

    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def batch(self, rows: Sequence[int], *, pad_id: int) -> dict[str, Any]:
        return collate([self.ids[i] for i in rows], pad_id=pad_id,
                       type_ids=[self.types[i] for i in rows] if self.types is not None else None)


def tokenize(tokenizer: Any, texts: Sequence[tuple[Any, ...]], *, max_length: int, chunk: int = 1024) -> Any:
    """Tokenize single texts or text pairs in chunks, truncated to `max_length`, unpadded; lists of
    words (the tagging shape, `(words,)` per example) into an `xlt.tagging.encode.WordEncoded`."""
    if texts and isinstance(texts[0][0], list):
        from xlt.tagging.encode import encode_words

        return encode_words(tokenizer, [t[0] for t in texts], max_length=max_length, chunk=chunk)
    ids: list[list[int]] = []
    types: list[list[int]] | None = None
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        if len(part[0]) == 2:
            enc = tokenizer([t[0] for t in part], [t[1] for t in part], truncation=True,
                            max_length=max_length, padding=False)
        else:
            enc = tokenizer([t[0] for t in part], truncation=True, max_length=max_length, padding=False)
        ids.extend(enc["input_ids"])
        if "token_type_ids" in enc:
            types = (types or []) + list(enc["token_type_ids"])
    return Encoded(ids, types)


def length_grouped_batches(lengths: Sequence[int], *, batch_size: int, seed: int, group: int = 50) -> list[list[int]]:
    """Shuffled batches of similar length (little padding), deterministic for `seed`.

    Indices are shuffled, cut into mega-batches of `group` batches, each sorted by length and cut
    into batches; the batch order is shuffled again so lengths vary across steps.
    """
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], *, batch_size: int) -> list[list[int]]:
    """Inference batches sorted by length (longest first, so memory peaks early)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
