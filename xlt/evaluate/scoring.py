"""`eval`: score classifiers on records per language, with intervals, paired tests and matrices.

A tagger (`Classifier.tagging`) is scored on tagging records (`tokens` + `tags`): token accuracy
per language, entity spans when its tag set is BIO / IOB2, a per-tag table, and intervals and
paired tests that resample sentences (its report and tables: xlt.evaluate.tagging)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import IO, Any

from xlt import __version__, log
from xlt.errors import InputError, RecordError, UsageError, XltError
from xlt.evaluate.metrics import accuracy, bootstrap_ci, macro_f1, paired_bootstrap
from xlt.evaluate.metrics import round_metric as _round
from xlt.evaluate.scored import Scored, pct
from xlt.evaluate.tagging import build_tagging_report, print_tagging_tables
from xlt.io import dumps
from xlt.records import Record, check_tags, check_text, check_words, field_langs, infer_fields, is_tagging, record_lang
from xlt.tagging.metrics import UNCOVERED

#: Why a tagger's eval has no language matrix.
MATRIX_TAGGING = ("--matrix is the premise x hypothesis matrix of cross-lingual pairs (xlt pair --all); "
                  "a tagger's records have one language each: drop --matrix")


def score_records(
    located: Iterable[tuple[str, Record]],
    classifiers: Sequence[Any],
    *,
    fields: tuple[str, ...] | None = None,
    chunk: int = 2048,
    predictions: IO[str] | None = None,
    check: "EvalInputCheck | None" = None,
) -> tuple[Scored, tuple[str, ...]]:
    """Run every classifier over the records (streamed in chunks) and keep what metrics need."""
    labels = classifiers[0].labels
    tagging = bool(classifiers[0].tagging)
    # Each model's class index -> the first model's (models may order the same labels differently).
    perms = []
    for c in classifiers:
        if sorted(c.labels.names) != sorted(labels.names):
            raise InputError(f"--compare: the models have different labels ({labels.names} vs {c.labels.names})")
        perms.append([labels.index(v) for v in c.labels.values])
    chosen = fields or classifiers[0].fields
    scored = Scored(preds=[[] for _ in classifiers], tagging=tagging)
    buf: list[tuple[str, Record]] = []
    check = check or EvalInputCheck(labels, chosen, tagging=tagging, model=classifiers[0].path)
    for where, rec in located:
        try:
            check(rec)  # a no-op for records the reader already validated with the same check
        except RecordError as exc:
            raise InputError(f"{where}: {exc}") from None
        chosen = check.fields
        buf.append((where, rec))
        if len(buf) >= chunk:
            _score_chunk(buf, classifiers, scored, perms=perms, fields=chosen, predictions=predictions)
            buf.clear()
    if buf:
        _score_chunk(buf, classifiers, scored, perms=perms, fields=chosen, predictions=predictions)
    return scored, chosen or ()


def _score_chunk(buf: Sequence[tuple[str, Record]], classifiers: Sequence[Any], scored: Scored, *,
                 perms: Sequence[Sequence[int]], fields: Sequence[str], predictions: IO[str] | None) -> None:
    """Run every classifier over one chunk of (where, record) and add what metrics need to `scored`
    (`perms`: each model's class index -> the first model's); each record with the first model's
    prediction goes to `predictions`."""
    labels = classifiers[0].labels
    tagging = scored.tagging
    texts = [tuple(r[f] for f in fields) for _, r in buf]
    outs = [c.predict(texts) for c in classifiers]
    _check_finite(buf, classifiers, outs, tagging=tagging)
    gold_key = "tags" if tagging else "label"
    for i, (where, rec) in enumerate(buf):
        lang = record_lang(rec)
        scored.langs.append(lang)
        fl = field_langs(rec, fields)
        scored.pair_langs.append((fl[0], fl[-1]))
        if rec.get(gold_key) is None:
            scored.gold.append(None if tagging else -1)
            scored.unlabelled += 1
            scored.unlabelled_by_lang[lang] = scored.unlabelled_by_lang.get(lang, 0) + 1
        else:
            try:
                scored.gold.append([labels.index(t) for t in rec["tags"]] if tagging else labels.index(rec["label"]))
            except RecordError as exc:
                raise InputError(f"{where}: {exc}") from None
        for k, out in enumerate(outs):
            if tagging:  # per word; a word without output (past max length) is UNCOVERED
                scored.preds[k].append([perms[k][int(j)] if seen else UNCOVERED
                                        for j, seen in zip(out.logits[i].argmax(axis=-1), out.covered[i])])
            else:
                scored.preds[k].append(perms[k][int(out.logits[i].argmax())])
    if predictions is not None:
        source_langs = getattr(classifiers[0], "source_langs", None)  # once per chunk, not per record
        training = classifiers[0].training
        for i, (_, rec) in enumerate(buf):
            rec_out = dict(rec)
            rec_out["pred"] = prediction(outs[0], i, labels=labels.values, model=classifiers[0].digest, tagging=tagging,
                                         source_langs=source_langs, training=training)
            predictions.write(dumps(rec_out) + "\n")


def _check_finite(buf: Sequence[tuple[str, Record]], classifiers: Sequence[Any], outs: Sequence[Any], *,
                  tagging: bool) -> None:
    """Refuse a chunk's outputs `outs` with a NaN or an infinity: nothing is scored from a broken model."""
    import numpy as np

    for c, out in zip(classifiers, outs):
        finite = (np.array([np.isfinite(lg).all() for lg in out.logits], dtype=bool) if tagging
                  else np.isfinite(out.logits).all(axis=-1))
        if not finite.all():
            where = buf[int(np.argmin(finite))][0]
            raise XltError(f"{c.path} produced non-finite outputs (NaN or Infinity) for {where}; "
                           "nothing is scored from a broken model")


