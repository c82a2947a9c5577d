"""Opening a source as a stream of rows: a hub dataset, a `save_to_disk` directory, local
Parquet/CSV/TSV/JSON files (all through `datasets`), JSONL (xlt's own reader), CoNLL-U and
column files (`xlt.ingest.conll`).

Every source yields ``(ROW, row)``: ROW is the 1-based row number (the line number for JSONL and
the CoNLL formats), row a dict of columns, or a `RecordError` for a row the reader could not make
sense of. `datasets` and `pyarrow` are imported here, inside the functions, so `xlt --help`
stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from xlt import log
from xlt.errors import InputError, RecordError, UsageError, XltError
from xlt.io import STDIN, SkipReport, display_name, iter_located
from xlt.ingest import conll

Row = dict[str, Any]
Rows = Iterator[tuple[int, "Row | RecordError"]]

FORMATS = ("parquet", "csv", "tsv", "json", "jsonl", "conllu", "conll", "disk")
SUFFIXES = {
    ".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".conllu": "conllu", ".conll": "conll", ".bio": "conll",
    ".iob": "conll", ".iob2": "conll",
}
#: Formats read line by line here (stdin works); the others go through `datasets`' builders.
LINE_FORMATS = ("jsonl", "conllu", "conll")
#: Hub splits larger than this stream by default; smaller ones are downloaded into the hub cache.
STREAM_ABOVE_BYTES = 1 << 30


@dataclass
class Source:
    """Rows of one source and what is known about them before the first row is read."""

    name: str  # where the rows come from, as errors name it: `facebook/xnli/fr/test`, `dev.csv`
    id_base: str  # default ids are `ID_BASE:ROW`
    format: str
    rows: Rows
    features: Any = None  # `datasets.Features` when known (ClassLabel names)
    columns: list[str] | None = None
    config: str | None = None
    path: str | None = None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quiet_datasets() -> None:
    """No `datasets` progress bars or info logs on stderr (stdout is data; xlt logs its own)."""
    import datasets
    import huggingface_hub

    datasets.disable_progress_bars()
    # Their failures reach the user as xlt's one line; the hub client would also log each retry,
    # and datasets each parser error, at level ERROR.
    for logging in (datasets.utils.logging, huggingface_hub.utils.logging):
        logging.set_verbosity(logging.WARNING if log.state.verbose else logging.CRITICAL)


def detect_format(path: str, given: str | None) -> str:
    """The format of `path`: `given` (--format), a `save_to_disk` directory, or the file suffix."""
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {given!r}")
        return given
    if path == STDIN:
        return "jsonl"
    if os.path.isdir(path):
        return "disk"
    name = path.lower()
    for packed in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(packed):
            name = name[: -len(packed)]
    fmt = SUFFIXES.get(os.path.splitext(name)[1])
    if fmt is None:
        raise UsageError(f"{path}: cannot tell the format from the name; give --format ({', '.join(FORMATS)})")
    return fmt


def _check_path(path: str, fmt: str) -> None:
    if path == STDIN:
        if fmt not in LINE_FORMATS:
            raise UsageError(f"stdin (-) can hold {', '.join(LINE_FORMATS)}, not {fmt}; give a file")
        return
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if fmt == "disk":
        if not os.path.isdir(path):
            raise UsageError(f"{path}: --format disk needs a directory written by datasets' save_to_disk")
        marks = ("state.json", "dataset_dict.json")
        if not any(os.path.exists(os.path.join(path, m)) for m in marks):
            raise UsageError(f"{path}: a directory, but not one written by datasets' save_to_disk "
                             "(no state.json or dataset_dict.json)")
    elif os.path.isdir(path):
        raise UsageError(f"{path}: is a directory; --format {fmt} reads a file")


def _dataset_rows(ds: Any, name: str, *, bad_input: bool) -> Rows:
    """Number the rows of a `datasets` Dataset or IterableDataset from 1. A failure inside
    `datasets` is one line: bad input (exit 2) for local files, a runtime failure for the hub."""
    import datasets

    try:
        if isinstance(ds, datasets.Dataset):  # memory-mapped Arrow: read in slices, not row by row
            n = 0
            for batch in ds.iter(batch_size=1000):
                keys = list(batch)
                for values in zip(*(batch[k] for k in keys)):
                    n += 1
                    yield n, dict(zip(keys, values))
        else:
            for n, row in enumerate(ds, 1):
                yield n, row
    except (XltError, RecordError):
        raise
    except Exception as exc:  # a parser's or the network's message, in one line
        if bad_input:
            raise InputError(f"{name}: cannot read: {_one_line(exc)}") from None
        raise XltError(f"{name}: reading failed: {type(exc).__name__}: {_one_line(exc)}") from None


def _datasets_file(path: str, fmt: str, *, columns: Sequence[str] | None) -> Source:
    """A local Parquet/CSV/TSV/JSON file through `datasets`' own builder, streamed."""
    import csv

    import datasets

    quiet_datasets()
    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        # Text stays text: "NA", "null" and "None" are words, not missing values; only an
        # empty cell is missing.
        kwargs.update(keep_default_na=False, na_values=[""])
        if fmt == "tsv":
            # XTREME's and XNLI's TSV files hold bare quote characters inside the text.
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        if columns:
            kwargs["column_names"] = list(columns)
    builder = "csv" if fmt == "tsv" else fmt
    try:
        ds = datasets.load_dataset(builder, data_files=path, split="train", streaming=True, **kwargs)
    except (XltError, RecordError):
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read as {fmt}: {_one_line(exc)}") from None
    return Source(name=path, id_base=path, format=fmt, rows=_dataset_rows(ds, path, bad_input=True),
                  features=ds.features, columns=list(ds.column_names) if ds.column_names else None, path=path)


