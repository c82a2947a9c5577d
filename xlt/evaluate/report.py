"""`report`: merge `xlt eval` reports of several systems into one side-by-side results table.

Input: named eval reports (the JSON of `xlt eval`, see `xlt.evaluate.scoring.build_report`).
Output: a machine-readable summary (per system: accuracy per language, averages, deltas against
a baseline system, the paired-bootstrap p-values the eval reports hold, the language-matrix
summary, and the seed / steps / training time from each model's checkpoint manifest) and a
markdown table for a RESULTS file.

Averages are recomputed over the languages shown (all languages any report scored, or
``langs``), the same mean of per-language accuracies that `eval` reports, so every row is
averaged over the same columns. p-values come from the eval reports as they are: a report made
with ``xlt eval --model SYSTEM --compare BASELINE`` carries a paired test against the baseline's
model (recognised by its model digest); they test the report's own language average, over all
the languages that eval scored. A row may have a baseline of its own (a second seed's pipeline
against the second seed's baseline), and mean rows average systems (one method's seeds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xlt import __version__, log
from xlt.errors import InputError, UsageError
from xlt.evaluate.metrics import round_metric as _round

#: Per-language cells whose paired test against the baseline has p below this get a `*`.
ALPHA = 0.05


@dataclass(frozen=True)
class NamedReport:
    """One system's eval report, or several merged (one per language, e.g. per-language models)."""

    name: str
    path: str
    report: dict[str, Any]
    parts: tuple[tuple[str, dict[str, Any]], ...] = ()


def parse_named(specs: Sequence[str]) -> list[tuple[str, str]]:
    """`["base=base.json", "adv=adv.json"]` -> [(name, path)]; names unique and non-empty.

    A path may list several reports separated by commas (`fr.json,de.json`): `load_named`
    merges them into one row."""
    if not specs:
        raise UsageError("give at least one NAME=REPORT.json")
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise UsageError(f"expected NAME=REPORT.json, not {spec!r}")
        if any(name == n for n, _ in out):
            raise UsageError(f"system name {name!r} is given twice")
        out.append((name, path))
    return out


def load_report(name: str, path: str) -> NamedReport:
    """Read one `xlt eval` JSON report (exit 2 with the file named when it is not one)."""
    from xlt.io import load_json

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    report = load_json(path, what="eval report")  # strict: NaN/Infinity are refused, naming the file
    if not isinstance(report, dict) or not isinstance(report.get("languages"), dict):
        raise InputError(f'{path}: not an xlt eval report (no "languages" object)')
    for lang, entry in report["languages"].items():
        acc = entry.get("accuracy") if isinstance(entry, dict) else None
        if isinstance(acc, bool) or not isinstance(acc, (int, float)):
            raise InputError(f'{path}: language "{lang}" has no numeric "accuracy"')
        if not 0.0 <= acc <= 1.0:
            raise InputError(f'{path}: language "{lang}": "accuracy" {acc} is not in [0, 1]')
    return NamedReport(name, path, report, parts=((path, report),))


def merge_reports(name: str, parts: Sequence[NamedReport]) -> NamedReport:
    """One row from several eval reports that score different languages (per-language models):
    their languages and per-language paired tests side by side. A language scored twice is an
    error; averages and their tests belong to one report, so a merged row has only per-language
    tests; the matrix is kept only from a single report."""
    if len(parts) == 1:
        return NamedReport(name, parts[0].path, parts[0].report, parts=parts[0].parts)
    languages: dict[str, Any] = {}
    compare: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for p in parts:
        for lang, entry in p.report["languages"].items():
            if lang in languages:
                raise InputError(f"{name}: {owner[lang]} and {p.path} both score language {lang!r}; "
                                 "a merged row takes each language from one report")
            languages[lang] = entry
            owner[lang] = p.path
        compare.update((p.report.get("compare") or {}).get("languages") or {})
    merged: dict[str, Any] = {
        "languages": languages,
        "source_languages": list(dict.fromkeys(x for p in parts for x in (p.report.get("source_languages") or []))),
        "merged_from": [p.path for p in parts],
    }
    if compare:
        merged["compare"] = {"languages": compare}
    return NamedReport(name, ",".join(p.path for p in parts), merged, parts=tuple(x for p in parts for x in p.parts))


