"""Checkpoint directories: Hugging Face model + tokenizer + `xlt.json` manifest, written atomically.

A checkpoint loads with plain `AutoModelForSequenceClassification.from_pretrained(dir)` (id2label
set, safetensors weights; a LoRA run's merged model, with its adapter in `adapter/`); `xlt.json` records the text fields, labels, max length, resolved
options, seed, input digests, versions, dev metrics per evaluation, the training log and the
content digest of the checkpoint's other files (`content_digest`, see xlt.digest).
"""

from __future__ import annotations

import json
import os
from typing import Any

from xlt.digest import MANIFEST, MANIFEST_KEY, digest_record


def read_manifest(path: str) -> dict[str, Any]:
    """The `xlt.json` of a checkpoint dir ({} for a plain Hugging Face model dir)."""
    from xlt.errors import InputError
    from xlt.io import load_json

    p = os.path.join(path, MANIFEST)
    if not os.path.isfile(p):
        return {}
    manifest = load_json(p, what="checkpoint manifest")  # a corrupt one: one line naming it, exit 2
    if not isinstance(manifest, dict):
        raise InputError(f"{p}: not an xlt checkpoint manifest (expected a JSON object)")
    return manifest


def manifest_source_langs(manifest: dict[str, Any]) -> list[str]:
    """The languages a checkpoint's labels came from: `source_langs` (distill), else the languages
    it was taught on (`train_langs` of teach)."""
    if "source_langs" in manifest:
        return list(manifest["source_langs"] or [])
    return list(manifest.get("train_langs") or {})


def manifest_training_info(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """How a checkpoint was trained, from its manifest (None for a model xlt did not train):
    what `xlt eval` records in its report's signature and `xlt report` shows."""
    if not manifest:
        return None
    training = manifest.get("training") or {}
    info: dict[str, Any] = {
        "kind": manifest.get("kind"), "seed": manifest.get("seed"),
        "base_model": manifest.get("base_model") or manifest.get("student") or manifest.get("student_arch"),
        "train_langs": manifest.get("train_langs"), "steps": training.get("steps"),
        "epochs": training.get("epochs"), "examples_seen": training.get("examples_seen"),
        "train_seconds": training.get("train_seconds"),
    }
    if manifest.get("objective"):
        info["objective"] = manifest["objective"]
    if manifest.get("robust"):
        info["robust"] = manifest["robust"]
    if manifest.get("peft"):
        info["peft"] = manifest["peft"]
    return info


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, os.path.join(path, MANIFEST))


def save_checkpoint(model: Any, tokenizer: Any, path: str, manifest: dict[str, Any]) -> None:
    """Save into an (empty, temporary) directory; the caller renames it into place."""
    from xlt.hf import quiet_transformers

    from xlt.train.lora import ADAPTER_DIR, is_peft, merged_copy

    quiet_transformers()  # no "Writing model shards" bar (students built from scratch never loaded transformers quietly)
    if is_peft(model):
        # LoRA: the adapter (with the trained head) in adapter/, loadable on its own with its
        # manifest and tokenizer; the checkpoint itself is the merged, plain classifier.
        adapter = os.path.join(path, ADAPTER_DIR)
        model.save_pretrained(adapter, safe_serialization=True)
        tokenizer.save_pretrained(adapter)
        write_manifest(adapter, manifest)
        model = merged_copy(model)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    # Hashed once here, while the files are fresh; read back while their stats are unchanged.
    write_manifest(path, {**manifest, MANIFEST_KEY: digest_record(path)})
