"""The one home of every xlt cache (built-in models, converted MT models and encoders, token ids,
content digests): `$XLT_HOME`, else `$XDG_CACHE_HOME/xlt`, else `~/.cache/xlt`."""

from __future__ import annotations

import os


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