def _parquet_rows(path: str, batch_rows: int) -> Rows:
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as pf:
            n = 0
            # One thread, pages read through a 1 MiB buffer, `batch_rows` rows decoded at a
            # time: nothing grows with the file or its row groups (see _parquet_file).
            for batch in pf.iter_batches(batch_size=batch_rows, use_threads=False):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid/ArrowIOError are both
        raise InputError(f"{path}: cannot read as parquet: {_one_line(exc)}") from None


def _parquet_file(path: str, *, batch_rows: int = 1000) -> Source:
    """A local Parquet file: the schema through `datasets` (ClassLabel, Translation: the features
    a `datasets`-written file records), the rows through pyarrow's record-batch reader.

    `datasets`' Parquet builder scans with Arrow's dataset scanner, which decodes a whole row
    group at a time (and, across row groups, reads ahead of a slow consumer): peak memory grows
    with the row group, and pyarrow and `datasets` write files under 1 M rows (pyarrow) or 100 MB
    (datasets) as one row group. The record-batch reader, on a buffered stream, decodes
    `batch_rows` rows at a time, so memory stays flat in the file's size
    (benchmarks/import_memory.py). The rows are the values the builder would yield (the same
    pyarrow arrays); tests/test_import.py checks both paths give the same records, preset by preset.
    """
    import datasets
    import pyarrow.parquet as pq

    quiet_datasets()
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as parquet: {_one_line(exc)}") from None
    features = datasets.Features.from_arrow_schema(schema)
    return Source(name=path, id_base=path, format="parquet", rows=_parquet_rows(path, batch_rows),
                  features=features, columns=list(schema.names), path=path)


