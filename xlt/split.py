"""`split`: deterministic, key-hashed partition of records into parts of given shares.

Each record goes to the part its key hashes into: ``u = sha256(seed, key)`` read as a number in
[0, 1), and the parts own consecutive intervals of [0, 1) of their fractions' widths. The part
depends only on (seed, key), never on file, position or language, so:

- parallel files (same `id` in every language) split identically, file by file or all at once;
- records that share a key (a premise group from a meta file, a `src.premise`) never straddle
  two parts;
- adding or removing records does not move the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from xlt.errors import InputError, RecordError, UsageError
from xlt.io import STDIN, SkipReport, iter_located
from xlt.records import Record

#: Fractions must add up to 1 within this tolerance (0.2 + 0.7 + 0.1 is not exactly 1.0 in floats).
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Part:
    path: str
    fraction: float


@dataclass
class SplitReport:
    """Records written per part, in the order the parts were given."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def parse_parts(specs: Sequence[str]) -> list[Part]:
    """`["a.jsonl:0.2", "b.jsonl:0.8"]` -> parts; fractions in (0, 1] that add up to 1.

    The last colon separates the fraction, so paths with colons work. `-` is stdout (one part).
    """
    if len(specs) < 1:
        raise UsageError("give at least one --into PATH:FRACTION")
    parts: list[Part] = []
    for spec in specs:
        path, sep, frac_s = spec.rpartition(":")
        if not sep or not path:
            raise UsageError(f"--into takes PATH:FRACTION (e.g. train.jsonl:0.8), not {spec!r}")
        try:
            frac = float(frac_s)
        except ValueError:
            raise UsageError(f"--into {spec}: {frac_s!r} is not a number") from None
        if not math.isfinite(frac) or not 0 < frac <= 1:
            raise UsageError(f"--into {spec}: the fraction must be in (0, 1]")
        parts.append(Part(path, frac))
    paths = [p.path for p in parts]
    for p in set(paths):
        if paths.count(p) > 1:
            raise UsageError(f"--into names {p} twice")
    if paths.count(STDIN) > 1:
        raise UsageError("only one part can go to stdout (-)")
    total = sum(p.fraction for p in parts)
    if abs(total - 1.0) > TOLERANCE:
        listed = " + ".join(f"{p.fraction:g}" for p in parts)
        raise UsageError(f"the --into fractions must add up to 1, not {listed} = {total:g}")
    return parts


def get_path(record: Record, path: str) -> Any:
    """The value at a dotted path (`src.premise`); RecordError if any step is missing."""
    value: Any = record
    for i, step in enumerate(path.split(".")):
        if not isinstance(value, dict) or step not in value:
            where = ".".join(path.split(".")[: i + 1])
            raise RecordError(f'missing field "{where}"')
        value = value[step]
    return value


def key_text(value: Any, *, name: str) -> str:
    """The text that is hashed: strings as they are, numbers and other JSON values canonically."""
    if value is None:
        raise RecordError(f'field "{name}" is null')
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from (seed, key): the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def choose(u: float, bounds: Sequence[float]) -> int:
    """The index of the part whose interval holds `u` (bounds are the cumulative fractions)."""
    for i, b in enumerate(bounds):
        if u < b:
            return i
    return len(bounds) - 1  # u is below 1, the last bound is 1 up to rounding


def load_meta(path: str, *, by: str) -> dict[str, str]:
    """`id` -> key text from a JSONL meta file (e.g. XNLI's dev.meta.jsonl with `premise_group`).

    Held in memory (one entry per id). An id listed twice with different keys is an error.
    """
    table: dict[str, str] = {}

    def check(rec: Record) -> None:
        if "id" not in rec:
            raise RecordError('missing field "id"')
        key_text(get_path(rec, by), name=by)

    for where, rec in iter_located([path], validate=check):
        rid = str(rec["id"])
        value = key_text(get_path(rec, by), name=by)
        if table.get(rid, value) != value:
            raise InputError(f'{where}: id {rid!r} is listed again with a different "{by}"')
        table[rid] = value
    if not table:
        raise InputError(f"{path}: no records")
    return table


def keyed_records(
    sources: Sequence[str] | None,
    *,
    by: str = "id",
    meta: dict[str, str] | None = None,
    meta_name: str = "--meta",
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> Iterable[tuple[str, Record]]:
    """Stream ``(key, record)``: the key is the record's `by` field, or with `meta` the meta
    file's `by` value for the record's `id`."""
    def key_of(rec: Record) -> str:
        if meta is None:
            return key_text(get_path(rec, by), name=by)
        if "id" not in rec:
            raise RecordError('missing field "id" (needed to look the key up in the meta file)')
        if str(rec["id"]) not in meta:
            raise RecordError(f"id {str(rec['id'])!r} is not in {meta_name}")
        return meta[str(rec["id"])]

    # the key is computed twice per record (validation, then here): a dict lookup or a field read
    for _, rec in iter_located(sources, validate=key_of, on_error=on_error, skipped=skipped):
        yield key_of(rec), rec


def split_records(
    keyed: Iterable[tuple[str, Record]],
    outs: Sequence[Any],
    fractions: Sequence[float],
    *,
    seed: int = 0,
) -> list[int]:
    """Write each record to ``outs[i]`` (text streams) for the part its key hashes into; return
    the counts per part."""
    from xlt.io import dumps

    bounds: list[float] = []
    acc = 0.0
    for f in fractions:
        acc += f
        bounds.append(acc)
    bounds[-1] = 1.0
    counts = [0] * len(outs)
    for key, rec in keyed:
        i = choose(unit_hash(seed, key), bounds)
        outs[i].write(dumps(rec) + "\n")
        counts[i] += 1
    return counts


def check_by(by: str, *, name: str = "by") -> str:
    """`by` as a field name or dotted path, or a UsageError naming it `name` (the caller's
    spelling of the parameter)."""
    if not by or any(not s for s in by.split(".")):
        raise UsageError(f"{name} must be a field name or dotted path (src.premise), not {by!r}")
    return by


def split_stream(
    sources: Sequence[str] | None,
    outs: Mapping[str, IO[str]],
    *,
    parts: Sequence[Part],
    by: str = "id",
    meta: str | None = None,
    seed: int = 0,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> SplitReport:
    """Stream `sources` into `outs[part.path]` for the part each record's key hashes into (the
    key: the record's `by` field, or with `meta` that file's `by` value for the record's `id`)."""
    check_by(by)
    table = load_meta(meta, by=by) if meta else None
    keyed = keyed_records(sources, by=by, meta=table, meta_name=meta or "meta", on_error=on_error, skipped=skipped)
    counts = split_records(keyed, [outs[p.path] for p in parts], [p.fraction for p in parts], seed=seed)
    return SplitReport(counts={p.path: n for p, n in zip(parts, counts)})