def prediction(out: Any, i: int, *, labels: Sequence[Any], model: str, tagging: bool = False,
               source_langs: Sequence[str] | None = None, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `pred` that `--predictions` adds to record `i` of a chunk's outputs `out`: the label,
    the probabilities in the order of `labels`, the labels, the model digest, the languages its
    labels came from (`source_langs`, when known: an eval of the file then has the model's
    non-source average) and how it was trained (`training`, when known: a report of the file then
    has the model's seed, steps and training time); for a tagger one tag and one probability row per word (`tags`, `probs`),
    None for a word the model could not see. Only finite numbers (softmax of finite logits, rounded)."""
    from xlt.inference.types import softmax

    if tagging:
        probs = softmax(out.logits[i])
        rows = [[round(float(x), 6) for x in p] if seen else None for p, seen in zip(probs, out.covered[i])]
        tags = [labels[int(p.argmax())] if seen else None for p, seen in zip(probs, out.covered[i])]
        pred = {"tags": tags, "probs": rows, "labels": list(labels), "model": model}
    else:
        p = softmax(out.logits[i:i + 1])[0]
        pred = {"label": labels[int(p.argmax())], "probs": [round(float(x), 6) for x in p], "labels": list(labels),
                "model": model}
    if source_langs:
        pred["source_langs"] = list(source_langs)
    if training:
        pred["training"] = training
    return pred


def _shape_name(fields: Sequence[str]) -> str:
    return "tagging (tokens + tags)" if is_tagging(fields) else "/".join(fields)


class EvalInputCheck:
    """`validate` for the reader: a record's text fields and its label (when it has one) must fit
    the model, so `--on-error skip` skips such records like any other bad input. The text fields
    are `fields`, else the model's, else inferred from the first good record. For a tagger
    (`tagging`) records are `tokens` and, when they have them, `tags` of the model's tag set.
    Records of the other kind of task than the model's are a usage error, not skipped: the model
    `model` cannot score any of them."""

    def __init__(self, labels: Any, fields: tuple[str, ...] | None, *, tagging: bool = False,
                 model: str = "the model") -> None:
        if fields is not None and is_tagging(fields) != tagging:
            what = "a tagger: its records are tokens + tags (--fields tagging)" if tagging else \
                "a sequence classifier: --fields tagging needs a tagger (xlt teach on tagging records trains one)"
            raise UsageError(f"--fields {','.join(fields)}: --model {model} is {what}")
        self.labels = labels
        self.fields = fields
        self.tagging = tagging
        self.model = model

    def __call__(self, rec: Record) -> None:
        if self.tagging:
            if not isinstance(rec.get("tokens"), list):
                try:
                    other: tuple[str, ...] | None = infer_fields(rec)
                except RecordError:
                    other = None
                if other is not None:
                    raise UsageError(f"--model {self.model} is a tagger (tokens + tags records) and the input holds "
                                     f"{_shape_name(other)} records: score them with a sequence classifier")
            check_words(rec)
            if rec.get("tags") is not None:
                check_tags(rec, has=self.labels.has)
            return
        fields = self.fields or infer_fields(rec)
        if is_tagging(fields) or (isinstance(rec.get("tokens"), list) and not all(f in rec for f in fields)):
            raise UsageError(f"--model {self.model} is a sequence classifier and the input holds tagging records "
                             "(tokens + tags): score them with a tagger (xlt teach on tagging records trains one)")
        check_text(rec, fields)
        if rec.get("label") is not None:
            self.labels.index(rec["label"])
        self.fields = fields


def build_report(
    scored: Scored,
    *,
    labels: Any,
    source_langs: Sequence[str],
    bootstrap: int = 0,
    seed: int = 0,
    matrix: bool = False,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """Per-language accuracy and macro-F1 with counts, averages (all and non-source), optional
    bootstrap intervals, the premise x hypothesis matrix, and paired tests against model B
    (a tagger's scores: `xlt.evaluate.tagging.build_tagging_report`)."""
    if scored.tagging:
        if matrix:
            raise UsageError(MATRIX_TAGGING)
        return build_tagging_report(scored, labels=labels, source_langs=source_langs, bootstrap=bootstrap, seed=seed,
                                    signature=signature)
    n_classes = len(labels)
    rows_by_lang: dict[str, list[int]] = {}
    for i, (lang, g) in enumerate(zip(scored.langs, scored.gold)):
        if g >= 0:
            rows_by_lang.setdefault(lang, []).append(i)
    gold = scored.gold
    pa = scored.preds[0]
    langs_out: dict[str, Any] = {}
    for lang, rows in rows_by_lang.items():
        g = [gold[i] for i in rows]
        p = [pa[i] for i in rows]
        entry: dict[str, Any] = {"n": len(rows), "accuracy": _round(accuracy(g, p)), "macro_f1": _round(macro_f1(g, p, n_classes))}
        if bootstrap:
            lo, hi = bootstrap_ci([int(a == b) for a, b in zip(g, p)], samples=bootstrap, seed=seed)
            entry["ci95"] = [_round(lo), _round(hi)]
        if scored.unlabelled_by_lang.get(lang):
            entry["unlabelled"] = scored.unlabelled_by_lang[lang]
        langs_out[lang] = entry
    all_langs = list(langs_out)
    non_source = [k for k in all_langs if k not in set(source_langs)]
    labelled = [i for i, g in enumerate(gold) if g >= 0]
    report: dict[str, Any] = {
        "signature": signature,
        "languages": langs_out,
        "average": _average(langs_out, all_langs),
        "average_non_source": _average(langs_out, non_source) if source_langs else None,
        "source_languages": list(source_langs),
        "overall": {"n": len(labelled), "accuracy": _round(accuracy([gold[i] for i in labelled], [pa[i] for i in labelled]))},
        "unlabelled": scored.unlabelled,
    }
    if matrix:
        report["matrix"] = build_matrix(scored)
    if len(scored.preds) > 1:
        report["compare"] = _compare_classifier(scored, rows_by_lang, labelled, non_source if source_langs else [],
                                                bootstrap=bootstrap, seed=seed)
    return report


def _average(langs_out: dict[str, Any], keys: list[str]) -> dict[str, Any] | None:
    """The macro average of a classifier's scores over languages `keys` (None without any)."""
    if not keys:
        return None
    return {"languages": len(keys), "n": sum(langs_out[k]["n"] for k in keys),
            "accuracy": _round(sum(langs_out[k]["accuracy"] for k in keys) / len(keys)),
            "macro_f1": _round(sum(langs_out[k]["macro_f1"] for k in keys) / len(keys))}


def _compare_classifier(scored: Scored, rows_by_lang: dict[str, list[int]], labelled: list[int],
                        non_source: list[str], *, bootstrap: int, seed: int) -> dict[str, Any]:
    """Paired tests of model A's accuracy against model B's per language and over the averages
    (`non_source` empty: no average over non-source languages)."""
    gold, pa, pb = scored.gold, scored.preds[0], scored.preds[1]
    comp: dict[str, Any] = {"languages": {}}
    for lang, rows in rows_by_lang.items():
        ca = [int(pa[i] == gold[i]) for i in rows]
        cb = [int(pb[i] == gold[i]) for i in rows]
        test = paired_bootstrap(ca, cb, samples=bootstrap or 1000, seed=seed)
        comp["languages"][lang] = {"accuracy_a": _round(sum(ca) / len(ca)), "accuracy_b": _round(sum(cb) / len(cb)),
                                   "delta": _round(test["delta"]), "ci95": [_round(x) for x in test["ci95"]],
                                   "p_value": _round(test["p_value"])}
    ca = [int(pa[i] == gold[i]) for i in labelled]
    cb = [int(pb[i] == gold[i]) for i in labelled]
    groups = [scored.langs[i] for i in labelled]
    test = paired_bootstrap(ca, cb, samples=bootstrap or 1000, seed=seed, groups=groups)
    comp["average"] = {"delta": _round(test["delta"]), "ci95": [_round(x) for x in test["ci95"]], "p_value": _round(test["p_value"])}
    if non_source:
        keep = [i for i in labelled if scored.langs[i] in set(non_source)]
        test = paired_bootstrap([int(pa[i] == gold[i]) for i in keep], [int(pb[i] == gold[i]) for i in keep],
                                samples=bootstrap or 1000, seed=seed, groups=[scored.langs[i] for i in keep])
        comp["average_non_source"] = {"delta": _round(test["delta"]), "ci95": [_round(x) for x in test["ci95"]],
                                      "p_value": _round(test["p_value"])}
    comp["samples"] = bootstrap or 1000
    return comp


def build_matrix(scored: Scored) -> dict[str, Any]:
    """Accuracy per (premise language, hypothesis language), languages in first-seen order."""
    order: list[str] = []
    cells: dict[tuple[str, str], list[int]] = {}
    for i, ((p, h), g) in enumerate(zip(scored.pair_langs, scored.gold)):
        for lang in (p, h):
            if lang not in order:
                order.append(lang)
        if g < 0:
            continue
        c = cells.setdefault((p, h), [0, 0])
        c[0] += int(scored.preds[0][i] == g)
        c[1] += 1
    acc = [[_round(cells[(p, h)][0] / cells[(p, h)][1]) if (p, h) in cells else None for h in order] for p in order]
    n = [[cells[(p, h)][1] if (p, h) in cells else 0 for h in order] for p in order]
    return {"premise_langs": order, "hypothesis_langs": order, "accuracy": acc, "n": n}


def plot_matrix(matrix: dict[str, Any], path: str, *, title: str) -> None:
    """A heatmap PNG of the premise x hypothesis accuracy matrix, written to `path` (the caller
    stages it: `OutputSet.path`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    langs = matrix["premise_langs"]
    data = np.array([[np.nan if v is None else 100 * v for v in row] for row in matrix["accuracy"]])
    size = max(4.0, 0.55 * len(langs) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(data, cmap="viridis")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    ax.set_xlabel("hypothesis language")
    ax.set_ylabel("premise language")
    ax.set_title(title)
    if len(langs) <= 20:
        lo, hi = np.nanmin(data) if np.isfinite(data).any() else 0, np.nanmax(data) if np.isfinite(data).any() else 1
        for i in range(len(langs)):
            for j in range(len(langs)):
                if np.isfinite(data[i, j]):
                    light = data[i, j] < (lo + hi) / 2
                    ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=7,
                            color="white" if light else "black")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    finally:
        plt.close(fig)


def print_tables(report: dict[str, Any]) -> None:
    """Human-readable tables on stderr (the JSON report is the data)."""
    from rich.table import Table

    if log.state.quiet:
        return
    if report.get("task") == "tagging":

        print_tagging_tables(report)
        return
    compare = report.get("compare") or {}
    comp = compare.get("languages", {})
    has_ci = any("ci95" in v for v in report["languages"].values())
    cols = ["language", "n", "accuracy", "macro-F1"] + (["95% CI"] if has_ci else []) + (["B acc", "A-B", "p"] if comp else [])
    t = Table(title=f"xlt eval {report['signature'].get('model', '')}", title_justify="left")
    for col in cols:
        t.add_column(col, justify="left" if col == "language" else "right")

    def cmp_cells(c: dict[str, Any] | None, with_b: bool) -> list[str]:
        if not comp:
            return []
        if not c:
            return ["", "", ""]
        return [pct(c.get("accuracy_b")) if with_b else "", f"{100 * c['delta']:+.2f}", f"{c['p_value']:.3f}"]

    for lang, v in report["languages"].items():
        row = [lang, str(v["n"]), pct(v["accuracy"]), pct(v["macro_f1"])]
        if has_ci:
            row.append(f"{pct(v['ci95'][0])}-{pct(v['ci95'][1])}")
        t.add_row(*row, *cmp_cells(comp.get(lang), True))
    for key, name in (("average", "average"), ("average_non_source", "avg non-source")):
        v = report.get(key)
        if v:
            row = [name, str(v["n"]), pct(v["accuracy"]), pct(v["macro_f1"])] + ([""] if has_ci else [])
            t.add_row(*row, *cmp_cells(compare.get(key), False), style="bold")
    log.console().print(t)
    m = report.get("matrix")
    if m:
        mt = Table(title="accuracy (%): premise language (rows) x hypothesis language (columns)", title_justify="left")
        mt.add_column("")
        for h in m["hypothesis_langs"]:
            mt.add_column(h, justify="right")
        for p, row in zip(m["premise_langs"], m["accuracy"]):
            mt.add_row(p, *[pct(x) for x in row])
        log.console().print(mt)
    if report.get("unlabelled"):
        log.warn(f"{report['unlabelled']} record(s) without a label were predicted but not scored")


def signature(classifiers: Sequence[Any], *, data: dict[str, str], fields: Sequence[str], bootstrap: int,
              seed: int) -> dict[str, Any]:
    """Settings and versions behind a report: `engine` is what ran (`torch`, `ct2:float32`, or with
    int8 near-ties re-scored `ct2:int8+float32<0.03`); `training` is how the model was trained, from
    its checkpoint's xlt.json or a predictions file's `pred.training` (None when unknown), so `xlt
    report` needs nothing but the report."""
    def engine(c: Any) -> str:
        return getattr(c, "engine_name", "torch")

    sig: dict[str, Any] = {"xlt": __version__, "model": classifiers[0].path, "model_digest": classifiers[0].digest,
                           "data": data, "fields": list(fields), "engine": engine(classifiers[0]),
                           "bootstrap": bootstrap, "seed": seed, "training": classifiers[0].training}
    if len(classifiers) > 1:
        sig["compare_model"] = classifiers[1].path
        sig["compare_model_digest"] = classifiers[1].digest
        sig["compare_engine"] = engine(classifiers[1])
        sig["compare_training"] = classifiers[1].training
    return sig


def load_classifiers(model: str, compare: str | None = None, **run: Any) -> list[Any]:
    """The model scored and, for a paired test, the model it is compared with, run exactly (the
    models' own outputs). `run` chooses how they run (device, batch_size, max_length, engine,
    compute_type, threads, rescore_margin: see xlt.inference.classifier)."""
    from xlt.inference.classifier import load_classifier

    run = {**run, "exact": True}
    classifiers = [load_classifier(model, **run)]
    if compare:
        classifiers.append(load_classifier(compare, option="--compare", **run))
        a, b = classifiers
        if bool(a.tagging) != bool(b.tagging):
            def kind(c: Any) -> str:
                return "a tagger" if c.tagging else "a sequence classifier"

            raise UsageError(f"--model {model} is {kind(a)} and --compare {compare} {kind(b)}: "
                             "a paired test needs two models of the same task")
    return classifiers


def _warn_uncovered(scored: Scored, classifiers: Sequence[Any]) -> None:
    """Say how many words each model could not see (no subword within its max length): they are
    scored as wrong."""
    words = sum(len(p) for p in scored.preds[0])
    for clf, preds in zip(classifiers, scored.preds):
        lost = sum(p.count(UNCOVERED) for p in preds)
        if lost:
            limit = getattr(clf, "max_length", None)
            log.warn(f"{clf.path}: {lost} of {words} words got no subword within the max length"
                     f"{f' ({limit})' if limit else ''} and count as wrong; raise --max-length to score them")


def evaluate(
    located: Iterable[tuple[str, Record]],
    classifiers: Sequence[Any],
    *,
    check: EvalInputCheck,
    bootstrap: int = 0,
    seed: int = 0,
    matrix: bool = False,
    predictions: IO[str] | None = None,
    skipped: Any = None,
    source_name: str = "<stdin>",
) -> dict[str, Any]:
    """The eval report of `classifiers` on the (where, record) stream `located` (read through
    `check`): accuracy per language, intervals, paired tests, the matrix, and the signature with
    the digests of the data it read. Each record with its predictions goes to `predictions`."""
    from xlt.train.data import DigestingSource

    if matrix and classifiers[0].tagging:
        raise UsageError(MATRIX_TAGGING)
    digests = DigestingSource()

    def digesting() -> Iterable[tuple[str, Record]]:
        for where, rec in log.track(located, description="eval", unit="records"):
            digests.update(where, rec)
            yield where, rec

    scored, chosen = score_records(digesting(), classifiers, fields=check.fields, predictions=predictions, check=check)
    for clf in classifiers:
        note = clf.engine_note()
        if note:
            log.info(f"{clf.path}: {note}")
    if not scored.langs:
        raise InputError(f"{source_name}: no records" + (" left after skipping bad ones" if skipped and skipped.count else ""))
    if scored.tagging:
        _warn_uncovered(scored, classifiers)
    sig = signature(classifiers, data=digests.digests(), fields=chosen, bootstrap=bootstrap, seed=seed)
    report = build_report(scored, labels=classifiers[0].labels, source_langs=classifiers[0].source_langs,
                          bootstrap=bootstrap, seed=seed, matrix=matrix, signature=sig)
    if skipped is not None and skipped.count:
        report["skipped"] = {"count": skipped.count, "examples": skipped.examples}
    return report
