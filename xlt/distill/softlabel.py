"""`soft-label`: attach a teacher's logits and probabilities (and [CLS] hidden vectors) to records.

1:1 and streaming: records are read in chunks, each chunk run through the teacher batched and
length-sorted, and written in input order. The teacher reads each record's `src` view when
present (the teacher's language), else the record itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from xlt.errors import InputError, RecordError, UsageError
from xlt.records import Record, infer_fields, view

VIEWS = ("auto", "src", "self")


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
) -> Iterator[Record]:
    """Yield each record with a `teacher` key: logits, probs (softmax at `temperature`), the label
    names in column order, the temperature, the teacher's digest, and optionally `hidden`."""
    from xlt.infer import softmax

    if which not in VIEWS:
        raise UsageError(f"--view must be one of {', '.join(VIEWS)}, not {which!r}")
    if temperature <= 0:
        raise UsageError("--temperature must be > 0")
    chosen = fields or teacher.fields
    labels = teacher.labels.values
    digest = teacher.digest
    buf: list[Record] = []
    texts: list[tuple[str, ...]] = []

    def flush() -> Iterator[Record]:
        out = teacher.predict(texts, hidden=hidden)
        probs = softmax(out.logits, temperature)
        for i, rec in enumerate(buf):
            t: dict[str, Any] = {
                "logits": [round(float(x), digits) for x in out.logits[i]],
                "probs": [round(float(x), digits) for x in probs[i]],
                "labels": labels, "temperature": temperature, "model": digest,
            }
            if hidden:
                t["hidden"] = [round(float(x), digits) for x in out.hidden[i]]
            rec = dict(rec)
            rec["teacher"] = t
            yield rec
        buf.clear()
        texts.clear()

    for where, rec in located:
        try:
            if chosen is None:
                chosen = infer_fields(rec)  # the views share the record's text fields
            v = view(rec, chosen, which)
        except RecordError as exc:
            raise InputError(f"{where}: {exc}") from None
        buf.append(rec)
        texts.append(tuple(v[f] for f in chosen))
        if len(buf) >= chunk:
            yield from flush()
    if buf:
        yield from flush()
