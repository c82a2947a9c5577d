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


#: Weight files that are Python pickles (loading one can run arbitrary code).
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class _Policy:
    allow_pickle: bool = False


policy = _Policy()


def allow_pickle(value: bool) -> None:
    """Set by `--allow-pickle` (the CLI) for the whole command: may pickle weights be loaded?"""
    policy.allow_pickle = bool(value)


def _weight_names(path: str) -> tuple[list[str], list[str]]:
    names = sorted(os.listdir(path))
    safe = [n for n in names if n.endswith(".safetensors") or n == "model.safetensors.index.json"]
    pickled = [n for n in names if n.endswith(PICKLE_WEIGHTS) and not n.startswith(".")
               and n not in ("model.bin",)]  # CTranslate2's model.bin is not a pickle
    return safe, pickled


def safe_load_kwargs(resolved: str, *, option: str = "--model") -> dict[str, object]:
    """`from_pretrained` options that load safetensors weights only, unless the user opted in.

    A local directory with only pickle weights (`pytorch_model.bin`) is refused with one line;
    with `--allow-pickle` it loads, with a warning. Hub ids are asked for safetensors too (most
    repositories have them); `--allow-pickle` lifts that."""
    if policy.allow_pickle:
        if os.path.isdir(resolved) and not _weight_names(resolved)[0] and _weight_names(resolved)[1]:
            log.warn(f"{option} {resolved}: loading pickle weights ({', '.join(_weight_names(resolved)[1])}) "
                     "because of --allow-pickle")
        return {}
    if os.path.isdir(resolved):
        safe, pickled = _weight_names(resolved)
        if not safe and pickled:
            raise UsageError(f"{option} {resolved}: holds only pickle weights ({', '.join(pickled)}), and loading a "
                             "pickle can run code; convert it to safetensors, or pass --allow-pickle if you trust it")
    return {"use_safetensors": True}
