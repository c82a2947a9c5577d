"""CTranslate2 for every xlt stage that runs on it (`translate`'s models, the classifier encoders of
`--engine ct2`): the device, the thread count, the compute type, and converting a Hugging Face
model once into a keyed cache directory.

ctranslate2 itself is imported inside the functions that need it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from xlt import log
from xlt.cache import keyed_dir, publish_dir
from xlt.errors import UsageError, XltError
from xlt.hf import parse_device, quiet_transformers

#: Every compute type `--compute-type` accepts (a device supports some of them).
COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
#: The compute type of exact outputs (the model's own, to ~1e-6), on every device.
EXACT_COMPUTE_TYPE = "float32"
#: The fast compute types on CPU, best first: int8 is 4x smaller and the fastest there.
FAST_ON_CPU = ("int8", "int8_float32", "float32")


def resolve_device(spec: str = "auto") -> tuple[str, int]:
    """`--device` for CTranslate2 (`xlt.hf.parse_device`): ("cpu" or "cuda", device index)."""
    import ctranslate2

    kind, index = parse_device(spec, gpus=ctranslate2.get_cuda_device_count, runtime="CTranslate2")
    return kind, index or 0


def default_threads() -> int:
    """All the cores this process may use (respects taskset/cgroups, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(threads: int) -> int:
    if threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: all cores), not {threads}")
    return threads


def intra_threads(threads: int) -> int:
    """CTranslate2's intra-op threads for `--threads` (0: every core this process may use)."""
    return check_threads(threads) or default_threads()


def choose_compute_type(requested: str | None, device: str, *, exact: bool = False,
                        fast_on_gpu: Sequence[str]) -> str:
    """The compute type to run on `device`: `requested`, checked; else `EXACT_COMPUTE_TYPE` when
    `exact`; else the first of the fast types the device supports (`FAST_ON_CPU`, or the caller's
    `fast_on_gpu`), float32 when none is."""
    if requested is None and exact:
        return EXACT_COMPUTE_TYPE
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types(device)
    if requested:
        if requested not in COMPUTE_TYPES:
            raise UsageError(f"--compute-type must be one of {', '.join(COMPUTE_TYPES)}, not {requested!r}")
        if requested not in supported:
            raise UsageError(f"--compute-type {requested}: not supported on {device} "
                             f"(supported: {', '.join(sorted(supported))})")
        return requested
    prefs = FAST_ON_CPU if device == "cpu" else fast_on_gpu
    return next((c for c in prefs if c in supported), "float32")


def conversion_dir(kind: str, name: str, *, key: str, compute_type: str) -> str:
    """Where the conversion of a model goes: `$XLT_HOME/<kind>/<name>-<compute type>-<hash>`, keyed
    by `key` (what the model's content is: its digest, or a hub id) and the compute type."""
    return keyed_dir(kind, f"{name or 'model'}-{compute_type}", f"{key}\0{compute_type}")


def convert_once(target: str, fill: Callable[[str], dict[str, Any]], *, meta_file: str, what: str,
                 compute_type: str) -> str:
    """The converted model in the cache dir `target`, converting it first when it is not there:
    `fill(tmp)` converts into a temporary dir and returns the metadata written as `meta_file`
    (the mark of a complete conversion), published atomically (`xlt.cache.publish_dir`)."""
    if os.path.isfile(os.path.join(target, meta_file)):
        log.debug(f"using the conversion of {what} in {target}")
        return target
    if os.path.lexists(target):
        raise XltError(f"{target}: exists but is not a complete conversion (no {meta_file}); remove it and rerun")
    log.info(f"converting {what} to CTranslate2 ({compute_type}) into {target} (once)")
    quiet_transformers()
    publish_dir(target, fill, meta_file=meta_file)
    return target
