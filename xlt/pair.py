"""`pair`: build cross-lingual and parallel records from files of the same examples in several
languages, joined by `id`.

Memory holds the joined input (one entry per language and id); the output is generated lazily,
so `--all` over N languages (N*N times the input) streams.

Tagging records (`tokens` + `tags`) are refused: a cross-lingual pair needs two text fields, and
a `src` view of another language's words does not align word for word with the record's, so a
teacher's per-word outputs on it would fit no word (`refuse_tagging`). For target-language
tagging data a teacher can label, translate the source records (`xlt translate`) instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import log
from xlt.errors import InputError, UsageError
from xlt.io import SkipReport, iter_located
from xlt.records import Record, RecordError, check_id, check_lang, check_text, infer_fields, is_tagging

PASS_THROUGH_SKIP = ("id", "lang", "langs", "src", "label")


def refuse_tagging(where: str) -> None:
    """UsageError: `pair` does not take tagging records (`where`: FILE:LINE or the option)."""
    raise UsageError(f"{where}: pair takes sentence records, not tagging records (tokens + tags): their words do "
                     "not align across languages; use xlt translate for target-language tagging data")


@dataclass
class ParallelData:
    """Records by language and id, in first-seen order."""

    fields: tuple[str, ...]
    langs: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    by_lang: dict[str, dict[str, Record]] = field(default_factory=dict)

    def has(self, lang: str, rid: str) -> bool:
        return rid in self.by_lang.get(lang, {})


def check_label_from(label_from: str) -> None:
    """The side a cross-lingual pair takes its label from: premise or hypothesis."""
    if label_from not in ("premise", "hypothesis"):
        raise UsageError(f"--label-from must be premise or hypothesis, not {label_from!r}")


def load_parallel(
    sources: Sequence[str] | None,
    *,
    fields: tuple[str, ...] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> ParallelData:
    """Read parallel records (any number of files, each record with `id` and `lang`; tagging
    records are refused, see the module doc)."""
    if is_tagging(fields):
        refuse_tagging("--fields tagging")
    data: ParallelData | None = None
    seen_ids: set[str] = set()
    chosen = fields

    def validate(rec: Record) -> None:
        nonlocal chosen
        if chosen is None:
            chosen = infer_fields(rec)
        if is_tagging(chosen):
            return  # refused below, with the record's location, whatever --on-error says
        check_id(rec)
        check_lang(rec)
        check_text(rec, chosen)

    for where, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
        assert chosen is not None
        if is_tagging(chosen):
            refuse_tagging(where)
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
    #: How many records the chosen mode yields, known before the first one (for progress).
    total: int | None = None

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


def _labels_differ(records: Sequence[Record]) -> bool:
    # Equality, not a set: a label may be unhashable (a list or an object). Records without a
    # label do not disagree with anyone.
    labels = [r["label"] for r in records if "label" in r]
    return any(label != labels[0] for label in labels[1:])


def _extras(table: dict[str, Record], ids: Sequence[str], skip: frozenset[str]) -> dict[str, list[tuple[str, Any]]]:
    """Unknown keys of each record (they pass through), only for records that have any."""
    out = {}
    for rid in ids:
        items = [(k, v) for k, v in table[rid].items() if k not in skip]
        if items:
            out[rid] = items
    return out


def cross_pairs(
    data: ParallelData,
    combos: Sequence[tuple[str, str]],
    *,
    label_from: str = "premise",
    src: tuple[str, str] | None = None,
    report: PairReport,
) -> Iterator[Record]:
    """Premise (first field) from one language, hypothesis (second field) from another.

    With `src=(X, Y)` each record also gets the same example's X-Y pair as its `src` view (the
    teacher's view: BERT-KLD trains a student on pair A-B against a teacher on pair X-Y).

    `lang` is `P-H` (or just `P` when both are the same), `langs` gives each field's language,
    and the label comes from the `label_from` side (premise or hypothesis). Other keys of the
    premise-side record pass through. Only ids present in every language of `combos` are paired
    (the others are counted in `report.missing`); order: combos in the given order, then ids in
    input order. Options are checked and `report.total` set before the first record.
    """
    if len(data.fields) != 2:
        raise UsageError(f"cross-lingual pairs need a pair task (two text fields), not {','.join(data.fields)}")
    check_label_from(label_from)
    langs = list(dict.fromkeys(lang for combo in combos for lang in combo))
    _check_langs(data, langs, "--langs" if len(combos) > 1 else "--premise-lang/--hypothesis-lang")
    if src is not None:
        _check_langs(data, list(src), "--src")
        langs = list(dict.fromkeys([*langs, *src]))
    langs.sort(key=data.langs.index)
    ids = _common_ids(data, langs, report)
    for rid in ids:
        if _labels_differ([data.by_lang[lang][rid] for lang in langs]):
            report.label_conflicts.append(rid)
    report.total = len(ids) * len(combos)
    return _cross(data, list(combos), ids, label_from == "premise", report, src)


def _cross(data: ParallelData, combos: list[tuple[str, str]], ids: list[str], label_from_premise: bool,
           report: PairReport, src: tuple[str, str] | None = None) -> Iterator[Record]:
    f1, f2 = data.fields
    skip = frozenset(PASS_THROUGH_SKIP + (f1, f2))
    extras_of: tuple[str, dict[str, list[tuple[str, Any]]]] | None = None
    for p, h in combos:
        tp, th = data.by_lang[p], data.by_lang[h]
        if extras_of is None or extras_of[0] != p:  # combos run premise language by language
            extras_of = (p, _extras(tp, ids, skip))
        extras = extras_of[1]
        lang = p if p == h else f"{p}-{h}"
        for rid in ids:
            rp, rh = tp[rid], th[rid]
            out: Record = {"id": rid, "lang": lang, "langs": {f1: p, f2: h}, f1: rp[f1], f2: rh[f2]}
            source = rp if label_from_premise else rh
            if "label" in source:
                out["label"] = source["label"]
            if extras and rid in extras:
                out.update(extras[rid])
            if src is not None:
                sp, sh = src
                out["src"] = {"lang": sp if sp == sh else f"{sp}-{sh}", "langs": {f1: sp, f2: sh},
                              f1: data.by_lang[sp][rid][f1], f2: data.by_lang[sh][rid][f2]}
            report.written += 1
            yield out


def src_pairs(data: ParallelData, src: str, *, report: PairReport) -> Iterator[Record]:
    """Each non-source language's record with the source record as its `src` view.

    One record per id present in both the source and that language; ids missing on either side
    are counted in `report.missing`. Order: languages in input order, then ids in input order.
    Options are checked and `report.total` set before the first record.
    """
    _check_langs(data, [src], "--src")
    others = [lang for lang in data.langs if lang != src]
    if not others:
        raise UsageError(f"--src {src}: the input has no other language to pair with it")
    table = data.by_lang[src]
    plan: list[tuple[str, list[str]]] = []
    missing_src: dict[str, None] = {}
    conflicts: dict[str, None] = {}
    for lang in others:
        tl = data.by_lang[lang]
        ids = []
        for rid in data.ids:
            in_src, in_lang = rid in table, rid in tl
            if in_src and in_lang:
                ids.append(rid)
                if _labels_differ([table[rid], tl[rid]]):
                    conflicts[rid] = None
            elif in_src:
                report.missing.setdefault(lang, []).append(rid)
            elif in_lang:
                missing_src[rid] = None
        plan.append((lang, ids))
    if missing_src:
        report.missing.setdefault(src, []).extend(missing_src)
    report.label_conflicts.extend(rid for rid in conflicts if rid not in report.label_conflicts)
    report.total = sum(len(ids) for _, ids in plan)
    return _with_src(data, src, plan, report)


def _with_src(data: ParallelData, src: str, plan: list[tuple[str, list[str]]], report: PairReport) -> Iterator[Record]:
    table, fields = data.by_lang[src], data.fields
    for lang, ids in plan:
        tl = data.by_lang[lang]
        for rid in ids:
            s = table[rid]
            out = dict(tl[rid])
            out["id"] = rid
            out["src"] = {"lang": src, **{f: s[f] for f in fields}}
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
    """Dispatch on the mode (exactly one of: premise/hypothesis languages, all, src).

    `src` alone: each other language's record with the `src` language's record as its view.
    `src` with premise/hypothesis languages or --all: cross-lingual pairs whose `src` view is the
    same example as a `src` pair (`X` = X-X, or `X-Y`).

    Every option is checked before this returns (so a bad option never leaves a partial output)
    and `report.total` holds the number of records the iterator yields. Empty input (no records
    at all) yields nothing.
    """
    cross = premise_lang is not None or hypothesis_lang is not None
    modes = sum([cross, all_pairs]) + (src is not None and not (cross or all_pairs))
    if modes != 1:
        raise UsageError("choose one mode: --premise-lang X --hypothesis-lang Y, --all, or --src LANG")
    src_pair: tuple[str, str] | None = None
    if src is not None and (cross or all_pairs):
        parts = src.split("-")
        if len(parts) > 2 or not all(parts):
            raise UsageError(f"--src with cross-lingual pairs takes a language X or a pair X-Y, not {src!r}")
        src_pair = (parts[0], parts[-1])
    if langs is not None and not all_pairs:
        raise UsageError("--langs goes with --all")
    check_label_from(label_from)
    if not all_pairs and src is None and (premise_lang is None or hypothesis_lang is None):
        raise UsageError("--premise-lang and --hypothesis-lang go together")
    if langs is not None:
        if not langs:
            raise UsageError("--langs: give at least one language")
        dup = sorted({lang for lang in langs if list(langs).count(lang) > 1})
        if dup:
            raise UsageError(f"--langs names {', '.join(dup)} more than once")
    if not data.langs:  # empty input: nothing to pair, nothing to write
        report.total = 0
        return iter(())
    if src is not None and src_pair is None:
        return src_pairs(data, src, report=report)
    if all_pairs:
        chosen = list(langs) if langs else list(data.langs)
        _check_langs(data, chosen, "--langs")
        combos = [(p, h) for p in chosen for h in chosen]
    else:
        assert premise_lang is not None and hypothesis_lang is not None
        combos = [(premise_lang, hypothesis_lang)]
    return cross_pairs(data, combos, label_from=label_from, src=src_pair, report=report)


def log_report(report: PairReport) -> None:
    for line in report.lines():
        log.warn(line)
    log.info(f"wrote {report.written} record(s)")


__all__ = ["ParallelData", "PairReport", "load_parallel", "pair_records", "RecordError"]
