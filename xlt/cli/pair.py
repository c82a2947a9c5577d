"""`xlt pair`: cross-lingual and parallel records from parallel files (1:N)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common
from xlt.pair import PairReport, load_parallel, log_report, pair_records
from xlt.records import parse_fields


def pair_cli(
    files: common.Files = None,
    premise_lang: Annotated[Optional[str], typer.Option("--premise-lang", help="Language of the premise (first text field).")] = None,
    hypothesis_lang: Annotated[Optional[str], typer.Option("--hypothesis-lang", help="Language of the hypothesis (second text field).")] = None,
    all_pairs: Annotated[bool, typer.Option("--all", help="Every ordered language combination, N x N including same-language.")] = False,
    langs: Annotated[Optional[str], typer.Option("--langs", help="With --all: only these languages, comma-separated, in this order.")] = None,
    src: Annotated[Optional[str], typer.Option("--src", help="Parallel records for distillation: each other language's record with this language's record as its `src` view. With --premise-lang/--hypothesis-lang or --all: the pairs get the same example's X (X-X) or X-Y pair as `src` view (BERT-KLD's teacher pair).")] = None,
    label_from: Annotated[str, typer.Option("--label-from", help="Cross-lingual pairs: take the label from the premise or hypothesis language.")] = "premise",
    fields: common.Fields = None,
    output: common.Output = None,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Join parallel files by `id` into cross-lingual or source-view records (1:N).

    Output size and order (ids in input order):
    --premise-lang X --hypothesis-lang Y: one record per id present in both languages.
    --all: N*N records per id present in all N languages, by premise then hypothesis language.
    --src LANG: one record per other language and id present in both it and LANG.
    --src X-Y with pair modes: each pair also carries the X-Y pair of the same id as `src`.

    Ids missing in a language are reported and skipped. Ids whose labels differ are reported.
    The whole input is held in memory; the output streams. Tagging records (tokens + tags) are
    refused: their words do not align across languages (xlt translate makes target tagging data).

    Example: xlt pair --premise-lang en --hypothesis-lang hi dev.en.jsonl dev.hi.jsonl | head -1
    """
    with common.stage("pair", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        data = load_parallel(files, fields=parse_fields(fields), on_error=on_error, skipped=run.skipped)
        report = PairReport()
        chosen = [x.strip() for x in langs.split(",") if x.strip()] if langs is not None else None
        records = pair_records(
            data, premise_lang=premise_lang, hypothesis_lang=hypothesis_lang, all_pairs=all_pairs,
            langs=chosen, src=src, label_from=label_from, report=report,
        )
        run.write(records, output, progress="pair", total=report.total)
        run.after(lambda: log_report(report))


def register(app: typer.Typer) -> None:
    app.command("pair")(pair_cli)