def load_named(specs: Sequence[str]) -> list[NamedReport]:
    """Read every NAME=REPORT[,REPORT...] (see `parse_named`)."""
    out: list[NamedReport] = []
    for name, paths in parse_named(specs):
        files = [x for x in paths.split(",") if x]
        if not files:
            raise UsageError(f"{name}: no report file given")
        out.append(merge_reports(name, [load_report(name, f) for f in files]))
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def matrix_summary(matrix: dict[str, Any] | None) -> dict[str, Any] | None:
    """Mean accuracy of the same-language cells (diagonal) and of the cross-language cells of an
    eval report's premise x hypothesis matrix (the generalized cross-lingual setting)."""
    if not matrix or not matrix.get("accuracy"):
        return None
    same: list[float] = []
    cross: list[float] = []
    prem, hyp = matrix["premise_langs"], matrix["hypothesis_langs"]
    for i, row in enumerate(matrix["accuracy"]):
        for j, v in enumerate(row):
            if v is not None:
                (same if prem[i] == hyp[j] else cross).append(v)
    return {"same_language": _round(_mean(same)), "cross_language": _round(_mean(cross)),
            "all": _round(_mean(same + cross)), "cells": len(same) + len(cross)}


def training_info(report: NamedReport) -> dict[str, Any] | None:
    """Seed, steps, examples and training seconds that `xlt eval` recorded in each report's
    signature (summed over the models of a merged row; the seed when they share one). Only the
    named reports are read: never a path a report's contents name."""
    infos = [_one_training_info(report.name, path, rep) for path, rep in report.parts]
    if not infos or any(i is None for i in infos):
        return None
    if len(infos) == 1:
        return infos[0]
    seeds = {i.get("seed") for i in infos}

    def total(key: str) -> Any:
        values = [i.get(key) for i in infos]
        return None if any(v is None for v in values) else round(sum(values), 2)

    return {"checkpoints": [i["checkpoint"] for i in infos], "seed": seeds.pop() if len(seeds) == 1 else None,
            "steps": total("steps"), "examples_seen": total("examples_seen"), "train_seconds": total("train_seconds"),
            "models": infos}


def _one_training_info(name: str, report_path: str, report: dict[str, Any]) -> dict[str, Any] | None:
    """The training information one eval report carries (`signature.training`), with the model it
    names as `checkpoint`; None for a model xlt did not train or a report from before eval
    recorded it."""
    sig = report.get("signature") or {}
    training = sig.get("training")
    if "training" not in sig:
        log.debug(f"{name}: {report_path} has no training information (made by an older xlt eval); re-run eval for it")
    if not isinstance(training, dict):
        return None
    return {"checkpoint": sig.get("model"), **training}


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    da = (a.get("signature") or {}).get("data")
    db = (b.get("signature") or {}).get("data")
    if not da or not db:
        return None
    return sorted(da.values()) == sorted(db.values())


def summarize(
    reports: Sequence[NamedReport],
    *,
    baseline: str | None = None,
    pairs: Mapping[str, str] | None = None,
    means: Sequence[tuple[str, Sequence[str]]] = (),
    langs: Sequence[str] | None = None,
    source: Sequence[str] | None = None,
    with_training: bool = True,
) -> dict[str, Any]:
    """The side-by-side summary of `reports` (see the module docstring).

    `pairs` maps a system to its own baseline (e.g. a second seed's pipeline to the second seed's
    baseline): its deltas and p-values are against that system instead of `baseline`. `means` adds
    rows that average systems (e.g. the seeds of one method): mean accuracy per language, and the
    mean of the members' deltas when every member has one; a mean row has no paired test."""
    if not reports:
        raise UsageError("give at least one NAME=REPORT.json")
    names = [r.name for r in reports]
    if baseline is not None and baseline not in names:
        raise UsageError(f"--baseline {baseline!r} is not one of the systems ({', '.join(names)})")
    pairs = dict(pairs or {})
    if pairs and baseline is None:
        raise UsageError("--baseline SYSTEM=BASELINE needs the table's own baseline too (--baseline NAME)")
    for system, own in pairs.items():
        for x in (system, own):
            if x not in names:
                raise UsageError(f"--baseline {system}={own}: {x!r} is not one of the systems ({', '.join(names)})")
        if system == own or system == baseline:
            raise UsageError(f"--baseline {system}={own}: a system is not compared with itself, "
                             "and the table's baseline has no baseline")
    columns = _columns(reports, langs)
    by_name = {r.name: r for r in reports}
    base = by_name.get(baseline) if baseline is not None else None
    if source is None:
        source = list((base or reports[0]).report.get("source_languages") or [])
    non_source = [x for x in columns if x not in set(source)]

    def baseline_of(r: NamedReport) -> NamedReport | None:
        own = by_name.get(pairs.get(r.name, baseline or ""))
        return None if own is None or own is r else own

    systems = [_system(r, columns, non_source, baseline=baseline_of(r), with_training=with_training)
               for r in reports]
    for s, r in zip(systems, reports):
        own = baseline_of(r)
        if own is not None:
            _add_deltas(s, r, next(x for x in systems if x["name"] == own.name), own)
    for name, members in means:
        systems.append(_mean_row(name, members, systems, columns))
    out = {
        "xlt": __version__, "baseline": baseline, "pairs": pairs, "languages": columns,
        "source_languages": list(source), "non_source_languages": non_source, "alpha": ALPHA, "systems": systems,
    }
    out["verdicts"] = verdicts(out)
    return out


