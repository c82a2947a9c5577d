"""Bringing data in: hub datasets, `save_to_disk` directories, Parquet/CSV/TSV/JSON/JSONL files,
CoNLL-U and CoNLL-2003-style files -> records of the xlt contract, streamed.

    from xlt.ingest.importer import import_records
    for rec in import_records(preset="xnli", config="fr", split="test"):
        ...

`sources` opens a source as rows (through `datasets` wherever it has a builder), `mapping` turns
rows into records, `presets` holds the benchmarks' field mappings as data. A bad row is a
`RecordError` located as `FILE:ROW` or `DATASET/CONFIG/SPLIT:ROW`, and follows the reader's rule:
stop with exit 2, or with ``on_error="skip"`` be counted in a `SkipReport`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from xlt.errors import InputError, RecordError, UsageError
from xlt.io import ON_ERROR_CHOICES, SkipReport

Record = dict[str, Any]


@dataclass
class ImportReport:
    rows: int = 0
    written: int = 0
    filtered: int = 0  # records of languages --langs left out


def import_records(
    files: Sequence[str] = (),
    *,
    dataset: str | None = None,
    config: str | None = None,
    split: str | None = None,
    streaming: bool | None = None,
    fmt: str | None = None,
    columns: Sequence[str] | None = None,
    preset: str | None = None,
    maps: Sequence[str] = (),
    column: str | None = None,
    lang: str | None = None,
    lang_from: str | None = None,
    id_from: str | None = None,
    labels: str | None = None,
    keep: Sequence[str] = (),
    langs: str | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
    report: ImportReport | None = None,
) -> Iterator[Record]:
    """Records of the contract from `files` or the hub `dataset` (or the `preset`'s dataset).

    Options are checked, and the hub dataset or the first file opened, before this returns; the
    records then stream. 1:1 (a row -> a record), except rows that hold every language
    (`xnli` `all_languages`): one record per language, all with the row's id.
    """
    from xlt.ingest import mapping, sources
    from xlt.ingest.presets import get_preset

    if on_error not in ON_ERROR_CHOICES:
        raise UsageError(f"--on-error must be one of {', '.join(ON_ERROR_CHOICES)}, not {on_error!r}")
    skipped = skipped if skipped is not None else SkipReport()
    report = report if report is not None else ImportReport()
    chosen = get_preset(preset) if preset else None
    files = list(files)
    if files and dataset:
        raise UsageError("give files (or a save_to_disk directory) or --dataset, not both")
    if not files and not dataset:
        dataset = chosen.dataset if chosen else None
        if dataset is None:
            what = (f"--preset {chosen.name} reads local files ({chosen.configs}): give them" if chosen
                    else "nothing to import: give files, a save_to_disk directory, or --dataset NAME")
            raise UsageError(what)
    if dataset:
        if fmt is not None or columns:
            raise UsageError("--format and --columns are for local files, not --dataset")
        spec = mapping.build_spec(preset=chosen, maps=maps, column=column, lang=lang, lang_from=lang_from,
                                  id_from=id_from, labels=labels, keep=keep, langs=langs)
        opened: Iterable[sources.Source] = [sources.open_hub(dataset, config=config, split=split, streaming=streaming,
                                                             parallel=bool(chosen and chosen.parallel))]
    else:
        if config is not None:
            raise UsageError("--config picks a configuration of --dataset; local files have none")
        if streaming is not None:
            raise UsageError("--streaming/--no-streaming is for --dataset: local files always stream")
        fmt = fmt or (chosen.format if chosen else None)
        formats = {sources.detect_format(p, fmt) for p in files}
        tag_column = None
        if column is not None and formats == {"conll"}:
            try:
                tag_column = int(column)
            except ValueError:
                raise UsageError(f"--column {column}: a column file's tag column is a number (1-based)") from None
            column = None
        elif column is not None and formats != {"conllu"}:
            raise UsageError(f"--column picks the tag column of CoNLL-U (upos, xpos, ...) or column files (a number), "
                             f"not of {', '.join(sorted(formats))} files; use --map tags=COLUMN")
        spec = mapping.build_spec(preset=chosen, fmt=formats.pop() if len(formats) == 1 else None, maps=maps,
                                  column=column, lang=lang, lang_from=lang_from, id_from=id_from, labels=labels,
                                  keep=keep, langs=langs)
        opened = sources.open_files(files, fmt=fmt, split=split, columns=columns, tag_column=tag_column,
                                    on_error=on_error, skipped=skipped)
    return _records(opened, spec, on_error=on_error, skipped=skipped, report=report)


def _records(opened: Iterable[Any], spec: Any, *, on_error: str, skipped: SkipReport,
             report: ImportReport) -> Iterator[Record]:
    from xlt.ingest.mapping import RowMapper

    for source in opened:
        rows = source.rows
        cols = source.columns
        if cols is None:  # a CSV's or a JSONL file's columns: those of its first row
            first = next(rows, None)
            if first is None:
                continue
            rows = itertools.chain([first], rows)
            cols = list(first[1]) if isinstance(first[1], dict) else []
        mapper = RowMapper(spec, source=source.name, columns=cols, features=source.features,
                           config=source.config, path=source.path)
        for key, row in rows:
            report.rows += 1
            try:
                if isinstance(row, RecordError):
                    raise row
                recs = mapper.records(row, f"{source.id_base}:{key}")
            except RecordError as exc:
                where = f"{source.name}:{key}"
                if on_error == "skip":
                    skipped.add(where, str(exc))
                    continue
                raise InputError(f"{where}: {exc}") from None
            for rec in recs:
                if spec.langs is not None and rec["lang"] not in spec.langs:
                    report.filtered += 1
                    continue
                report.written += 1
                yield rec
