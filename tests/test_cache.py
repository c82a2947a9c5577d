"""One cache home: every xlt cache lives under `$XLT_HOME`, else `$XDG_CACHE_HOME/xlt`."""

from __future__ import annotations

import os

import pytest


def cache_roots() -> dict[str, str]:
    from xlt.digest import _memo_path
    from xlt.engines import encoders_root
    from xlt.models.builtin import models_dir
    from xlt.mt.model import cache_root
    from xlt.train.tokcache import cache_dir

    return {"models": models_dir(), "mt": cache_root(), "encoders": encoders_root(), "tokenized": cache_dir(),
            "digests": os.path.dirname(_memo_path("/nowhere", {}))}


@pytest.mark.parametrize("env,expected", [
    ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/xlt"),
    ({"XLT_HOME": "{tmp}/home", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/home"),
    ({"HOME": "{tmp}/user"}, "{tmp}/user/.cache/xlt"),
])
def test_every_cache_is_under_one_root(monkeypatch, tmp_path, env, expected):
    for key in ("XLT_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    root = expected.format(tmp=tmp_path)
    roots = cache_roots()
    assert set(roots) == {"models", "mt", "encoders", "tokenized", "digests"}
    for kind, path in roots.items():
        assert os.path.dirname(path) == root, (kind, path)
