"""Small helpers around torch/transformers shared by every stage (imported lazily by callers): quiet
logs, the `--device` reading of every runtime, safetensors-only loading."""

from __future__ import annotations

import os
from collections.abc import Callable

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


def parse_device(spec: str | None, *, gpus: Callable[[], int], runtime: str) -> tuple[str, int | None]:
    """The one reading of `--device` for every runtime (torch, CTranslate2): `auto` -> cuda when
    `gpus()` (the CUDA devices `runtime` sees) is not 0, else cpu; `cpu`; `cuda` or `cuda:N`,
    checked against `gpus()`. Returns ("cpu" or "cuda", N or None when no index was given)."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return ("cuda", None) if gpus() else ("cpu", None)
    if spec == "cpu":
        return "cpu", None
    if spec == "cuda" or spec.startswith("cuda:"):
        index_s = spec.partition(":")[2]
        if index_s and not index_s.isdigit():
            raise UsageError(f"--device {spec}: expected cuda:N")
        count = gpus()
        if not count:
            raise UsageError(f"--device {spec}: {runtime} sees no CUDA device on this machine")
        if index_s and int(index_s) >= count:
            raise UsageError(f"--device {spec}: only {count} CUDA device(s)")
        return "cuda", int(index_s) if index_s else None
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {spec!r}")


def resolve_device(spec: str = "auto") -> str:
    """`--device` for torch (`parse_device`): "cpu", "cuda" or "cuda:N"."""
    import torch

    def gpus() -> int:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    kind, index = parse_device(spec, gpus=gpus, runtime=f"torch {torch.__version__}")
    return kind if index is None else f"{kind}:{index}"


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