def _disk(path: str, *, split: str | None) -> Source:
    import datasets

    quiet_datasets()
    try:
        ds = datasets.load_from_disk(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot load the save_to_disk directory: {_one_line(exc)}") from None
    name = path.rstrip("/") or path
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if split is None and len(splits) == 1:
            split = splits[0]
        if split is None or split not in ds:
            what = "give --split" if split is None else f"no split {split!r}"
            raise UsageError(f"{path}: {what} (splits: {', '.join(splits)})")
        ds, name = ds[split], f"{name}/{split}"
    elif split is not None:
        raise UsageError(f"{path}: holds a single dataset, not splits; leave out --split")
    return Source(name=name, id_base=name, format="disk", rows=_dataset_rows(ds, name, bad_input=True),
                  features=ds.features, columns=list(ds.column_names), path=path)


def _jsonl(path: str, *, on_error: str, skipped: SkipReport) -> Source:
    def rows() -> Rows:
        for where, rec in iter_located([path], on_error=on_error, skipped=skipped):
            yield int(where.rsplit(":", 1)[1]), rec

    name = display_name(path)
    return Source(name=name, id_base=name, format="jsonl", rows=rows(), path=path)


def open_files(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    tag_column: int | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> Iterator[Source]:
    """The sources named by `paths`, one per file, each opened when the previous one is done.
    Every path and format is checked now, before the first is opened."""
    if skipped is None:
        skipped = SkipReport()
    paths = list(paths)
    if paths.count(STDIN) > 1:
        raise UsageError("stdin (-) can be read only once")
    formats = [detect_format(p, fmt) for p in paths]
    for path, f in zip(paths, formats):
        _check_path(path, f)
        if split is not None and f != "disk":
            raise UsageError(f"--split picks a split of --dataset or of a save_to_disk directory, not of {path}")
        if columns and f not in ("csv", "tsv"):
            raise UsageError(f"--columns names the columns of a CSV/TSV file without a header line, not of {path} ({f})")
        if tag_column is not None and f != "conll":
            raise UsageError(f"--column N picks the tag column of a CoNLL column file, not of {path} ({f})")
    return _open_each(paths, formats, columns=columns, split=split, tag_column=tag_column,
                      on_error=on_error, skipped=skipped)


def _open_each(paths: list[str], formats: list[str], *, columns: Sequence[str] | None, split: str | None,
               tag_column: int | None, on_error: str, skipped: SkipReport) -> Iterator[Source]:
    for path, f in zip(paths, formats):
        name = display_name(path)
        if f == "jsonl":
            yield _jsonl(path, on_error=on_error, skipped=skipped)
        elif f == "conllu":
            yield Source(name=name, id_base=name, format=f, rows=conll.read_conllu(path),
                         columns=list(conll.CONLLU_ROW_COLUMNS), path=path)
        elif f == "conll":
            yield Source(name=name, id_base=name, format=f, rows=conll.read_columns(path, tag_column=tag_column),
                         columns=list(conll.COLUMN_FILE_COLUMNS), path=path)
        elif f == "disk":
            yield _disk(path, split=split)
        elif f == "parquet":
            yield _parquet_file(path)
        else:
            yield _datasets_file(path, f, columns=columns)


def _hub_error(exc: Exception, what: str) -> XltError:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    msg = _one_line(exc)
    if isinstance(exc, ConnectionError) or "offline" in msg.lower():
        hint = (" (HF_HUB_OFFLINE is set: only datasets already in the hub cache load)"
                if datasets.config.HF_HUB_OFFLINE else "")
        return XltError(f"{what}: cannot load from the Hugging Face hub: {msg}{hint}")
    if isinstance(exc, (DatasetNotFoundError, FileNotFoundError, ValueError, KeyError)):
        return UsageError(f"{what}: {msg}")
    return XltError(f"{what}: {type(exc).__name__}: {msg}")


def _stream_by_default(name: str, config: str | None, split: str) -> bool:
    """Stream a split unless it is in the hub cache already or known to be small."""
    import datasets

    builder = datasets.load_dataset_builder(name, config)
    if os.path.exists(os.path.join(builder.cache_dir, datasets.config.DATASET_INFO_FILENAME)):
        return False  # prepared before: read the cache (works offline too)
    splits = builder.info.splits
    size = splits[split].num_bytes if splits and split in splits else None
    return not size or size > STREAM_ABOVE_BYTES


def open_hub(
    name: str,
    *,
    config: str | None = None,
    split: str | None = None,
    streaming: bool | None = None,
    parallel: bool = False,
) -> Source:
    """A hub dataset split: `datasets.load_dataset(name, config, split=..., streaming=...)`, the
    same call as for local files with a name instead of files, using the hub cache the usual way.
    `streaming=None`: stream splits over 1 GiB (or of unknown size), download smaller ones.
    `parallel`: the configs are row-aligned translations, so ids leave the config out."""
    import datasets

    if not split:
        raise UsageError(f"--dataset {name}: give --split (e.g. --split test)")
    what = f"--dataset {name}" + (f" --config {config}" if config else "") + f" --split {split}"
    quiet_datasets()
    try:
        if streaming is None:
            streaming = _stream_by_default(name, config, split)
        ds = datasets.load_dataset(name, config, split=split, streaming=streaming)
        if streaming:
            # One shard per Parquet row group: Arrow's scanner decodes a row group at a time and
            # reads ahead across a file's row groups; per shard, memory is one row group's.
            ds = ds.reshard()
    except (XltError, RecordError):
        raise
    except Exception as exc:
        raise _hub_error(exc, what) from None
    log.debug(f"{what}: {'streaming' if streaming else 'from the hub cache'}")
    source = "/".join(x for x in (name, config, split) if x)
    id_base = "/".join(x for x in (name, split) if x) if parallel else source
    columns = list(ds.column_names) if ds.column_names else None
    return Source(name=source, id_base=id_base, format="hub", rows=_dataset_rows(ds, source, bad_input=False),
                  features=ds.features, columns=columns, config=config)
