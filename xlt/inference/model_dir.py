"""What the torch and CTranslate2 engines share: a classifier read from a model directory (an xlt
checkpoint or any Hugging Face sequence-classification model) or a hub id."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def pad_id_of(tokenizer: Any) -> int:
    """The padding token id (0 when the tokenizer has none, or there is no tokenizer)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else 0


class ModelDir:
    """The base of the engines that run a model directory or hub id (`xlt.inference.types.Engine`):
    its tokenizer, `xlt.json` manifest, label order and content digest."""

    kind = ""
    model: Any = None
    compute_type: str | None = None

    def __init__(self, resolved: str, *, spec: str, tokenizer: Any, manifest: dict[str, Any],
                 labels: Sequence[Any]) -> None:
        self.resolved = resolved
        self.spec = spec  # as the user named it
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.labels = list(labels)
        self.pad_id = pad_id_of(tokenizer)
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """The model's content digest (`xlt.digest.dir_digest`), `hub:<id>` for a hub model."""
        if self._digest is None:
            from xlt.digest import dir_digest

            self._digest = dir_digest(self.resolved) if os.path.isdir(self.resolved) else f"hub:{self.spec}"
        return self._digest

    def note(self) -> str | None:
        return None
