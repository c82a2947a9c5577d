"""The one JSONL reader/writer every stage uses.

- Inputs: paths or `-` (stdin); `.gz` is read transparently; streaming, one record at a time.
- Bad input (invalid UTF-8, invalid JSON, a non-object line, a record a stage rejects) raises
  `InputError("FILE:LINE: what")`, or with ``on_error="skip"`` is counted in a `SkipReport`.
- Outputs: stdout, or a file written to a temporary name and renamed when complete (never a
  partial file); an existing target is refused unless ``force``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from xlt.errors import InputError, OutputExistsError, RecordError, UsageError

Record = dict[str, Any]
STDIN = "-"
ON_ERROR_CHOICES = ("fail", "skip")


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


@dataclass
class SkipReport:
    """Bad records skipped under ``--on-error skip``: how many, and where."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 10

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {message}")

    def summary(self) -> str | None:
        if not self.count:
            return None
        more = "" if self.count <= len(self.examples) else f" (first {len(self.examples)} shown)"
        return f"skipped {self.count} bad record(s){more}: " + "; ".join(self.examples)


@contextlib.contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    if path == STDIN:
        yield sys.stdin.buffer
        return
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a JSONL file")
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            yield fh  # type: ignore[misc]
    else:
        with open(path, "rb") as fh:
            yield fh


def _parse_line(raw: bytes) -> Record:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__ if obj is not None else 'null'}")
    return obj


def iter_located(
    sources: Sequence[str] | None,
    *,
    validate: Callable[[Record], None] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> Iterator[tuple[str, Record]]:
    """Yield ``("FILE:LINE", record)`` for every JSON object line of `sources` (stdin if empty).

    `validate` may raise `RecordError`; the message is then prefixed with the location. Blank
    lines are ignored. With ``on_error="skip"`` bad lines go to `skipped` instead of raising.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise UsageError(f"--on-error must be one of {', '.join(ON_ERROR_CHOICES)}, not {on_error!r}")
    paths = list(sources) if sources else [STDIN]
    if paths.count(STDIN) > 1:
        raise UsageError("stdin (-) can be read only once")
    for path in paths:
        name = display_name(path)
        with _open_binary(path) as fh:
            try:
                lines = iter(fh)
                lineno = 0
                for raw in lines:
                    lineno += 1
                    if not raw.strip():
                        continue
                    where = f"{name}:{lineno}"
                    try:
                        rec = _parse_line(raw)
                        if validate is not None:
                            validate(rec)
                    except RecordError as exc:
                        if on_error == "skip" and skipped is not None:
                            skipped.add(where, str(exc))
                            continue
                        raise InputError(f"{where}: {exc}") from None
                    yield where, rec
            except (OSError, EOFError) as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                raise InputError(f"{name}: cannot read: {exc}") from None


def read_records(
    sources: Sequence[str] | None,
    *,
    validate: Callable[[Record], None] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> Iterator[Record]:
    """Stream the records of `sources` (see `iter_located`)."""
    for _, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
        yield rec


def dumps(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False)


def check_output(path: str | None, *, force: bool, what: str = "output") -> None:
    """Refuse an existing output before any work is done (`open_output` checks again)."""
    if path and path != STDIN and os.path.lexists(path) and not force:
        raise OutputExistsError(path, what)


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool, what: str = "output", is_dir: bool = False) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    On any exception the temporary file or directory is removed and `path` is untouched.
    """
    import shutil

    check_output(path, force=force, what=what)
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path.rstrip("/"))
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=parent)
        os.close(fd)
    try:
        yield tmp
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.path.lexists(path):
        if not force:  # appeared while we worked
            shutil.rmtree(tmp, ignore_errors=True) if is_dir else os.unlink(tmp)
            raise OutputExistsError(path, what)
        if os.path.isdir(path) and not os.path.islink(path):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(tmp, path)


@contextlib.contextmanager
def open_output(path: str | None, *, force: bool, what: str = "output") -> Iterator[IO[str]]:
    """A text stream for records: stdout for None or `-`, else a file written atomically.

    A `.gz` target is gzip-compressed.
    """
    if not path or path == STDIN:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path, force=force, what=what) as tmp:
        raw: IO[bytes] = gzip.open(tmp, "wb") if path.endswith(".gz") else open(tmp, "wb")  # type: ignore[assignment]
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as fh:
            yield fh
        os.chmod(tmp, 0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_records(records: Iterable[Record], out: IO[str]) -> int:
    """Write `records` as JSONL to `out`; return how many were written."""
    n = 0
    for rec in records:
        out.write(dumps(rec))
        out.write("\n")
        n += 1
    return n


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """Parse `--shard K/N` (1-based K): shard K of N, or None when not sharding."""
    if spec is None:
        return None
    try:
        k_s, n_s = spec.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise UsageError(f"--shard must look like K/N (e.g. 2/8), not {spec!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {spec}: need 1 <= K <= N")
    return k, n


def take_shard(records: Iterable[Record], shard: tuple[int, int] | None) -> Iterator[Record]:
    """Records number i (0-based) with i % N == K-1: deterministic, and the N shards partition
    the input. Merge shard outputs back in input order with `bin/merge-shards` (round robin)."""
    if shard is None:
        yield from records
        return
    k, n = shard
    for i, rec in enumerate(records):
        if i % n == k - 1:
            yield rec
