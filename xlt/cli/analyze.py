"""`xlt analyze`: cross-lingual alignment, teacher-student distances and pictures."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common


def analyze_cli(
    files: common.Files = None,
    model: Annotated[str, typer.Option("--model", help="Checkpoint dir (from teach/distill) or any encoder/classifier model.")] = ...,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="A teacher: distances between its vector of the source view and the model's of the target view (KL as hidden-kl, L2).")] = None,
    src: Annotated[str, typer.Option("--src", help="Source language of records without a `src` view, joined by `id` (records with `src` carry theirs).")] = "en",
    layer: Annotated[str, typer.Option("--layer", help="Which hidden state: last (any engine), a number (0 = embeddings; torch) or all (one value per layer; torch).")] = "last",
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write PREFIX.map.png (t-SNE/PCA by language and label), PREFIX.alignment.png and with --layer all PREFIX.layers.png.")] = None,
    projection: Annotated[str, typer.Option("--projection", help="The map's projection: tsne, or pca (fast).")] = "tsne",
    max_points: Annotated[int, typer.Option("--max-points", min=2, help="At most this many texts on the map, sampled with --seed.")] = 2000,
    fields: common.Fields = None,
    batch_size: common.BatchSize = 64,
    max_length: Annotated[Optional[int], typer.Option("--max-length", min=8, help="Truncation (default: the checkpoint's).")] = None,
    seed: common.Seed = 0,
    device: common.Device = "auto",
    engine: common.Engine = "auto",
    compute_type: common.EngineComputeType = None,
    threads: common.EngineThreads = 0,
    output: common.Output = None,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Why transfer works or fails: how well a model aligns languages (records -> one JSON report).

    Reads parallel records: each with its `src` view (xlt pair --src en, xlt translate), or files
    of several languages sharing `id`s (joined against --src). Per target language: mean cosine
    of each record with its source version, the mean over mismatched pairs and the gap, bitext
    retrieval P@1 in both directions (among every record of the other language), prediction
    agreement of the two views for a classifier; with --teacher, KL(softmax(h_T)||softmax(h_S))
    and L2 between the teacher's source vector and the model's target vector (BERT-KLD), also by
    TRSR/TRSW/TWSR/TWSW with gold labels. Vectors are first-token hidden states.

    Must see all of its input (retrieval compares every pair): it streams the texts and keeps
    N x H floats (x layers with --layer all). Writes the report to stdout or -o, a table to stderr.
    --threads also caps t-SNE's threads (--threads 1 on a busy machine: spinning OpenMP threads).

    Example: xlt pair --src en dev.*.jsonl | xlt analyze --model fr.ckpt --teacher en.ckpt -o a.json --plot a
    """
    with common.stage("analyze", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        from xlt.analyze.report import print_summary
        from xlt.analyze.stage import AnalyzeConfig, analyze, draw_plots, load_models
        from xlt.io import dump_json, iter_located

        config = AnalyzeConfig(model=model, teacher=teacher, src=src, layer=layer, plot=plot, projection=projection,
                               max_points=max_points, fields=fields, batch_size=batch_size, max_length=max_length,
                               seed=seed, device=device, engine=engine, compute_type=compute_type, threads=threads)
        pngs = config.plot_files
        run.claim([(path, f"--plot ({name})") for name, path in pngs.items()])  # checked before a model loads
        models = load_models(config)
        located = iter_located(files, validate=models.check, on_error=on_error, skipped=run.skipped)
        report, collected = analyze(located, models, config, inputs=files, skipped=run.skipped)
        if pngs:
            draw_plots(report, collected, {name: run.path(path, what="--plot") for name, path in pngs.items()}, config,
                       layers=models.layers)
        run.text(output).write(dump_json(report, what="the analyze report"))
        run.after(lambda: print_summary(report))


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cli)
