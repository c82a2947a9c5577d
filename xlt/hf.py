"""Small helpers around torch/transformers shared by every stage (imported lazily by callers)."""

from __future__ import annotations

import os

from xlt import log
from xlt.errors import UsageError


def quiet_transformers() -> None:
    """No transformers/datasets progress bars or info logs on stderr unless --verbose."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_warning() if log.state.verbose else transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def resolve_device(spec: str = "auto") -> str:
    """`auto` -> cuda when available else cpu; `cpu`, `cuda`, `cuda:N` checked."""
    import torch

    spec = (spec or "auto").lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
        return spec
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {spec!r}")
