"""The one home of every xlt cache (built-in models, converted MT models and encoders, token ids,
content digests): `$XLT_HOME`, else `$XDG_CACHE_HOME/xlt`, else `~/.cache/xlt`.

Every cache entry that is a directory is published the same way (`publish_dir`): built in a
temporary directory beside its target (`.NAME.tmp-XXXX`), finished by its metadata file (the mark
of a complete entry) and renamed into place, so parallel jobs (a SLURM array, DDP ranks) never
see half an entry; a job that loses the race to another publishing the same entry keeps the
winner's, and a failed build leaves nothing behind.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any


def xlt_home() -> str:
    """`$XLT_HOME`, else `$XDG_CACHE_HOME/xlt`, else `~/.cache/xlt` (absolute, `~` expanded)."""
    home = os.environ.get("XLT_HOME")
    if home:
        return os.path.abspath(os.path.expanduser(home))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(os.path.expanduser(cache)), "xlt")


def cache_dir(kind: str) -> str:
    """The folder of one kind of cache under the home (`models`, `mt`, `encoders`, ...)."""
    return os.path.join(xlt_home(), kind)


def keyed_dir(kind: str, name: str, key: str) -> str:
    """`<home>/<kind>/<name>-<16 hex digits of sha256(key)>`: one entry per `key` (what its content
    depends on); `name`, made safe for a file name, only tells a person what the entry is."""
    slug = re.sub(r"[^\w.-]+", "-", name)
    return os.path.join(cache_dir(kind), f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}")


def publish_dir(target: str, fill: Callable[[str], dict[str, Any]], *, meta_file: str, replace: bool = False,
                complete: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Build the directory `target` atomically and return its metadata.

    `fill(tmp)` writes the content into a fresh temporary directory beside `target` and returns the
    metadata, written last as `meta_file`; then the directory is renamed onto `target`. With
    `replace` an existing `target` is moved aside first and deleted afterwards (put back if the
    rename fails). When the rename fails because another job published `target` meanwhile
    (`complete(target)`, default: it has `meta_file`), the winner's directory is kept. On any
    failure the temporary directory is removed.
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        meta = fill(tmp)
        with open(os.path.join(tmp, meta_file), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared
        done = complete or (lambda path: os.path.isfile(os.path.join(path, meta_file)))
        rename_into_place(tmp, target, replace=replace, complete=done)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def rename_into_place(tmp: str, target: str, *, replace: bool, complete: Callable[[str], bool]) -> None:
    """Rename the finished directory `tmp` onto `target` (see `publish_dir`)."""
    old = None
    if replace and os.path.lexists(target):
        # rename() cannot replace a non-empty directory: move the old one aside first
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=os.path.dirname(target))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if not complete(target):
            if old is not None and not os.path.lexists(target):
                os.rename(old, target)  # put the previous one back
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another job published it meanwhile: keep the winner's
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(target: str) -> None:
    """Delete the temporary and set-aside directories of `target` that killed jobs left behind;
    only safe while no other job can be publishing it (under a lock)."""
    parent, base = os.path.split(os.path.abspath(target))
    for kind in ("tmp", "old"):
        for path in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(base)}.{kind}-*")):
            shutil.rmtree(path, ignore_errors=True)
