"""`xlt eval`: accuracy per language (token accuracy and entity F1 for taggers), language matrices,
intervals and paired tests."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common


def eval_cli(
    files: common.Files = None,
    model: Annotated[str, typer.Option("--model", help="Checkpoint dir (from teach/distill), any sequence- or token-classification model, or a predictions file of eval.")] = ...,
    compare: Annotated[Optional[str], typer.Option("--compare", help="A second model B: paired bootstrap test of A vs B on the same records.")] = None,
    matrix: Annotated[bool, typer.Option("--matrix", help="Premise-language x hypothesis-language accuracy matrix (records from xlt pair --all).")] = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="With --matrix: write a heatmap PNG here.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap samples for 95% intervals per language (and for --compare; default 1000 there).")] = 0,
    predictions: Annotated[Optional[str], typer.Option("--predictions", help="Write each record with its prediction (JSONL) here: `pred` {label, probs, labels, model, source_langs, training}; for a tagger {tags, probs} one per word. `--model` or `--compare` reads such a file as a frozen model.")] = None,
    fields: common.Fields = None,
    batch_size: common.BatchSize = 64,
    max_length: Annotated[Optional[int], typer.Option("--max-length", min=8, help="Truncation (default: the checkpoint's).")] = None,
    seed: common.Seed = 0,
    device: common.Device = "auto",
    engine: common.Engine = "auto",
    compute_type: common.EngineComputeType = None,
    rescore_margin: common.RescoreMargin = None,
    threads: common.EngineThreads = 0,
    output: common.Output = None,
    report_to: common.ReportTo = "none",
    tracking_dir: common.TrackingDir = None,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Score a classifier on labelled records: accuracy and macro-F1 per language (`lang`, or
    `langs` for cross-lingual pairs), the average, and the average over non-source languages.

    Writes a JSON report with a signature (model digest, data digests, engine, xlt version) to
    stdout or -o, and a table to stderr. Records without a label are counted, not scored.
    Translate-test is composition: xlt translate --tgt en ... | xlt eval --model en.ckpt

    With --engine auto (default) BERT/XLM-R/RoBERTa/DistilBERT checkpoints run on CTranslate2 in
    float32, the model's own outputs (the signature says `ct2:float32`), converted once into the
    xlt cache; float16 on GPU is not the default until its agreement is measured (>= 99.9 %).
    --compute-type int8 is faster and moves accuracy (near-ties re-scored in float32,
    `ct2:int8+float32<0.03`: ~98.8 % argmax agreement, RESULTS.md). The signature also carries the
    checkpoint's training information (seed, steps, ...) for xlt report. --report-to tensorboard
    also logs the accuracy table as scalars (one per language, and the averages).

    A tagger (a token classifier, e.g. from xlt teach on `tokens` + `tags` records) is scored on
    tagging records: token accuracy per language, word-level macro-F1 over tags, and for a BIO /
    IOB2 tag set entity precision / recall / F1 (exact spans, CoNLL-style, by seqeval); a per-tag
    table; intervals and --compare tests resample sentences. Words past --max-length count as wrong
    (with a warning); --matrix is for cross-lingual pairs only.

    Example: xlt pair --all dev.*.jsonl | xlt eval --model en.ckpt --matrix --plot matrix.png
    Example: xlt eval --model pos.ckpt ud.*.jsonl --bootstrap 1000 -o pos.json
    """
    with common.stage("eval", output=output, outputs=[(predictions, "--predictions"), (plot, "--plot")], force=force,
                      quiet=quiet, verbose=verbose) as run:
        from xlt import log
        from xlt.errors import UsageError
        from xlt.evaluate.scoring import EvalInputCheck, evaluate, load_classifiers, plot_matrix, print_tables
        from xlt.io import dump_json, iter_located
        from xlt.records import parse_fields

        from xlt.train.tracking import Tracking, log_report

        if plot and not matrix:
            raise UsageError("--plot draws the language matrix: add --matrix")
        tracking = Tracking.from_options(report_to, tracking_dir)
        classifiers = load_classifiers(model, compare, device=device, batch_size=batch_size, max_length=max_length,
                                       engine=engine, compute_type=compute_type, threads=threads,
                                       rescore_margin=rescore_margin)
        check = EvalInputCheck(classifiers[0].labels, parse_fields(fields) or classifiers[0].fields,
                               tagging=classifiers[0].tagging, model=model)
        located = iter_located(files, validate=check, on_error=on_error, skipped=run.skipped)
        report = evaluate(located, classifiers, check=check, bootstrap=bootstrap, seed=seed, matrix=matrix,
                          predictions=run.text(predictions, what="--predictions") if predictions else None,
                          skipped=run.skipped, source_name=", ".join(files or ["<stdin>"]))
        if plot:
            plot_matrix(report["matrix"], run.path(plot, what="--plot"),
                        title=f"{classifiers[0].path}: accuracy by language pair")
        run.text(output).write(dump_json(report, what="the eval report"))
        if tracking is not None:  # accuracy per language and the averages, as scalars, once the report is written
            run.after(lambda: log_report(report, tracking, model=model))
        run.after(lambda: print_tables(report))
        if plot:
            run.after(lambda: log.info(f"wrote {plot}"))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cli)
