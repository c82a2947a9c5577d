"""`analyze`'s report: alignment per language, teacher-student distances and per-layer curves from
the collected representations of parallel records (metrics: `xlt.analyze.metrics`), and its
tables on stderr."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from xlt import log
from xlt.analyze.collect import Collected
from xlt.analyze.metrics import agreement, alignment, distances
from xlt.evaluate.metrics import round_metric as _round

#: Metrics of a language entry averaged over the languages that have parallel pairs.
AVERAGED = ("cosine", "cosine_random", "cosine_gap", "p_at_1_tgt_to_src", "p_at_1_src_to_tgt", "p_at_1", "agreement")
#: Per-layer metrics kept with --layer all.
LAYER_KEYS = ("cosine", "cosine_random", "cosine_gap", "p_at_1_tgt_to_src", "p_at_1_src_to_tgt", "p_at_1")
#: BERT-KLD's teacher-student groups: teacher right/wrong on the source view x student on the target view.
GROUPS = ("TRSR", "TRSW", "TWSR", "TWSW")


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _p_at_1(m: dict[str, Any]) -> float | None:
    if m["p_at_1_tgt_to_src"] is None or m["p_at_1_src_to_tgt"] is None:
        return None
    return (m["p_at_1_tgt_to_src"] + m["p_at_1_src_to_tgt"]) / 2


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _round(v) if isinstance(v, float) else v for k, v in d.items()}


def language_groups(col: Collected) -> dict[tuple[str, str], list[int]]:
    """Target items by (target language, source language), in first-seen order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (lang, src) in enumerate(zip(col.langs, col.source_of)):
        if col.is_source[i]:
            continue
        s_lang = col.langs[src] if src >= 0 else col.default_source
        groups.setdefault((lang, s_lang), []).append(i)
    return groups


def build_report(col: Collected, *, student: Any, teacher: Any = None, layers: Sequence[int | str],
                 main: int, last: int, by_layer: bool, classifier: bool, teacher_classifier: bool,
                 signature: dict[str, Any]) -> dict[str, Any]:
    """Per language: alignment of the target records with their source-language versions at the
    reported layer (`main`: a position in `layers`, the K layers of `col.vectors`), prediction
    agreement for a classifier, teacher-student distances at the final layer (`last`), and with
    `by_layer` one value per layer."""
    groups = language_groups(col)
    targets_per_lang: dict[str, int] = {}
    for lang, _ in groups:
        targets_per_lang[lang] = targets_per_lang.get(lang, 0) + 1
    source_items: dict[str, np.ndarray] = {}
    langs_out: dict[str, Any] = {}
    for (lang, s_lang), targets in groups.items():
        key = lang if targets_per_lang[lang] == 1 else f"{lang}<-{s_lang}"
        if s_lang not in source_items:
            source_items[s_lang] = np.array([i for i, (item_lang, is_src) in enumerate(zip(col.langs, col.is_source))
                                             if is_src and item_lang == s_lang], dtype=np.int64)
        sources = source_items[s_lang]
        tg = np.asarray(targets, dtype=np.int64)
        position = {int(item): k for k, item in enumerate(sources)}
        gold = np.array([position.get(int(col.source_of[i]), -1) for i in tg], dtype=np.int64)
        per_layer = [alignment(col.vectors[tg, k], col.vectors[sources, k], gold)
                     for k in (range(len(layers)) if by_layer else [main])]
        for m in per_layer:
            m["p_at_1"] = _p_at_1(m)
        m = per_layer[main if by_layer else 0]
        entry: dict[str, Any] = {"source": s_lang, "records": int(tg.size), "n": m["n"]}
        if m["n"] == 0:
            entry["note"] = (f"no parallel source record: no {s_lang} record shares an id with these"
                             if len(sources) else f"no parallel source record: the input has no {s_lang} records (--src)")
            langs_out[key] = entry
            continue
        if tg.size > m["n"]:
            entry["unpaired"] = int(tg.size - m["n"])
        entry.update(_rounded({k: m[k] for k in LAYER_KEYS}))
        entry["candidates"] = {"source": m["sources"], "target": m["targets"]}
        pt, ps = tg[gold >= 0], col.source_of[tg[gold >= 0]]
        if classifier:
            entry["agreement"] = _round(agreement(col.logits[pt], col.logits[ps]))
        if col.teacher_vectors is not None:
            entry["teacher"] = teacher_entry(col, pt, ps, last=last, student=student, teacher=teacher,
                                             classifiers=classifier and teacher_classifier)
        if by_layer:
            entry["by_layer"] = {"layer": list(layers),
                                 **{k: [_round(x[k]) for x in per_layer] for k in LAYER_KEYS}}
        langs_out[key] = entry
    return {
        "signature": signature,
        "source_languages": sorted({s for _, s in groups}),
        "languages": langs_out,
        "average": _average(langs_out),
        "items": {"targets": int(sum(1 for s in col.is_source if not s)), "sources": int(sum(col.is_source))},
    }


