"""`eval` of a tagger (`Classifier.tagging`): the report and the tables of tagging records (`tokens` + `tags`).

Token accuracy per language, word-level macro-F1 over tags, entity spans when the tag set is BIO / IOB2,
a per-tag table, averages over languages, and intervals and paired tests that resample sentences
(metrics in xlt.tagging.metrics). `xlt.evaluate.scoring` runs the models and calls `build_tagging_report`
and `print_tagging_tables` for a tagger's `Scored`; the report has the shape of `build_report`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xlt import log
from xlt.evaluate.metrics import bootstrap_ci, macro_f1, paired_bootstrap
from xlt.evaluate.metrics import round_metric as _round
from xlt.evaluate.scored import Scored, pct
from xlt.tagging.metrics import UNCOVERED, SentenceCounts, entity_report, is_bio, sentence_counts, tag_table

if TYPE_CHECKING:
    from rich.table import Table

_PRF = ("precision", "recall", "f1")


@dataclass
class TaggedRows:
    """What the parts of a tagger's report share: the scored records, their tag names, whether the
    tag set is BIO (`entities`), the labelled records (`labelled`, and per language in first-seen
    order `rows_by_lang`) and the bootstrap settings (`bootstrap` 0: no intervals)."""

    scored: Scored
    names: list[str]
    entities: bool
    bootstrap: int
    seed: int
    rows_by_lang: dict[str, list[int]]
    labelled: list[int]

    @classmethod
    def of(cls, scored: Scored, *, labels: Any, bootstrap: int, seed: int) -> TaggedRows:
        rows_by_lang: dict[str, list[int]] = {}
        for i, (lang, g) in enumerate(zip(scored.langs, scored.gold)):
            if g is not None:
                rows_by_lang.setdefault(lang, []).append(i)
        labelled = [i for i, g in enumerate(scored.gold) if g is not None]
        return cls(scored, labels.names, is_bio(labels.values), bootstrap, seed, rows_by_lang, labelled)

    @property
    def samples(self) -> int:
        """Resamples of a paired test (intervals are drawn only with `bootstrap`)."""
        return self.bootstrap or 1000

    def counts(self, rows: Sequence[int], model: int = 0) -> SentenceCounts:
        """Per-sentence counts of model `model`'s predictions on records `rows`."""
        preds = self.scored.preds[model]
        return sentence_counts([self.scored.gold[i] for i in rows], [preds[i] for i in rows], self.names,
                               entities=self.entities)


