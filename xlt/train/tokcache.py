"""A tokenization cache: token ids of a dataset stored once as a memory-mapped Arrow file.

Training and distillation tokenize every record of their input before the first step. The cache
keeps the result under `$XLT_HOME/tokenized/<key>/` (a `datasets` Arrow file plus `meta.json`),
keyed by a digest of the tokenizer (its full serialisation and settings), the max length, the text
fields and the texts themselves, so a second run on the same data with the same tokenizer reads
the ids instead of re-tokenizing them. The Arrow file is memory-mapped: the ids of a large corpus
stay out of the Python heap (a list of lists costs about ten times the bytes).

`XLT_NO_TOKEN_CACHE=1` turns the cache off (tokenize in memory, write nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

from xlt import log
from xlt.cache import cache_dir, publish_dir
from xlt.train.data import Encoded, tokenize

FORMAT = 1  # bump when the stored layout changes
ARROW = "data.arrow"
META = "meta.json"


def cache_root() -> str:
    return cache_dir("tokenized")


def enabled() -> bool:
    return os.environ.get("XLT_NO_TOKEN_CACHE", "").strip().lower() in ("", "0", "false", "no")


def tokenizer_digest(tokenizer: Any) -> str | None:
    """A content digest of a fast tokenizer (vocabulary, normaliser, pre-tokenizer, post-processor,
    truncation side, special tokens), or None when it cannot be serialised (then nothing is cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        spec = json.loads(backend.to_str())
    except Exception:  # noqa: BLE001 - an unserialisable tokenizer is simply not cached
        return None
    # Truncation/padding are call state the previous `tokenizer(...)` call left behind, not identity.
    spec.pop("truncation", None)
    spec.pop("padding", None)
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    settings = {"class": type(tokenizer).__name__, "truncation_side": getattr(tokenizer, "truncation_side", None),
                "special": {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}}
    h.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def texts_digest(texts: Sequence[tuple[str, ...]]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(json.dumps(t, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def cache_key(tokenizer_id: str, *, max_length: int, fields: Sequence[str], texts: Sequence[tuple[str, ...]]) -> str:
    spec = {"format": FORMAT, "tokenizer": tokenizer_id, "max_length": max_length, "fields": list(fields),
            "texts": texts_digest(texts), "n": len(texts)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()[:32]


class ArrowEncoded(Encoded):
    """Token ids read from a memory-mapped Arrow table (columns input_ids, token_type_ids?, length)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._table = dataset.data.table
        self._has_types = "token_type_ids" in self._table.column_names
        self._lengths = self._table.column("length").to_pylist()
        self.ids = _Column(self._table, "input_ids")  # type: ignore[assignment]
        self.types = _Column(self._table, "token_type_ids") if self._has_types else None  # type: ignore[assignment]

    def lengths(self) -> list[int]:
        return list(self._lengths)

    def batch(self, rows: Sequence[int], *, pad_id: int) -> dict[str, Any]:
        import torch

        rows = list(rows)
        lens = [self._lengths[i] for i in rows]
        width = max(lens)
        mask = torch.arange(width).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)
        batch = {"input_ids": _padded(self._table, "input_ids", rows, mask, pad_id),
                 "attention_mask": mask.long()}
        if self._has_types:
            batch["token_type_ids"] = _padded(self._table, "token_type_ids", rows, mask, 0)
        return batch


class _Column:
    """Read-only sequence view of one list column (for code that indexes `encoded.ids`)."""

    def __init__(self, table: Any, name: str) -> None:
        self._col = table.column(name)

    def __len__(self) -> int:
        return len(self._col)

    def __getitem__(self, i: int) -> list[int]:
        return self._col[i].as_py()

    def __iter__(self) -> Any:
        for chunk in self._col.chunks:
            yield from chunk.to_pylist()


def _padded(table: Any, name: str, rows: list[int], mask: Any, pad: int) -> Any:
    """One padded int64 tensor from the Arrow rows: the flat values scattered into the mask."""
    import numpy as np
    import pyarrow.compute as pc
    import torch

    taken = table.column(name).take(rows)
    flat = pc.list_flatten(taken).to_numpy(zero_copy_only=False).astype(np.int64)
    out = torch.full(tuple(mask.shape), pad, dtype=torch.long)
    out[mask] = torch.from_numpy(flat)
    return out


def _write(path: str, tokenizer: Any, texts: Sequence[tuple[str, ...]], *, max_length: int, chunk: int) -> int:
    """Tokenize `texts` chunk by chunk into the Arrow file `path` (the whole list is never held)."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    writer: Any = None
    n = 0
    try:
        for start in range(0, len(texts), chunk):
            enc = tokenize(tokenizer, texts[start:start + chunk], max_length=max_length, chunk=chunk)
            cols: dict[str, Any] = {"input_ids": enc.ids, "length": enc.lengths()}
            if enc.types is not None:
                cols["token_type_ids"] = enc.types
            if writer is None:
                features = datasets.Features({k: datasets.Sequence(datasets.Value("int32")) if k != "length"
                                              else datasets.Value("int32") for k in cols})
                writer = ArrowWriter(features=features, path=path)
            writer.write_batch(cols)
            n += len(enc.ids)
    finally:
        if writer is not None:
            writer.finalize()
            writer.close()
    return n


def cached_tokenize(tokenizer: Any, texts: Sequence[tuple[str, ...]], *, max_length: int, fields: Sequence[str],
                    what: str = "records", chunk: int = 4096) -> Encoded:
    """`tokenize` through the cache: the stored ids when this tokenizer, max length, fields and
    texts were tokenized before, else tokenize, store (atomically) and return them memory-mapped.
    Falls back to plain in-memory `tokenize` when the cache is off, the tokenizer has no
    serialisation, or the cache directory cannot be written."""
    if not texts or not enabled() or isinstance(texts[0][0], list):  # words (tagging): not cached
        return tokenize(tokenizer, texts, max_length=max_length)
    tok_id = tokenizer_digest(tokenizer)
    if tok_id is None:
        log.debug("tokenization cache: this tokenizer cannot be serialised; tokenizing in memory")
        return tokenize(tokenizer, texts, max_length=max_length)
    import datasets

    key = cache_key(tok_id, max_length=max_length, fields=fields, texts=texts)
    final = os.path.join(cache_root(), key)
    arrow = os.path.join(final, ARROW)
    if os.path.isfile(arrow) and os.path.isfile(os.path.join(final, META)):
        ds = datasets.Dataset.from_file(arrow, in_memory=False)
        if len(ds) == len(texts):
            log.info(f"tokenization cache: read {len(ds)} tokenized {what} from {final}")
            return ArrowEncoded(ds)
        log.warn(f"tokenization cache: {final} holds {len(ds)} rows, expected {len(texts)}; tokenizing again")
        shutil.rmtree(final, ignore_errors=True)
    elif os.path.isdir(final):  # incomplete (written by hand or an old layout): replace it
        shutil.rmtree(final, ignore_errors=True)

    def fill(tmp: str) -> dict[str, Any]:
        n = _write(os.path.join(tmp, ARROW), tokenizer, texts, max_length=max_length, chunk=chunk)
        return {"format": FORMAT, "tokenizer": tok_id, "tokenizer_name": getattr(tokenizer, "name_or_path", None),
                "max_length": max_length, "fields": list(fields), "texts": texts_digest(texts), "n": n}

    try:  # another process (e.g. a DDP rank) may publish the same entry first: then it is used
        n = publish_dir(final, fill, meta_file=META)["n"]
    except OSError as exc:
        log.warn(f"tokenization cache: cannot write {cache_root()} ({exc}); tokenizing in memory")
        return tokenize(tokenizer, texts, max_length=max_length)
    log.info(f"tokenization cache: tokenized {n} {what} into {final}")
    return ArrowEncoded(datasets.Dataset.from_file(arrow, in_memory=False))
