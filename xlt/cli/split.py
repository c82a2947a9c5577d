"""`xlt split`: deterministic key-hashed split of records into parts (1:1 over the parts)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from xlt import log
from xlt.cli import common


def split_cli(
    files: common.Files = None,
    into: Annotated[Optional[list[str]], typer.Option("--into", help="A part: PATH:FRACTION, e.g. `train.jsonl:0.8`; repeatable, fractions add up to 1. `-` as PATH is stdout.", show_default=False)] = None,
    by: Annotated[str, typer.Option("--by", help="The key field (dotted path allowed: `src.premise`); with --meta, the meta file's field.")] = "id",
    meta: Annotated[Optional[str], typer.Option("--meta", help="JSONL with `id` and the --by field: each record's key is looked up by its `id` (e.g. xnli/dev.meta.jsonl with --by premise_group). Held in memory.")] = None,
    seed: common.Seed = 0,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Split records into parts by a hash of (seed, key): every record goes to exactly one part (1:1).

    The part depends only on the seed and the record's key (default `id`), so parallel files in
    different languages split identically, and records sharing a key (a premise group via --meta)
    never straddle parts. Streaming; each part is written atomically; the counts go to stderr.

    Example: xlt split ../shared/data/xnli/dev.fr.jsonl --meta ../shared/data/xnli/dev.meta.jsonl
    --by premise_group --into fr.unlabelled.jsonl:0.5 --into fr.test.jsonl:0.5
    """
    with common.stage("split", main_output=False, force=force, quiet=quiet, verbose=verbose) as run:
        from xlt.split import check_by, parse_parts, split_stream

        parts = parse_parts(into or [])
        check_by(by, name="--by")
        run.claim([(p.path, "output") for p in parts])  # every part checked before anything is read
        report = split_stream(files, {p.path: run.text(p.path) for p in parts}, parts=parts, by=by, meta=meta,
                              seed=seed, on_error=on_error, skipped=run.skipped)
        run.after(lambda: _log_counts(report))


def _log_counts(report: Any) -> None:
    for path, n in report.counts.items():
        share = n / report.total if report.total else 0.0
        log.info(f"{'<stdout>' if path == '-' else path}: {n} records ({share:.1%})")


def register(app: typer.Typer) -> None:
    app.command("split")(split_cli)