def build_tagging_report(
    scored: Scored,
    *,
    labels: Any,
    source_langs: Sequence[str],
    bootstrap: int = 0,
    seed: int = 0,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """A tagger's report, shaped like `build_report`'s: per language token accuracy (`n` words,
    `sentences`), word-level macro-F1 over tags, with a BIO / IOB2 tag set entity span precision /
    recall / F1 (`entity`); averages over languages; `overall` (micro, with entity scores per type)
    and the per-tag table `tags`. Intervals and paired tests resample sentences (token accuracy as
    correct words / words, entity F1 as 2 x correct / (predicted + gold spans) of the sentences
    drawn). Uncovered words (past the max length) are wrong; `uncovered` counts them."""
    t = TaggedRows.of(scored, labels=labels, bootstrap=bootstrap, seed=seed)
    by_lang = {lang: t.counts(rows) for lang, rows in t.rows_by_lang.items()}
    langs_out = {lang: _language_entry(t, lang, c) for lang, c in by_lang.items()}
    all_langs = list(langs_out)
    non_source = [k for k in all_langs if k not in set(source_langs)]
    report: dict[str, Any] = {
        "signature": signature,
        "task": "tagging",
        "scheme": "BIO" if t.entities else None,
        "languages": langs_out,
        "average": _average(langs_out, all_langs, entities=t.entities),
        "average_non_source": _average(langs_out, non_source, entities=t.entities) if source_langs else None,
        "source_languages": list(source_langs),
        "overall": _overall(t),
        "tags": _tag_scores(t),
        "unlabelled": scored.unlabelled,
        "uncovered": sum(langs_out[k].get("uncovered", 0) for k in all_langs),
    }
    if len(scored.preds) > 1:
        report["compare"] = _compare(t, by_lang, all_langs, non_source if source_langs else [])
    return report


def _language_entry(t: TaggedRows, lang: str, c: SentenceCounts) -> dict[str, Any]:
    """One language's scores: `c` is the counts of model A on the language's labelled records."""
    rows = t.rows_by_lang[lang]
    gold, pa = t.scored.gold, t.scored.preds[0]
    entry: dict[str, Any] = {"n": int(c.words.sum()), "sentences": len(rows), "accuracy": _round(c.accuracy()),
                             "macro_f1": _round(macro_f1(_flat(gold, rows), _flat(pa, rows), len(t.names)))}
    if t.bootstrap:
        lo, hi = bootstrap_ci(c.correct, totals=c.words, samples=t.bootstrap, seed=t.seed)
        entry["ci95"] = [_round(lo), _round(hi)]
    if t.entities:
        entry["entity"] = _entity_entry(t, c)
    uncovered = sum(p.count(UNCOVERED) for p in (pa[i] for i in rows))
    if uncovered:
        entry["uncovered"] = uncovered
    if t.scored.unlabelled_by_lang.get(lang):
        entry["unlabelled"] = t.scored.unlabelled_by_lang[lang]
    return entry


def _flat(values: Sequence[Any], rows: Sequence[int]) -> list[int]:
    return [tag for i in rows for tag in values[i]]


def _entity_entry(t: TaggedRows, c: SentenceCounts) -> dict[str, Any]:
    """Entity span precision / recall / F1 of counts `c`, with an interval of F1 under `bootstrap`."""
    assert c.spans is not None
    out: dict[str, Any] = {k: _round(v) for k, v in c.spans.scores().items()}
    if t.bootstrap:
        num, den = c.f1_units()
        lo, hi = bootstrap_ci(num, totals=den, samples=t.bootstrap, seed=t.seed)
        out["ci95"] = [_round(lo), _round(hi)]
    return out


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return _round(sum(values) / len(values)) if values else None


def _average(langs_out: dict[str, Any], keys: list[str], *, entities: bool) -> dict[str, Any] | None:
    """The macro average over languages `keys` (None without any), counts summed."""
    if not keys:
        return None
    out = {"languages": len(keys), "n": sum(langs_out[k]["n"] for k in keys),
           "sentences": sum(langs_out[k]["sentences"] for k in keys),
           "accuracy": _mean([langs_out[k]["accuracy"] for k in keys]),
           "macro_f1": _mean([langs_out[k]["macro_f1"] for k in keys])}
    if entities:
        out["entity"] = {m: _mean([langs_out[k]["entity"][m] for k in keys]) for m in _PRF}
    return out


def _overall(t: TaggedRows) -> dict[str, Any]:
    """Micro scores over every labelled record, with entity scores per entity type."""
    c = t.counts(t.labelled)
    overall: dict[str, Any] = {"n": int(c.words.sum()), "sentences": len(t.labelled), "accuracy": _round(c.accuracy())}
    if t.entities:
        assert c.spans is not None
        spans = entity_report(c.spans)
        overall["entity"] = {"precision": _round(spans["precision"]), "recall": _round(spans["recall"]),
                             "f1": _round(spans["f1"]), "types": _scores_with_support(spans["types"])}
    return overall


def _tag_scores(t: TaggedRows) -> dict[str, Any]:
    """Word-level precision / recall / F1 / support per tag over every labelled record."""
    gold, pa = t.scored.gold, t.scored.preds[0]
    return _scores_with_support(tag_table([gold[i] for i in t.labelled], [pa[i] for i in t.labelled], t.names))


def _scores_with_support(table: dict[str, Any]) -> dict[str, Any]:
    return {name: {**{k: _round(v[k]) for k in _PRF}, "support": v["support"]} for name, v in table.items()}


def _compare(t: TaggedRows, by_lang: dict[str, SentenceCounts], all_langs: list[str],
             non_source: list[str]) -> dict[str, Any]:
    """Paired tests of model A against model B per language (`by_lang`: A's counts) and over the
    averages (`non_source` empty: no average over non-source languages)."""
    comp: dict[str, Any] = {"languages": {}}
    for lang, rows in t.rows_by_lang.items():
        ca, cb = by_lang[lang], t.counts(rows, 1)
        test = _paired(t, ca, cb)
        cell = {"accuracy_a": _round(ca.accuracy()), "accuracy_b": _round(cb.accuracy()), **test}
        if t.entities:
            assert ca.spans is not None and cb.spans is not None
            cell["entity_f1"] = {"f1_a": _round(ca.spans.scores()["f1"]), "f1_b": _round(cb.spans.scores()["f1"]),
                                 **test["entity_f1"]}
        comp["languages"][lang] = cell
    comp["average"] = _paired_over(t, all_langs)
    if non_source:
        comp["average_non_source"] = _paired_over(t, non_source)
    comp["samples"] = t.samples
    return comp


def _paired(t: TaggedRows, ca: SentenceCounts, cb: SentenceCounts,
            groups: Sequence[str] | None = None) -> dict[str, Any]:
    """The paired test of token accuracy (and of entity F1 with a BIO tag set) of A's counts `ca`
    against B's `cb` on the same sentences, resampled within `groups` when given."""
    r = paired_bootstrap(ca.correct, cb.correct, totals=ca.words, samples=t.samples, seed=t.seed, groups=groups)
    out = {"delta": _round(r["delta"]), "ci95": [_round(x) for x in r["ci95"]], "p_value": _round(r["p_value"])}
    if t.entities:
        (na, da), (nb, db) = ca.f1_units(), cb.f1_units()
        e = paired_bootstrap(na, nb, totals=da, totals_b=db, samples=t.samples, seed=t.seed, groups=groups)
        out["entity_f1"] = {"delta": _round(e["delta"]), "ci95": [_round(x) for x in e["ci95"]],
                            "p_value": _round(e["p_value"])}
    return out


def _paired_over(t: TaggedRows, keys: Sequence[str]) -> dict[str, Any]:
    """The paired test over the records of languages `keys`, resampled within each language."""
    rows = [i for k in keys for i in t.rows_by_lang[k]]
    return _paired(t, t.counts(rows), t.counts(rows, 1), groups=[t.scored.langs[i] for i in rows])


def print_tagging_tables(report: dict[str, Any]) -> None:
    """A tagger's tables on stderr: token accuracy (and entity F1 with a BIO tag set) per language,
    then precision / recall / F1 / support per tag (and per entity type)."""
    log.console().print(_language_table(report))
    bio = report.get("scheme") == "BIO"
    tables = [("tag", report.get("tags") or {})]
    if bio:
        tables.append(("entity type", report["overall"]["entity"].get("types") or {}))
    for name, rows in tables:
        log.console().print(_score_table(name, rows))
    if report.get("unlabelled"):
        log.warn(f"{report['unlabelled']} record(s) without tags were predicted but not scored")


def _language_table(report: dict[str, Any]) -> Table:
    """The rich table of token accuracy per language and the averages, with B's paired tests."""
    from rich.table import Table

    compare = report.get("compare") or {}
    comp = compare.get("languages", {})
    bio = report.get("scheme") == "BIO"
    has_ci = any("ci95" in v for v in report["languages"].values())
    cols = (["language", "sentences", "words", "accuracy"] + (["95% CI"] if has_ci else []) + (["entity F1"] if bio else [])
            + (["B acc", "A-B", "p"] if comp else []) + (["A-B F1", "p F1"] if comp and bio else []))
    t = Table(title=f"xlt eval {report['signature'].get('model', '')} (tagging: token accuracy)", title_justify="left")
    for col in cols:
        t.add_column(col, justify="left" if col == "language" else "right")
    for lang, v in report["languages"].items():
        row = [lang, str(v["sentences"]), str(v["n"]), pct(v["accuracy"])]
        if has_ci:
            row.append(f"{pct(v['ci95'][0])}-{pct(v['ci95'][1])}")
        if bio:
            row.append(pct(v["entity"]["f1"]))
        t.add_row(*row, *_compare_cells(comp.get(lang), with_b=True, compared=bool(comp), bio=bio))
    for key, name in (("average", "average"), ("average_non_source", "avg non-source")):
        v = report.get(key)
        if v:
            row = [name, str(v["sentences"]), str(v["n"]), pct(v["accuracy"])] + ([""] if has_ci else [])
            if bio:
                row.append(pct(v["entity"]["f1"]))
            t.add_row(*row, *_compare_cells(compare.get(key), with_b=False, compared=bool(comp), bio=bio), style="bold")
    return t


def _compare_cells(c: dict[str, Any] | None, *, with_b: bool, compared: bool, bio: bool) -> list[str]:
    """A row's paired-test cells: B's accuracy (`with_b`), A-B and p, and for entity F1 with `bio`;
    none without a comparison (`compared`), blanks for a row it lacks."""
    if not compared:
        return []
    n = 5 if bio else 3
    if not c:
        return [""] * n
    out = [pct(c.get("accuracy_b")) if with_b else "", _signed(c["delta"]), _p(c["p_value"])]
    if bio:
        e = c.get("entity_f1") or {}
        out += [_signed(e.get("delta")), _p(e.get("p_value"))]
    return out


def _score_table(name: str, rows: dict[str, Any]) -> Table:
    """The rich table of precision / recall / F1 / support per `name` (tag or entity type)."""
    from rich.table import Table

    tt = Table(title=f"per {name}, all languages", title_justify="left")
    for col in (name, "precision", "recall", "F1", "support"):
        tt.add_column(col, justify="left" if col == name else "right")
    for tag, v in rows.items():
        tt.add_row(str(tag), pct(v["precision"]), pct(v["recall"]), pct(v["f1"]), str(v["support"]))
    return tt


def _signed(x: Any) -> str:
    return "" if x is None else f"{100 * x:+.2f}"


def _p(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"
