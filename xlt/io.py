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
from typing import IO, Any, TypeVar

from xlt.errors import InputError, OutputExistsError, RecordError, UsageError

Record = dict[str, Any]
T = TypeVar("T")
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


GZIP_MAGIC = b"\x1f\x8b"


def _check_source(path: str) -> None:
    if path == STDIN:
        return
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a JSONL file")


@contextlib.contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    """The raw bytes of `path` (or stdin), gunzipped when they start with the gzip magic.

    Sniffing rather than trusting the suffix also handles `zcat`-less pipes (`cat x.gz | xlt ...`)
    and a `.gz` name on a plain file; a JSONL text can never start with byte 0x1f.
    """
    _check_source(path)
    if path == STDIN:
        raw: IO[bytes] = sys.stdin.buffer
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        if head == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw
        return
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with fh:
        if fh.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield fh


def _parse_line(raw: bytes) -> Record:
    try:
        # utf-8-sig: a byte order mark (Windows editors write one) is not part of the record.
        text = raw.decode("utf-8-sig") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        # Without the line end, so a truncated line reports its own column, not "column 1".
        obj = json.loads(text.rstrip("\r\n"))
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
    if skipped is None:
        skipped = SkipReport()
    paths = list(sources) if sources else [STDIN]
    if paths.count(STDIN) > 1:
        raise UsageError("stdin (-) can be read only once")
    for path in paths:  # a missing second file fails before the first one's records go out
        _check_source(path)
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
                        if on_error == "skip":
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


def _make_encoder() -> Callable[[Any], str]:
    """A fast `json.dumps(obj, ensure_ascii=False)`.

    `json.dumps` with any option builds a new `JSONEncoder` and a new C encoder for every call;
    pair --all encodes half a million records, so build the C encoder once (about 40 % faster),
    and fall back to one reused `JSONEncoder` where the C accelerator is missing.
    """
    from json import encoder as _enc

    plain = json.JSONEncoder(ensure_ascii=False).encode
    make = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return plain
    try:
        # markers=None: no shared circular-reference table, so the encoder is thread-safe (a
        # circular structure, which JSON input cannot produce, ends in RecursionError instead).
        c_encode = make(None, json.JSONEncoder().default, _enc.encode_basestring, None,
                        ": ", ", ", False, False, True)
        probe = {"a": [1, 2.5, None, True, "é\n\u2028"], "b": {"c": float("inf")}}
        if "".join(c_encode(probe, 0)) != plain(probe):
            return plain
    except Exception:  # another Python's private signature: use the public path
        return plain

    def encode(obj: Any) -> str:
        if not isinstance(obj, dict):
            return plain(obj)
        return "".join(c_encode(obj, 0))

    return encode


_ENCODE = _make_encoder()
_ENCODE_ASCII = json.JSONEncoder(ensure_ascii=True).encode


def dumps(record: Record) -> str:
    """One JSONL line (without the newline): UTF-8 text as is, not \\u-escaped."""
    return _ENCODE(record)


def is_special(path: str) -> bool:
    """`path` exists (following links) and is neither a regular file nor a directory: a device
    such as /dev/null or /dev/stdout, a named pipe, a socket. Written in place, never replaced."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output(path: str | None, *, force: bool, what: str = "output") -> None:
    """Refuse an existing output before any work is done (`open_output` checks again).

    Devices and named pipes (`-o /dev/null`) hold nothing to clobber and pass without --force.
    """
    if path and path != STDIN and os.path.lexists(path) and not force and not is_special(path):
        raise OutputExistsError(path, what)


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool, what: str = "output", is_dir: bool = False) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    On any exception (in the block or while renaming) the temporary file or directory is removed
    and `path` is untouched. With `force` an existing target of the same kind is replaced; a file
    output never replaces a directory (that would delete a whole tree by mistake).
    """
    if is_special(path):
        # Renaming onto /dev/null would replace the device with a file (as root, for everyone).
        raise UsageError(f"{what} {path} is a device or pipe, not a file or directory")
    check_output(path, force=force, what=what)
    if not is_dir and os.path.isdir(path):
        raise UsageError(f"{what} {path} is a directory; give a file name")
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
        # mkdtemp/mkstemp create private (0700/0600) entries: give the result normal permissions
        if os.path.isdir(tmp):
            os.chmod(tmp, 0o777 & ~_umask())
        elif os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~_umask())
        if os.path.lexists(path):
            if not force:  # appeared while we worked
                raise OutputExistsError(path, what)
            if not is_dir and os.path.isdir(path) and not os.path.islink(path):
                raise UsageError(f"{what} {path} is a directory; give a file name")
            if is_dir or (os.path.isdir(path) and not os.path.islink(path)):
                # rename() cannot replace a non-empty directory (nor a file by a directory):
                # move the old target aside, put the new one in place, then delete the old.
                old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
                os.rmdir(old)
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old, path)
                    raise
                _remove(old)
                return
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def open_output(path: str | None, *, force: bool, what: str = "output") -> Iterator[IO[str]]:
    """A text stream for records: stdout for None or `-`, else a file written atomically.

    A `.gz` target is gzip-compressed. A device or named pipe (`/dev/null`, a FIFO) is written in
    place: there is nothing to rename onto it, and replacing it would be a disaster.
    """
    if path and path != STDIN and is_special(path):
        with contextlib.ExitStack() as stack:
            raw_special: IO[bytes] = stack.enter_context(open(path, "wb"))
            if path.endswith(".gz"):
                raw_special = stack.enter_context(gzip.GzipFile(fileobj=raw_special, mode="wb"))  # type: ignore[arg-type]
            yield stack.enter_context(io.TextIOWrapper(raw_special, encoding="utf-8", newline="\n"))
        return
    if not path or path == STDIN:
        out = sys.stdout
        if isinstance(out, io.TextIOWrapper) and (out.encoding.lower().replace("-", "") != "utf8" or out.errors != "strict"):
            # The contract is UTF-8 whatever the locale; `strict` so a lone surrogate cannot slip
            # out as invalid bytes (write_records escapes it instead).
            out.reconfigure(encoding="utf-8", errors="strict")
        yield out
        out.flush()
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
    """Write `records` as JSONL to `out`; return how many were written.

    A string holding a lone surrogate (valid JSON `"\\ud800"`, but not encodable as UTF-8) is
    written \\u-escaped, so what was read is written back.
    """
    n = 0
    write = out.write
    for rec in records:
        line = _ENCODE(rec) + "\n"
        try:
            write(line)
        except UnicodeEncodeError:  # TextIOWrapper encodes before buffering: nothing was written
            write(_ENCODE_ASCII(rec) + "\n")
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


def take_shard(records: Iterable[T], shard: tuple[int, int] | None) -> Iterator[T]:
    """Records number i (0-based) with i % N == K-1: deterministic, and the N shards partition
    the input. Merge shard outputs back in input order with `bin/merge-shards` (round robin)."""
    if shard is None:
        yield from records
        return
    k, n = shard
    for i, rec in enumerate(records):
        if i % n == k - 1:
            yield rec
