"""Checkpoint directories: Hugging Face model + tokenizer + `xlt.json` manifest, written atomically.

A checkpoint loads with plain `AutoModelForSequenceClassification.from_pretrained(dir)` (id2label
set, safetensors weights); `xlt.json` records the text fields, labels, max length, resolved
options, seed, input digests, versions, dev metrics per evaluation and the training log.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from xlt.errors import UsageError

MANIFEST = "xlt.json"


def read_manifest(path: str) -> dict[str, Any]:
    """The `xlt.json` of a checkpoint dir ({} for a plain Hugging Face model dir)."""
    p = os.path.join(path, MANIFEST)
    if not os.path.isfile(p):
        return {}
    with open(p, encoding="utf-8") as fh:
        return json.load(fh)


def manifest_source_langs(manifest: dict[str, Any]) -> list[str]:
    """The languages a checkpoint's labels came from: `source_langs` (distill), else the languages
    it was taught on (`train_langs` of teach)."""
    if "source_langs" in manifest:
        return list(manifest["source_langs"] or [])
    return list(manifest.get("train_langs") or {})


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, os.path.join(path, MANIFEST))


def model_digest(path: str) -> str:
    """A short content digest of a model dir's weights (for signatures and soft-label provenance)."""
    h = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n.endswith((".safetensors", ".bin", "config.json")))
    if not names:
        raise UsageError(f"{path}: no model weights found")
    for name in names:
        st = os.stat(os.path.join(path, name))
        h.update(f"{name}:{st.st_size}".encode())
        with open(os.path.join(path, name), "rb") as fh:
            # Size plus head and tail: cheap for multi-GB files, and changes whenever training did.
            h.update(fh.read(1 << 20))
            if st.st_size > 1 << 21:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return "sha256:" + h.hexdigest()[:16]


def save_checkpoint(model: Any, tokenizer: Any, path: str, manifest: dict[str, Any]) -> None:
    """Save into an (empty, temporary) directory; the caller renames it into place."""
    from xlt.hf import quiet_transformers

    quiet_transformers()  # no "Writing model shards" bar (students built from scratch never loaded transformers quietly)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    write_manifest(path, manifest)
