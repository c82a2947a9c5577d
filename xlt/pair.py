"""`pair`: build cross-lingual and parallel records from files of the same examples in several
languages, joined by `id`.

Memory holds the joined input (one entry per language and id); the output is generated lazily,
so `--all` over N languages (N*N times the input) streams.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import log
from xlt.errors import InputError, UsageError
from xlt.io import SkipReport, iter_located
from xlt.records import Record, RecordError, check_id, check_lang, check_text, infer_fields

PASS_THROUGH_SKIP = ("id", "lang", "langs", "src", "label")


@dataclass
class ParallelData:
    """Records by language and id, in first-seen order."""

    fields: tuple[str, ...]
    langs: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    by_lang: dict[str, dict[str, Record]] = field(default_factory=dict)

    def has(self, lang: str, rid: str) -> bool:
        return rid in self.by_lang.get(lang, {})


def load_parallel(
    sources: Sequence[str] | None,
    *,
    fields: tuple[str, ...] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> ParallelData:
    """Read parallel records (any number of files, each record with `id` and `lang`)."""
    data: ParallelData | None = None
    seen_ids: set[str] = set()
    chosen = fields

    def validate(rec: Record) -> None:
        nonlocal chosen
        check_id(rec)
        check_lang(rec)
        if chosen is None:
            chosen = infer_fields(rec)
        check_text(rec, chosen)

    for where, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
        assert chosen is not None
        if data is None:
            data = ParallelData(fields=chosen)
        rid, lang = str(rec["id"]), rec["lang"]
        table = data.by_lang.get(lang)
        if table is None:
            table = data.by_lang[lang] = {}
            data.langs.append(lang)
        if rid in table:
            msg = f'duplicate id "{rid}" for language "{lang}"'
            if on_error == "skip" and skipped is not None:
                skipped.add(where, msg)
                continue
            raise InputError(f"{where}: {msg}")
        table[rid] = rec
        if rid not in seen_ids:
            seen_ids.add(rid)
            data.ids.append(rid)
    return data or ParallelData(fields=chosen or ())


@dataclass
class PairReport:
    """What `pair` dropped or noticed, reported on stderr at the end."""

    missing: dict[str, list[str]] = field(default_factory=dict)  # lang -> ids missing there
    label_conflicts: list[str] = field(default_factory=list)
    written: int = 0

    def lines(self) -> list[str]:
        out = []
        for lang, ids in self.missing.items():
            examples = ", ".join(ids[:5])
            out.append(f"{len(ids)} id(s) missing in language {lang}, skipped (e.g. {examples})")
        if self.label_conflicts:
            examples = ", ".join(self.label_conflicts[:5])
            out.append(f"{len(self.label_conflicts)} id(s) with different labels across languages (e.g. {examples})")
        return out


def _check_langs(data: ParallelData, langs: Sequence[str], option: str) -> None:
    for lang in langs:
        if lang not in data.by_lang:
            have = ", ".join(data.langs) or "none"
            raise UsageError(f"{option}: no records in language {lang!r} (input has: {have})")


def _common_ids(data: ParallelData, langs: Sequence[str], report: PairReport) -> list[str]:
    ids = []
    for rid in data.ids:
        absent = [lang for lang in langs if not data.has(lang, rid)]
        if absent:
            for lang in absent:
                report.missing.setdefault(lang, []).append(rid)
            continue
        ids.append(rid)
    return ids


def _carry(rec: Record) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in PASS_THROUGH_SKIP}


def cross_pairs(
    data: ParallelData,
    combos: Sequence[tuple[str, str]],
    *,
    label_from: str = "premise",
    report: PairReport,
) -> Iterator[Record]:
    """Premise (first field) from one language, hypothesis (second field) from another.

    `lang` is `P-H` (or just `P` when both are the same), `langs` gives each field's language,
    and the label comes from the `label_from` side (premise or hypothesis).
    """
    if len(data.fields) != 2:
        raise UsageError(f"cross-lingual pairs need a pair task (two text fields), not {','.join(data.fields)}")
    if label_from not in ("premise", "hypothesis"):
        raise UsageError(f"--label-from must be premise or hypothesis, not {label_from!r}")
    f1, f2 = data.fields
    langs = sorted({lang for combo in combos for lang in combo}, key=data.langs.index)
    ids = _common_ids(data, langs, report)
    conflicts = report.label_conflicts
    for rid in ids:
        labels = {data.by_lang[lang][rid].get("label") for lang in langs}
        if len(labels) > 1:
            conflicts.append(rid)
    for p, h in combos:
        tp, th = data.by_lang[p], data.by_lang[h]
        for rid in ids:
            rp, rh = tp[rid], th[rid]
            out: Record = {"id": rid, "lang": p if p == h else f"{p}-{h}", "langs": {f1: p, f2: h}}
            out[f1] = rp[f1]
            out[f2] = rh[f2]
            source = rp if label_from == "premise" else rh
            if "label" in source:
                out["label"] = source["label"]
            for k, v in _carry(rp).items():
                if k not in out:
                    out[k] = v
            report.written += 1
            yield out


def src_pairs(data: ParallelData, src: str, *, report: PairReport) -> Iterator[Record]:
    """Each non-source language's record with the source record as its `src` view."""
    _check_langs(data, [src], "--src")
    others = [lang for lang in data.langs if lang != src]
    if not others:
        raise UsageError(f"--src {src}: the input has no other language to pair with it")
    table = data.by_lang[src]
    for lang in others:
        for rid, rec in data.by_lang[lang].items():
            if rid not in table:
                report.missing.setdefault(src, []).append(rid)
                continue
            s = table[rid]
            if s.get("label") != rec.get("label") and "label" in s and "label" in rec:
                report.label_conflicts.append(rid)
            out = dict(rec)
            out["src"] = {"lang": src, **{f: s[f] for f in data.fields}}
            report.written += 1
            yield out


def pair_records(
    data: ParallelData,
    *,
    premise_lang: str | None = None,
    hypothesis_lang: str | None = None,
    all_pairs: bool = False,
    langs: Sequence[str] | None = None,
    src: str | None = None,
    label_from: str = "premise",
    report: PairReport,
) -> Iterator[Record]:
    """Dispatch on the mode (exactly one of: premise/hypothesis languages, all, src)."""
    modes = sum([premise_lang is not None or hypothesis_lang is not None, all_pairs, src is not None])
    if modes != 1:
        raise UsageError("choose one mode: --premise-lang X --hypothesis-lang Y, --all, or --src LANG")
    if src is not None:
        return src_pairs(data, src, report=report)
    if all_pairs:
        chosen = list(langs) if langs else list(data.langs)
        _check_langs(data, chosen, "--langs")
        combos = [(p, h) for p in chosen for h in chosen]
    else:
        if premise_lang is None or hypothesis_lang is None:
            raise UsageError("--premise-lang and --hypothesis-lang go together")
        _check_langs(data, [premise_lang, hypothesis_lang], "--premise-lang/--hypothesis-lang")
        combos = [(premise_lang, hypothesis_lang)]
    return cross_pairs(data, combos, label_from=label_from, report=report)


def log_report(report: PairReport) -> None:
    for line in report.lines():
        log.warn(line)
    log.info(f"wrote {report.written} record(s)")


__all__ = ["ParallelData", "PairReport", "load_parallel", "pair_records", "RecordError"]