def _average(languages: dict[str, Any]) -> dict[str, Any]:
    """The mean of each metric over the languages with parallel pairs."""
    scored = [v for v in languages.values() if v["n"]]
    average: dict[str, Any] = {"languages": len(scored), "n": sum(v["n"] for v in scored)}
    average.update({k: _round(_mean(v.get(k) for v in scored)) for k in AVERAGED if any(k in v for v in scored)})
    if any("teacher" in v for v in scored):
        average["teacher"] = {k: _round(_mean(v["teacher"][k] for v in scored if "teacher" in v)) for k in ("kl", "l2")}
    return average


def teacher_entry(col: Collected, pt: np.ndarray, ps: np.ndarray, *, last: int, student: Any, teacher: Any,
                  classifiers: bool) -> dict[str, Any]:
    """BERT-KLD's distances between the teacher's vector of the source view and the student's of
    the target view; with two classifiers and gold labels, also by TRSR/TRSW/TWSR/TWSW (teacher
    right or wrong on the source view x student right or wrong on the target view)."""
    h_t = col.teacher_vectors[col.teacher_row[ps]]
    h_s = col.vectors[pt, last]
    entry = _rounded(distances(h_t, h_s))
    if not classifiers:
        return entry
    t_logits = col.teacher_logits[col.teacher_row[ps]]
    t_names = [teacher.labels.names[int(k)] for k in t_logits.argmax(axis=-1)]
    s_names = [student.labels.names[int(k)] for k in col.logits[pt].argmax(axis=-1)]
    entry["agreement"] = _round(float(np.mean([a == b for a, b in zip(t_names, s_names)])))
    from xlt.train.data import label_key

    rows: dict[str, list[int]] = {g: [] for g in GROUPS}
    for r, (t, s) in enumerate(zip(pt, ps)):
        gold = col.labels[t] if col.labels[t] is not None else col.labels[s]
        if gold is None:
            continue
        g = label_key(gold)
        rows[f"T{'R' if t_names[r] == g else 'W'}S{'R' if s_names[r] == g else 'W'}"].append(r)
    if any(rows.values()):
        entry["groups"] = {g: _rounded(distances(h_t[idx], h_s[idx])) for g, idx in rows.items()}
    return entry


def sample_points(n: int, *, max_points: int, seed: int) -> np.ndarray:
    """Which of n items the map shows: all of them, or `max_points` drawn without replacement,
    deterministically for `seed`, in input order."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def print_tables(report: dict[str, Any]) -> None:
    """The per-language table on stderr (the JSON report is the data)."""
    from rich.table import Table

    if log.state.quiet:
        return
    langs = report["languages"]
    has = {k: any(k in v for v in langs.values()) for k in ("agreement", "teacher")}
    from rich import box

    cols = ["lang", "src", "n", "cos", "random", "gap", "P@1 t>s", "P@1 s>t"]
    cols += (["agree"] if has["agreement"] else []) + (["KL T|S", "L2 T,S"] if has["teacher"] else [])
    sig = report["signature"]
    # compact: 11 columns fit 80 characters (stderr that is not a terminal)
    t = Table(title=f"xlt analyze {sig.get('model', '')} (layer {sig.get('layer')}): cosine with the source version, "
              "of random pairs, gap, retrieval P@1 target>source and source>target", title_justify="left",
              box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    for col in cols:
        t.add_column(col, justify="left" if col in ("lang", "src") else "right")

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    def cells(v: dict[str, Any]) -> list[str]:
        row = [num(v.get(k)) for k in ("cosine", "cosine_random", "cosine_gap", "p_at_1_tgt_to_src", "p_at_1_src_to_tgt")]
        if has["agreement"]:
            row.append(num(v.get("agreement")))
        if has["teacher"]:
            teach = v.get("teacher") or {}
            row += [num(teach.get("kl")), num(teach.get("l2"))]
        return row

    for lang, v in langs.items():
        t.add_row(lang, v["source"], str(v["n"]), *cells(v))
    avg = report["average"]
    if avg["languages"] > 1:
        t.add_row("avg", "", str(avg["n"]), *cells(avg), style="bold")
    log.console().print(t)
    layered = {lang: v["by_layer"] for lang, v in langs.items() if "by_layer" in v}
    if layered:
        # layers down, languages across: 12-24 layers x 14 languages still fit 80 columns
        lt = Table(title="by layer: P@1 (mean of both directions); cosine gaps in the report and PREFIX.layers.png",
                   title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
        lt.add_column("layer", justify="right")
        for lang in layered:
            lt.add_column(lang, justify="right")
        for k, layer in enumerate(next(iter(layered.values()))["layer"]):
            lt.add_row(str(layer), *["-" if v["p_at_1"][k] is None else f"{v['p_at_1'][k]:.2f}" for v in layered.values()])
        log.console().print(lt)
    for lang, v in langs.items():
        if v.get("note"):
            log.warn(f"{lang}: {v['note']}")
        elif v.get("unpaired"):
            log.warn(f"{lang}: {v['unpaired']} record(s) without a parallel source record (candidates for retrieval only)")


def print_summary(report: dict[str, Any]) -> None:
    """What `analyze` tells stderr once its outputs are written: the tables and the plot files."""
    print_tables(report)
    for path in report.get("plots", {}).get("files", []):
        log.info(f"wrote {path}")
