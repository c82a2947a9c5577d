"""Content digests of model directories: the one key of every model cache and provenance record.

`dir_digest(path)` is `sha256:<hex>` over every file of a model directory that can change what
the model computes (weights, config.json, tokenizer files, anything else in it), each as its
relative name, size and sha256 of its full content, in name order. Left out: the checkpoint
manifest `xlt.json` (it stores the digest itself), hidden files and directories (`.git`,
`.cache`, temporary names) and the top-level `runs/` (experiment-tracking logs, xlt's and
transformers Trainer's: TensorBoard, wandb and MLflow write there, `wandb sync` marks runs synced,
and none of it changes what the model computes).

Reading every byte costs ~1 s per GB (me5-small, 487 MB: 0.3 s cached, 1.0 s cold), so a digest
is computed once per state of the files and reused while every file's stat signature (size,
mtime_ns, ctime_ns, inode) is unchanged.
ctime cannot be set back (`os.utime`, `cp -p`, `rsync -t` restore mtime only), so a file edited in
place shows even with its size and mtime restored. Where the digest is kept:

- a checkpoint xlt writes (`xlt.train.checkpoint.save_checkpoint`) stores it with the signatures
  in its `xlt.json` (`content_digest`);
- any other directory is remembered in `$XLT_HOME/digests/<key>.json`, keyed by its real path and
  the signatures, written atomically. Files changed within the last `RACY_SECONDS` are not
  remembered (timestamps are coarser than the writes they record: git's "racy clean" problem).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from xlt import log
from xlt.errors import UsageError, XltError

#: A checkpoint's manifest (`xlt.train.checkpoint`): it stores the digest, so it is not digested.
MANIFEST = "xlt.json"
#: Bump when what is hashed changes: stored digests of another format are recomputed.
FORMAT = 1
#: The top-level directory of experiment-tracking logs (xlt.train.tracking writes there, as does
#: transformers' Trainer): not the model.
RUNS_DIR = "runs"
#: Key of the stored digest in a checkpoint's `xlt.json`.
MANIFEST_KEY = "content_digest"
RACY_SECONDS = 2.0
_TRIES = 3

Signature = dict[str, dict[str, int]]


def dir_digest(path: str) -> str:
    """`sha256:<hex>` of the model directory `path`'s content (see the module docstring), from a
    stored digest when the files are untouched since it was computed."""
    files = stat_files(path)
    stored = _from_manifest(path, files)
    if stored is not None:
        return stored
    memo = _memo_path(path, files)
    value = _read_memo(memo, path, files)
    if value is not None:
        return value
    started = time.time_ns()
    value, files = _compute(path, files)
    newest = max(max(st["mtime_ns"], st["ctime_ns"]) for st in files.values())
    if newest < started - RACY_SECONDS * 1e9:
        _write_memo(_memo_path(path, files), path, files, value)
    return value


def digest_record(path: str) -> dict[str, Any]:
    """The digest of `path` with the stat signature of each file it covers, computed now: what a
    checkpoint's `xlt.json` stores under `content_digest`."""
    value, files = _compute(path, stat_files(path))
    return {"value": value, "format": FORMAT, "files": files}


def stat_files(path: str) -> Signature:
    """{relative name: {size, mtime_ns, ctime_ns, ino}} of the files a digest covers."""
    if not os.path.isdir(path):
        raise UsageError(f"{path}: not a model directory")
    out: Signature = {}
    for root, dirs, names in os.walk(path, followlinks=True):
        rel_root = os.path.relpath(root, path)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel_root == "." and d == RUNS_DIR))
        for name in names:
            if name.startswith(".") or (rel_root == "." and name in (MANIFEST, MANIFEST + ".tmp")):
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:  # a dangling link, or removed meanwhile
                continue
            if not os.path.isfile(full):
                continue
            rel = name if rel_root == "." else os.path.join(rel_root, name).replace(os.sep, "/")
            out[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    if not out:
        raise UsageError(f"{path}: no model files in this directory")
    return dict(sorted(out.items()))


def _compute(path: str, files: Signature) -> tuple[str, Signature]:
    """Hash every file; again when one changed while it was read."""
    for _ in range(_TRIES):
        h = hashlib.sha256(f"xlt-dir-digest-{FORMAT}\n".encode())
        for name, st in files.items():
            with open(os.path.join(path, name), "rb") as fh:
                content = hashlib.file_digest(fh, "sha256").hexdigest()
            h.update(f"{name}\0{st['size']}\0{content}\n".encode("utf-8", "surrogateescape"))
        after = stat_files(path)
        if after == files:
            log.debug(f"content digest of {path}: sha256:{h.hexdigest()}")
            return "sha256:" + h.hexdigest(), files
        files = after
    raise XltError(f"{path}: its files keep changing while being read; digest it when nothing writes to it")


def _from_manifest(path: str, files: Signature) -> str | None:
    """The digest a checkpoint's `xlt.json` stores, when every file still has the stat recorded."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            stored = json.load(fh).get(MANIFEST_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(stored, dict) and stored.get("format") == FORMAT and stored.get("files") == files \
            and isinstance(stored.get("value"), str):
        return stored["value"]
    return None


def _memo_path(path: str, files: Signature) -> str:
    from xlt.cache import cache_dir

    key = json.dumps({"format": FORMAT, "path": os.path.realpath(path), "files": files}, sort_keys=True)
    return os.path.join(cache_dir("digests"), hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest() + ".json")


def _read_memo(memo: str, path: str, files: Signature) -> str | None:
    try:
        with open(memo, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("path") == os.path.realpath(path) and data.get("files") == files \
            and isinstance(data.get("value"), str):
        return data["value"]
    return None


def _write_memo(memo: str, path: str, files: Signature, value: str) -> None:
    """Remember a digest; a cache that cannot be written only costs a rehash next time."""
    from xlt.io import atomic_path

    try:
        with atomic_path(memo, force=True, what="digest record") as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"format": FORMAT, "path": os.path.realpath(path), "value": value, "files": files}, fh)
    except (OSError, XltError) as exc:
        log.debug(f"cannot remember the digest of {path} in {memo}: {exc}")
