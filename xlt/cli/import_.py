"""`xlt import`: records of the contract from the hub, Parquet/CSV/TSV/JSON, CoNLL (1:1)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt import log
from xlt.cli import common
from xlt.ingest.presets import PRESETS

_PRESETS = ", ".join(PRESETS)


def import_cli(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Local files (.parquet .csv .tsv .json .jsonl .conllu .conll/.bio) or save_to_disk directories; `-` reads JSONL/CoNLL from stdin. None: --dataset (or the preset's).", show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="A Hugging Face hub dataset (xnli, facebook/xnli, mteb/...), loaded with datasets and the hub cache.")] = None,
    config: Annotated[Optional[str], typer.Option("--config", help="The hub dataset's configuration (subset), e.g. fr or all_languages.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="The split (train, validation, test) of --dataset or of a save_to_disk DatasetDict.")] = None,
    streaming: Annotated[Optional[bool], typer.Option("--streaming/--no-streaming", help="Stream the hub split instead of downloading it into the hub cache. Default: stream splits over 1 GiB or of unknown size, unless cached already.", show_default=False)] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help=f"Field mappings of a benchmark: {_PRESETS}. Options given here win over the preset's.")] = None,
    maps: Annotated[Optional[list[str]], typer.Option("--map", help="FIELD=COLUMN: fill a contract field from a source column, e.g. --map premise=sentence1 --map label=gold (repeatable; slots=COLUMN parses `\\[slot : words]` into tokens + BIO tags). Columns named like contract fields are taken as they are.", show_default=False)] = None,
    lang: Annotated[Optional[str], typer.Option("--lang", help="The records' language (ISO 639-1).")] = None,
    lang_from: Annotated[Optional[str], typer.Option("--lang-from", help="Take each record's language from this column (fr-FR -> fr).")] = None,
    langs: Annotated[Optional[str], typer.Option("--langs", help="Only these languages, comma-separated (e.g. with --config all_languages).")] = None,
    id_from: Annotated[Optional[str], typer.Option("--id-from", help="Take ids from this column. Default: the row's location, SOURCE:ROW (DATASET/SPLIT:ROW for parallel presets, so every language shares ids).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="`a,b,c`: the label set in order (ClassLabel index i -> the i-th; other labels must be in the set); `old=new,...`: rename. Integers stay integers.")] = None,
    column: Annotated[Optional[str], typer.Option("--column", help="The tag column: a CoNLL-U column (upos by default; xpos, deprel, ...), a column file's column number (default: the last), or a dataset column.")] = None,
    keep: Annotated[Optional[list[str]], typer.Option("--keep", help="Also copy these source columns into each record (comma-separated or repeated).", show_default=False)] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="parquet, csv, tsv, json, jsonl, conllu, conll or disk (save_to_disk). Default: from the file name.")] = None,
    columns: Annotated[Optional[str], typer.Option("--columns", help="Column names of a CSV/TSV file without a header line, comma-separated.")] = None,
    output: common.Output = None,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Bring data in: hub datasets, Parquet/CSV/TSV/JSON/JSONL, save_to_disk, CoNLL-U and BIO files
    become records of the xlt contract (1:1; 1:N for rows that hold every language, such as
    xnli all_languages: one record per language, same id). Streaming; stdout by default.

    ClassLabel integers become their names. A missing column is named with the columns there are;
    a bad row (empty text, label outside --labels, not a record) stops with FILE:ROW or
    DATASET/CONFIG/SPLIT:ROW and exit 2, or is skipped with --on-error skip.

    Example: xlt import --preset xnli --config fr --split test | xlt eval --model en.ckpt -

    Example: xlt import dev.tsv --map premise=sentence1 --map hypothesis=sentence2 --map label=gold --lang fr -o dev.fr.jsonl
    """
    with common.stage("import", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        from xlt.ingest.importer import ImportReport, import_records

        report = ImportReport()
        records = import_records(
            sources or [], dataset=dataset, config=config, split=split, streaming=streaming, fmt=fmt,
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None, preset=preset,
            maps=maps or [], column=column, lang=lang, lang_from=lang_from, id_from=id_from, labels=labels,
            keep=keep or [], langs=langs, on_error=on_error, skipped=run.skipped, report=report,
        )
        run.write(records, output, progress="import")
        dropped = f"; {report.filtered} outside --langs left out" if report.filtered else ""
        run.after(lambda: log.info(f"wrote {report.written} record(s) from {report.rows} row(s){dropped}"))


def register(app: typer.Typer) -> None:
    app.command("import")(import_cli)
