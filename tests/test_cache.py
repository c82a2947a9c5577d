"""One cache home: every xlt cache lives under `$XLT_HOME`, else `$XDG_CACHE_HOME/xlt`."""

from __future__ import annotations

import json
import os

import pytest


def cache_roots() -> dict[str, str]:
    from xlt.digest import _memo_path
    from xlt.inference.ct2_engine import encoders_root
    from xlt.models.builtin import models_dir
    from xlt.mt.model import cache_root
    from xlt.train.tokcache import cache_root as cache_dir

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


def test_publish_dir_is_atomic_and_cleans_up(tmp_path):
    """One atomic publish: the entry appears complete (metadata last) or not at all."""
    from xlt.cache import publish_dir

    target = tmp_path / "kind" / "entry"

    def fill(tmp):
        assert os.path.dirname(tmp) == str(tmp_path / "kind") and not target.exists()
        (tmp_path / "kind" / os.path.basename(tmp) / "data").write_text("x")
        return {"n": 1}

    assert publish_dir(str(target), fill, meta_file="meta.json") == {"n": 1}
    assert sorted(os.listdir(target)) == ["data", "meta.json"] and os.listdir(tmp_path / "kind") == ["entry"]

    def broken(tmp):
        (tmp_path / "kind" / os.path.basename(tmp) / "data").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_dir(str(tmp_path / "kind" / "other"), broken, meta_file="meta.json")
    assert os.listdir(tmp_path / "kind") == ["entry"]


def test_publish_dir_keeps_a_concurrent_winner(tmp_path):
    from xlt.cache import publish_dir

    target = tmp_path / "entry"

    def racing(tmp):  # another job publishes the same entry while this one fills its own
        target.mkdir()
        (target / "meta.json").write_text('{"winner": true}')
        (target / "data").write_text("theirs")
        return {"winner": False}

    publish_dir(str(target), racing, meta_file="meta.json")
    assert (target / "data").read_text() == "theirs" and os.listdir(tmp_path) == ["entry"]


def test_publish_dir_replace_puts_the_previous_one_back_on_failure(tmp_path, monkeypatch):
    import xlt.cache

    target = tmp_path / "entry"
    xlt.cache.publish_dir(str(target), lambda tmp: {"v": 1}, meta_file="meta.json")
    xlt.cache.publish_dir(str(target), lambda tmp: {"v": 2}, meta_file="meta.json", replace=True)
    assert json.loads((target / "meta.json").read_text()) == {"v": 2} and os.listdir(tmp_path) == ["entry"]
    real = os.rename

    def failing(src, dst):
        if os.path.basename(src).startswith(".entry.tmp-"):
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(xlt.cache.os, "rename", failing)
    with pytest.raises(OSError, match="rename failed"):
        xlt.cache.publish_dir(str(target), lambda tmp: {"v": 3}, meta_file="meta.json", replace=True,
                              complete=lambda path: False)
    assert json.loads((target / "meta.json").read_text()) == {"v": 2} and os.listdir(tmp_path) == ["entry"]