def parse_means(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`["xd mean=xd,xd-s2"]` -> [("xd mean", ["xd", "xd-s2"])]: two or more distinct systems each."""
    out: list[tuple[str, list[str]]] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        members = [x.strip() for x in rest.split(",") if x.strip()]
        if not sep or not name.strip() or len(members) < 2 or len(set(members)) != len(members):
            raise UsageError(f"--mean expects NAME=SYSTEM,SYSTEM[,...] (two or more different systems), not {spec!r}")
        out.append((name.strip(), members))
    return out


def parse_baselines(specs: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """`--baseline` values: one plain NAME (the table's baseline) and any SYSTEM=BASELINE pairs."""
    plain = [x.strip() for x in specs if "=" not in x]
    if len(plain) > 1:
        raise UsageError(f"--baseline NAME is given {len(plain)} times ({', '.join(plain)}); "
                         "give one, and SYSTEM=BASELINE for a row with its own")
    pairs: dict[str, str] = {}
    for spec in specs:
        if "=" in spec:
            system, _, own = (x.strip() for x in spec.partition("="))
            if not system or not own or system in pairs:
                raise UsageError(f"--baseline expects NAME or SYSTEM=BASELINE (each system once), not {spec!r}")
            pairs[system] = own
    return (plain[0] if plain else None), pairs


def _mean_row(name: str, members: Sequence[str], systems: Sequence[dict[str, Any]],
              columns: Sequence[str]) -> dict[str, Any]:
    """A row averaging `members` (rows already built): per language, the averages and the deltas
    (each member's against its own baseline; None unless every member has one)."""
    rows = {s["name"]: s for s in systems}
    if name in rows:
        raise UsageError(f"--mean {name}: the name is already a system's")
    for m in members:
        if m not in rows or rows[m].get("mean_of"):
            raise UsageError(f"--mean {name}: {m!r} is not one of the systems ({', '.join(rows)})")
    picked = [rows[m] for m in members]

    def mean_of(values: Sequence[float | None]) -> float | None:
        return None if any(v is None for v in values) else _round(_mean(list(values)))  # type: ignore[arg-type]

    per: dict[str, Any] = {}
    for lang in columns:
        cells = [s["languages"].get(lang) for s in picked]
        if any(c is None for c in cells):
            per[lang] = None
            continue
        per[lang] = {"accuracy": mean_of([c["accuracy"] for c in cells]), "delta": mean_of([c.get("delta") for c in cells])}
    row: dict[str, Any] = {"name": name, "mean_of": list(members), "languages": per,
                           "baseline": "/".join(dict.fromkeys(s["baseline"] for s in picked if s.get("baseline"))) or None}
    for key in ("average", "average_non_source"):
        row[key] = mean_of([s[key] for s in picked])
        row[f"delta_{key}"] = mean_of([s.get(f"delta_{key}") for s in picked])
        row[f"p_value_{key}"] = None
    trainings = [s.get("training") or {} for s in picked]
    steps = {t.get("steps") for t in trainings}
    if any("training" in s for s in picked):
        row["training"] = {"seeds": [t.get("seed") for t in trainings], "seed": None,
                           "steps": steps.pop() if len(steps) == 1 else None,
                           "train_seconds": mean_of([t.get("train_seconds") for t in trainings])}
    return row


def _columns(reports: Sequence[NamedReport], langs: Sequence[str] | None) -> list[str]:
    """The table's language columns: `langs` (each scored by some report), else every one scored."""
    seen: list[str] = []
    for r in reports:
        for lang in r.report["languages"]:
            if lang not in seen:
                seen.append(lang)
    if not langs:
        return seen
    missing = [x for x in langs if x not in seen]
    if missing:
        raise UsageError(f"--langs: no report scored {', '.join(missing)} (they have {', '.join(seen)})")
    return list(dict.fromkeys(langs))


def _system(r: NamedReport, columns: Sequence[str], non_source: Sequence[str], *, baseline: NamedReport | None,
            with_training: bool) -> dict[str, Any]:
    """One system's row: accuracy per column, averages, its matrix, its paired test, its training.
    `baseline` is the row's own baseline (None for the table's baseline itself)."""
    rep = r.report
    sig = rep.get("signature") or {}
    per: dict[str, Any] = {}
    for lang in columns:
        e = rep["languages"].get(lang)
        per[lang] = None if e is None else {"accuracy": e["accuracy"], "macro_f1": e.get("macro_f1"), "n": e.get("n"),
                                            "ci95": _interval(e.get("ci95"))}
    accs = {k: v["accuracy"] for k, v in per.items() if v is not None}
    complete = len(accs) == len(columns)
    system: dict[str, Any] = {
        "name": r.name, "report": r.path, "model": sig.get("model"), "model_digest": sig.get("model_digest"),
        "baseline": baseline.name if baseline is not None else None,
        "languages": per,
        # An average over fewer columns than the others' would not compare: None when a column is missing.
        "average": _round(_mean(list(accs.values()))) if complete else None,
        "average_non_source": _round(_mean([accs[k] for k in non_source])) if complete and non_source else None,
        "matrix": matrix_summary(rep.get("matrix")),
    }
    comp = rep.get("compare")
    base_digest = ((baseline.report.get("signature") or {}).get("model_digest")) if baseline is not None else None
    vs_baseline = bool(comp) and base_digest is not None and sig.get("compare_model_digest") == base_digest
    if comp:
        system["compare"] = {"model": sig.get("compare_model"), "model_digest": sig.get("compare_model_digest"),
                             "is_baseline": vs_baseline, "samples": comp.get("samples"),
                             "average": comp.get("average"), "average_non_source": comp.get("average_non_source")}
    if with_training:
        system["training"] = training_info(r)
    return system


def _add_deltas(s: dict[str, Any], r: NamedReport, b: dict[str, Any], base: NamedReport) -> None:
    """Row `s`'s deltas against its baseline's row `b`, and the p-values of the paired tests that
    eval made against that baseline's model (none from a test against another model)."""
    comp = (r.report.get("compare") or {}) if s.get("compare", {}).get("is_baseline") else {}
    for lang, cell in s["languages"].items():
        bcell = b["languages"].get(lang)
        if cell is None:
            continue
        cell["delta"] = _round(cell["accuracy"] - bcell["accuracy"]) if bcell else None
        test = (comp.get("languages") or {}).get(lang)
        if test:
            cell["p_value"] = test.get("p_value")
    for key in ("average", "average_non_source"):
        s[f"delta_{key}"] = _round(s[key] - b[key]) if s[key] is not None and b[key] is not None else None
        s[f"p_value_{key}"] = (comp.get(key) or {}).get("p_value") if comp else None
    same = _same_data(r.report, base.report)
    s["same_data_as_baseline"] = same
    if same is False:
        log.warn(f"{r.name} and its baseline {base.name} were scored on different data "
                 f"({r.path} vs {base.path}): their deltas compare different records")


def _interval(value: Any) -> list[float] | None:
    """A report's 95 % interval [lo, hi] when it is two numbers, else None."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return [float(value[0]), float(value[1])]
    return None


def verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """For each system against the baseline: better, worse or not significantly different, by the
    paired test of the non-source average (else the average) that eval ran (`--compare`), at
    `alpha`; without such a test the verdict says there is none rather than guess from the means."""
    base = summary["baseline"]
    if base is None:
        return []
    out = []
    for s in summary["systems"]:
        if s.get("baseline") is None or s.get("mean_of"):
            continue
        key = "average_non_source" if s.get("p_value_average_non_source") is not None else "average"
        delta, p = s.get(f"delta_{key}"), s.get(f"p_value_{key}")
        if p is None or delta is None:
            verdict = "untested"
        elif p < summary["alpha"]:
            verdict = "better" if delta > 0 else "worse"
        else:
            verdict = "no significant difference"
        out.append({"system": s["name"], "baseline": s["baseline"], "over": key, "delta": delta, "p_value": p, "verdict": verdict})
    return out


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for v in summary.get("verdicts") or []:
        over = "non-source average" if v["over"] == "average_non_source" else "average"
        if v["verdict"] == "untested":
            lines.append(f"- {v['system']} vs {v['baseline']}: {_signed(v['delta'])} points on the {over}, "
                         f"no paired test (xlt eval --compare {v['baseline']}'s model): no verdict.")
            continue
        text = {"better": f"**beats** {v['baseline']}", "worse": f"is **worse** than {v['baseline']}",
                "no significant difference": f"is not significantly different from {v['baseline']}"}[v["verdict"]]
        lines.append(f"- {v['system']} {text}: {_signed(v['delta'])} points on the {over} "
                     f"(paired bootstrap p {_p_relation(v['p_value'])}).")
    return lines


def _p_relation(x: float) -> str:
    """`= 0.012`, or `< 0.001` (never `= <0.001`)."""
    p = _p(x)
    return f"< {p[1:]}" if p.startswith("<") else f"= {p}"


def plot_summary(summary: dict[str, Any], path: str, *, title: str | None = None) -> None:
    """A PNG bar chart: accuracy per language (and the averages), one bar per system, with the
    reports' 95 % bootstrap intervals as error bars where eval computed them (`--bootstrap`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = summary["systems"]
    groups = list(summary["languages"]) + ["avg"] + (["avg non-src"] if summary["source_languages"]
                                                     and summary["non_source_languages"] else [])
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) * max(len(systems), 1) + 2), 4.2))
    x = np.arange(len(groups))
    for k, s in enumerate(systems):
        values, lo, hi = [], [], []
        for g in groups:
            if g == "avg":
                acc, ci = s["average"], None
            elif g == "avg non-src":
                acc, ci = s["average_non_source"], None
            else:
                cell = s["languages"].get(g) or {}
                acc, ci = cell.get("accuracy"), cell.get("ci95")
            values.append(np.nan if acc is None else 100 * acc)
            lo.append(np.nan if acc is None or ci is None else 100 * (acc - ci[0]))
            hi.append(np.nan if acc is None or ci is None else 100 * (ci[1] - acc))
        name = s["name"] + (" (baseline)" if s["name"] == summary["baseline"] else "")
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, values, width, label=name,
               yerr=np.array([lo, hi]) if np.isfinite(lo).any() else None, capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, groups)
    ax.set_ylabel("accuracy (%)")
    finite = [100 * v for s in systems for v in [*(c["accuracy"] for c in s["languages"].values() if c), s["average"]]
              if v is not None]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 8))
    ax.axvline(len(summary["languages"]) - 0.5, color="grey", linewidth=0.6, linestyle=":")
    ax.set_title(title or "accuracy per language" + (" (error bars: 95 % bootstrap intervals)" if any(
        (c or {}).get("ci95") for s in systems for c in s["languages"].values()) else ""), fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(systems), 4), loc="upper right")
    ax.grid(axis="y", linewidth=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    finally:
        plt.close(fig)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f}"


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.2f}h"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(summary: dict[str, Any], *, title: str | None = None) -> str:
    """A GitHub-markdown table (accuracy %, one row per system) with a legend."""
    has_base = summary["baseline"] is not None
    has_non_source = bool(summary["non_source_languages"]) and bool(summary["source_languages"])
    has_matrix = any(s.get("matrix") for s in summary["systems"])
    has_p = any(s.get("p_value_average") is not None for s in summary["systems"])
    has_training = any(s.get("training") for s in summary["systems"])
    # a "vs" column when some row has a baseline of its own (--baseline SYSTEM=BASELINE) or is a mean
    has_vs = has_base and any(s.get("baseline") not in (None, summary["baseline"]) for s in summary["systems"])
    head = ["system", *summary["languages"], "avg"]
    if has_non_source:
        head.append("avg non-src")
    if has_base:
        head.append("Δ avg")
        if has_non_source:
            head.append("Δ non-src")
        if has_vs:
            head.append("vs")
    if has_p:
        head.append("p")
    if has_matrix:
        head += ["same-lang", "cross-lang"]
    if has_training:
        head += ["seed", "steps", "train time"]
    lines: list[str] = []
    if title:
        lines += [f"### {_cell(title)}", ""]
    lines.append("| " + " | ".join(_cell(h) for h in head) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|")
    for s in summary["systems"]:
        row = [s["name"] + (" (baseline)" if s["name"] == summary["baseline"] else "")]
        for lang in summary["languages"]:
            cell = s["languages"].get(lang)
            if cell is None:
                row.append("–")
                continue
            mark = "*" if cell.get("p_value") is not None and cell["p_value"] < summary["alpha"] else ""
            row.append(_pct(cell["accuracy"]) + mark)
        row.append(_pct(s["average"]))
        if has_non_source:
            row.append(_pct(s["average_non_source"]))
        if has_base:
            is_base = s["name"] == summary["baseline"]
            row.append("" if is_base else _signed(s.get("delta_average")))
            if has_non_source:
                row.append("" if is_base else _signed(s.get("delta_average_non_source")))
            if has_vs:
                row.append(s.get("baseline") or "")
        if has_p:
            row.append(_p(s.get("p_value_average")) if s["name"] != summary["baseline"] else "")
        if has_matrix:
            m = s.get("matrix") or {}
            row += [_pct(m.get("same_language")), _pct(m.get("cross_language"))]
        if has_training:
            t = s.get("training") or {}
            seed = "/".join("–" if x is None else str(x) for x in t["seeds"]) if t.get("seeds") else \
                "–" if t.get("seed") is None else str(t["seed"])
            row += [seed,
                    "–" if t.get("steps") is None else str(t["steps"]), _duration(t.get("train_seconds"))]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    legend = ["", "Accuracy (%) per language; avg: mean over the languages shown."]
    if has_non_source:
        legend.append(f"avg non-src: mean over the languages shown other than {', '.join(summary['source_languages'])}.")
    if has_base:
        legend.append(f"Δ: difference to the baseline {summary['baseline']} in accuracy points"
                      + (" (to the row's own baseline where `vs` names one)." if has_vs else "."))
    means = [s for s in summary["systems"] if s.get("mean_of")]
    if means:
        legend.append("Mean rows (" + ", ".join(f"{s['name']} = {' + '.join(s['mean_of'])}" for s in means)
                      + "): mean accuracy per language; Δ the mean of the members' Δ (each against its own "
                      "baseline); no paired test; train time the mean.")
    if has_p:
        legend.append("p: paired bootstrap test against the baseline of the language average over every language "
                      f"that eval scored (xlt eval --compare), against the row's baseline; * marks a language where p < {summary['alpha']}.")
    if has_matrix:
        legend.append("same-lang / cross-lang: mean accuracy of the premise x hypothesis matrix cells with the same / "
                      "different languages (xlt eval --matrix).")
    if has_training:
        legend.append("seed, steps, train time: as xlt eval recorded them in each report's signature, from the "
                      "checkpoint's xlt.json.")
    lines += legend
    verdict = verdict_lines(summary)
    if verdict:
        lines += ["", *verdict]
    return "\n".join(lines) + "\n"


def build_summary(
    reports: Sequence[NamedReport],
    *,
    baseline: str | None = None,
    pairs: Mapping[str, str] | None = None,
    means: Sequence[tuple[str, Sequence[str]]] = (),
    langs: Sequence[str] | None = None,
    source: Sequence[str] | None = None,
    title: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The summary (JSON-ready, with `title` when given) and its markdown table."""
    summary = summarize(reports, baseline=baseline, pairs=pairs, means=means, langs=langs, source=source)
    if title:
        summary["title"] = title
    return summary, to_markdown(summary, title=title)
