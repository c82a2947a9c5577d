"""Versions of what xlt runs on, for bug reports, manifests and score signatures."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from xlt import __version__


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions only (cheap: no heavy imports)."""
    return {
        "python": platform.python_version(),
        "xlt": __version__,
        "torch": package_version("torch"),
        "transformers": package_version("transformers"),
        "ctranslate2": package_version("ctranslate2"),
        "datasets": package_version("datasets"),
    }


def environment() -> dict[str, str]:
    """Versions plus CUDA availability and the platform."""
    info = versions()
    info["platform"] = f"{platform.system()} {platform.machine()} ({sys.implementation.name})"
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            info["cuda"] = f"available: {torch.version.cuda}, {torch.cuda.device_count()} device(s): {names}"
        else:
            info["cuda"] = "not available"
        info["torch threads"] = str(torch.get_num_threads())
    except ImportError:
        info["cuda"] = "unknown (torch not installed)"
    try:
        import ctranslate2

        info["ctranslate2 cuda devices"] = str(ctranslate2.get_cuda_device_count())
    except ImportError:
        pass
    return info
