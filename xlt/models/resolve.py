"""One model resolver for every stage's `--model`, `--teacher` and `--student`.

A name is, in this order: an existing local directory (a Hugging Face model dir or an xlt
checkpoint); a built-in offline model (`xlt.models.builtin`), built into the cache on first use;
or a model hub id, returned unchanged so transformers loads it the usual way (with its cache).
"""

from __future__ import annotations

import os

from xlt.errors import UsageError
from xlt.models.builtin import BUILTIN, build_builtin


def _looks_like_path(name: str) -> bool:
    # A hub id is NAME or OWNER/NAME; anything else can only have meant a directory.
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(("/", os.sep))
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


def _hub_error(name: str) -> str | None:
    """None when transformers can load the config of hub id `name`, else why not (one line)."""
    try:
        from transformers import AutoConfig

        from xlt.hf import quiet_transformers

        quiet_transformers()
        AutoConfig.from_pretrained(name)
    except Exception as exc:  # OSError, HFValidationError, ValueError, connection errors...
        text = " ".join(str(exc).split()) or type(exc).__name__
        return text if len(text) <= 300 else text[:297] + "..."
    return None


def resolve_model(name: str, *, option: str = "--model") -> str:
    """A local directory path or a hub id that `from_pretrained` can load for `name`.

    An existing directory must hold a `config.json`; a built-in name gives its cache directory
    (building it on first use); anything else must load as a hub id. Otherwise a `UsageError`
    says what was tried.
    """
    builtins = ", ".join(BUILTIN)
    if not name or not name.strip():
        raise UsageError(f"{option}: empty model name; give a directory, a built-in model ({builtins}) or a hub id")
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config) and os.path.isfile(os.path.join(path, "adapter_config.json")):
            return path  # a peft adapter: its base model is resolved when it loads (xlt.train.lora)
        if not os.path.isfile(config):
            raise UsageError(f"{option} {name}: directory has no config.json; expected a Hugging Face model "
                             "directory or an xlt checkpoint")
        from xlt.errors import InputError
        from xlt.io import load_json

        if not isinstance(load_json(config, what="model config"), dict):  # corrupt: one line naming it, exit 2
            raise InputError(f"{config}: not a model config (expected a JSON object)")
        return path
    if os.path.exists(path):
        raise UsageError(f"{option} {name}: is a file; expected a model directory, a built-in model "
                         f"({builtins}) or a hub id")
    if name in BUILTIN:
        return build_builtin(name)
    if _looks_like_path(name):
        raise UsageError(f"{option} {name}: no such directory, and not a built-in model ({builtins}) "
                         "or a hub id (NAME or OWNER/NAME)")
    reason = _hub_error(name)
    if reason is not None:
        raise UsageError(f"{option} {name}: not a local directory, not a built-in model ({builtins}), "
                         f"and the hub id could not be loaded: {reason}")
    return name
