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
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from xlt.errors import InputError, OutputExistsError, RecordError, UsageError, XltError

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


#: Raw-line patterns that may hide a value the contract forbids; only lines that match are walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BIG_EXPONENT = re.compile(rb"[0-9][eE][+]?[0-9]{3}")


def _reject_constant(name: str) -> Any:
    raise RecordError(f"non-finite number {name} (JSON has no NaN or Infinity; the value must be a finite number)")


def find_invalid(obj: Any, path: str = "") -> str | None:
    """Where `obj` holds a non-finite float or a string with a lone surrogate (not encodable as
    UTF-8): a message naming the field, or None when the value is clean."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else f'field "{path or "value"}" is not a finite number'
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return f'field "{path or "value"}" holds a lone surrogate (\\ud800-\\udfff without its pair), not text'
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = find_invalid(k, f"{path}.<key>" if path else "<key>") or find_invalid(v, f"{path}.{k}" if path else str(k))
            if bad:
                return bad
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad = find_invalid(v, f"{path}[{i}]")
            if bad:
                return bad
    return None


def _parse_line(raw: bytes) -> Record:
    try:
        # utf-8-sig: a byte order mark (Windows editors write one) is not part of the record.
        text = raw.decode("utf-8-sig") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        # Without the line end, so a truncated line reports its own column, not "column 1".
        obj = json.loads(text.rstrip("\r\n"), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__ if obj is not None else 'null'}")
    # Valid JSON that is still bad input: 1e400 parses to inf, "\ud800" to an unencodable string.
    if _SURROGATE_ESCAPE.search(raw) or _BIG_EXPONENT.search(raw):
        bad = find_invalid(obj)
        if bad:
            raise RecordError(bad)
    return obj


def iter_located(
    sources: Sequence[str] | None,
    *,
    validate: Callable[[Record], None] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> Iterator[tuple[str, Record]]:
    """Yield ``("FILE:LINE", record)`` for every JSON object line of `sources` (stdin if empty).

    `validate` may raise `RecordError` (a bad record: prefixed with the location, skippable) or
    `UsageError` (input the stage refuses as a whole, e.g. tagging records where sentences are
    needed: prefixed with the location, never skipped). Blank
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
            lineno = 0
            try:
                lines = iter(fh)
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
                    except UsageError as exc:  # input a stage refuses as a whole: never skipped, but located
                        raise UsageError(f"{where}: {exc}") from None
                    yield where, rec
            except (OSError, EOFError) as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                # the line being read when the stream broke (a truncated .gz ends mid-record)
                raise InputError(f"{name}:{lineno + 1}: cannot read: {exc}") from None


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

    plain = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    make = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return plain
    try:
        # markers=None: no shared circular-reference table, so the encoder is thread-safe (a
        # circular structure, which JSON input cannot produce, ends in RecursionError instead).
        # allow_nan=False (the last argument): a non-finite number is never written as JSON.
        c_encode = make(None, json.JSONEncoder().default, _enc.encode_basestring, None,
                        ": ", ", ", False, False, False)
        probe = {"a": [1, 2.5, None, True, "é\n\u2028"], "b": {"c": 1e300}}
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
_ENCODE_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False).encode


class NonFiniteOutputError(XltError):
    """A stage was about to write NaN or Infinity: a bug upstream, never written (exit 1)."""


def _nonfinite(what: str) -> NonFiniteOutputError:
    return NonFiniteOutputError(f"refusing to write a non-finite number (NaN or Infinity) in {what}; "
                                "nothing was written there (please report this as a bug)")


def dumps(record: Record) -> str:
    """One JSONL line (without the newline): UTF-8 text as is, not \\u-escaped; never NaN/Infinity."""
    try:
        return _ENCODE(record)
    except ValueError as exc:
        if "JSON compliant" in str(exc):
            raise _nonfinite("a record") from None
        raise


def dump_json(obj: Any, *, what: str = "a report") -> str:
    """A pretty JSON document (reports, manifests) with a final newline; never NaN/Infinity."""
    try:
        return json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        if "JSON compliant" in str(exc):
            raise _nonfinite(what) from None
        raise


def load_json(path: str, *, what: str = "file") -> Any:
    """A JSON document the user named (a report, a manifest, a config): strict (no NaN/Infinity,
    no lone surrogates), and any failure is one line naming the file (exit 2)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON in {what}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecordError as exc:
        raise InputError(f"{path}: {exc}") from None
    bad = find_invalid(obj)
    if bad:
        raise InputError(f"{path}: {bad}")
    return obj


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


class _Staged:
    """One output written to a temporary name beside its target, renamed into place on commit."""

    def __init__(self, path: str, *, force: bool, what: str, is_dir: bool) -> None:
        if is_special(path):
            # Renaming onto /dev/null would replace the device with a file (as root, for everyone).
            raise UsageError(f"{what} {path} is a device or pipe, not a file or directory")
        check_output(path, force=force, what=what)
        if not is_dir and os.path.isdir(path):
            raise UsageError(f"{what} {path} is a directory; give a file name")
        self.path, self.force, self.what, self.is_dir = path, force, what, is_dir
        self.parent = os.path.dirname(os.path.abspath(path)) or "."
        os.makedirs(self.parent, exist_ok=True)
        self.base = os.path.basename(path.rstrip("/"))
        if is_dir:
            self.tmp = tempfile.mkdtemp(prefix=f".{self.base}.tmp-", dir=self.parent)
        else:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.base}.tmp-", dir=self.parent)
            os.close(fd)

    def check(self) -> None:
        """What would make the rename fail or clobber, checked for every output before any is renamed."""
        if os.path.lexists(self.path):
            if not self.force:  # appeared while we worked
                raise OutputExistsError(self.path, self.what)
            if not self.is_dir and os.path.isdir(self.path) and not os.path.islink(self.path):
                raise UsageError(f"{self.what} {self.path} is a directory; give a file name")

    def commit(self) -> None:
        # mkdtemp/mkstemp create private (0700/0600) entries: give the result normal permissions
        if os.path.isdir(self.tmp):
            os.chmod(self.tmp, 0o777 & ~_umask())
        elif os.path.exists(self.tmp):
            os.chmod(self.tmp, 0o666 & ~_umask())
        self.check()
        if os.path.lexists(self.path) and (self.is_dir or (os.path.isdir(self.path) and not os.path.islink(self.path))):
            # rename() cannot replace a non-empty directory (nor a file by a directory):
            # move the old target aside, put the new one in place, then delete the old.
            old = tempfile.mkdtemp(prefix=f".{self.base}.old-", dir=self.parent)
            os.rmdir(old)
            os.replace(self.path, old)
            try:
                os.replace(self.tmp, self.path)
            except BaseException:
                os.replace(old, self.path)
                raise
            _remove(old)
            return
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        _remove(self.tmp)


def output_key(path: str) -> str:
    """The identity of an output path: `o/a.jsonl`, `./o/a.jsonl` and a link to it are one file."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


class OutputSet:
    """All the outputs of one command, committed together: every file appears, or none does.

    Paths are compared by resolved path (two spellings of one file, a symlink, a hard link) and
    refused before anything is written; at most one output is stdout. Use as a context manager:
    outputs are staged under temporary names and renamed into place when the block succeeds; on
    any exception (bad input, Ctrl-C, SIGTERM, a closed pipe) every temporary is removed.
    """

    def __init__(self, *, force: bool) -> None:
        self.force = force
        self._claimed: dict[str, str] = {}
        self._stdout = False
        self._staged: list[_Staged] = []
        self._stack = contextlib.ExitStack()

    def claim(self, path: str | None, *, what: str = "output") -> None:
        """Reserve `path` (None or `-`: stdout) for this command; check it before any work is done."""
        if not path or path == STDIN:
            if self._stdout:
                raise UsageError(f"two outputs go to stdout (the {what} and another); give one of them a file")
            self._stdout = True
            return
        key = output_key(path)
        other = self._claimed.get(key)
        if other is None and os.path.exists(path):
            for k, name in self._claimed.items():
                if os.path.exists(k) and os.path.samefile(k, path):
                    other = name
        if other is not None:
            raise UsageError(f"{what} {path} and {other} are the same file; give each output its own path")
        if not is_special(path):
            check_output(path, force=self.force, what=what)
        self._claimed[key] = f"{what} {path}"

    def claim_all(self, paths: Iterable[tuple[str | None, str]]) -> None:
        for path, what in paths:
            if path is not None:
                self.claim(path, what=what)

    def path(self, path: str, *, what: str = "output", is_dir: bool = False) -> str:
        """A temporary path (file or directory) that becomes `path` when the set commits."""
        if output_key(path) not in self._claimed:
            self.claim(path, what=what)
        staged = _Staged(path, force=self.force, what=what, is_dir=is_dir)
        self._staged.append(staged)
        return staged.tmp

    def text(self, path: str | None, *, what: str = "output") -> IO[str]:
        """A UTF-8 text stream for `path`: stdout for None or `-`, a device written in place, else
        a staged file (`.gz` compressed) that appears on commit."""
        if not path or path == STDIN:
            if not self._stdout:
                self.claim(path, what=what)
            return _stdout()
        if is_special(path):
            if output_key(path) not in self._claimed:
                self.claim(path, what=what)
            raw: IO[bytes] = self._stack.enter_context(open(path, "wb"))
            if path.endswith(".gz"):
                raw = self._stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb"))  # type: ignore[arg-type]
            return self._stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", newline="\n"))
        tmp = self.path(path, what=what)
        raw = gzip.open(tmp, "wb") if path.endswith(".gz") else open(tmp, "wb")  # type: ignore[assignment]
        return self._stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", newline="\n"))

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._stack.close()  # flush and close every stream (a full disk fails here, before any rename)
            if exc_type is None:
                if self._stdout:
                    sys.stdout.flush()
                for staged in self._staged:
                    staged.check()
                for staged in self._staged:
                    staged.commit()
        except BaseException:
            for staged in self._staged:
                staged.abort()
            raise
        if exc_type is not None:
            for staged in self._staged:
                staged.abort()


def _stdout() -> IO[str]:
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper) and (out.encoding.lower().replace("-", "") != "utf8" or out.errors != "strict"):
        # The contract is UTF-8 whatever the locale; `strict` so a lone surrogate cannot slip
        # out as invalid bytes (write_records escapes it instead).
        out.reconfigure(encoding="utf-8", errors="strict")
    return out


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool, what: str = "output", is_dir: bool = False) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    On any exception (in the block or while renaming) the temporary file or directory is removed
    and `path` is untouched. With `force` an existing target of the same kind is replaced; a file
    output never replaces a directory (that would delete a whole tree by mistake).
    """
    with OutputSet(force=force) as outputs:
        yield outputs.path(path, what=what, is_dir=is_dir)


@contextlib.contextmanager
def open_output(path: str | None, *, force: bool, what: str = "output") -> Iterator[IO[str]]:
    """A text stream for records: stdout for None or `-`, else a file written atomically.

    A `.gz` target is gzip-compressed. A device or named pipe (`/dev/null`, a FIFO) is written in
    place: there is nothing to rename onto it, and replacing it would be a disaster.
    """
    with OutputSet(force=force) as outputs:
        yield outputs.text(path, what=what)


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
        line = dumps(rec) + "\n"
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
