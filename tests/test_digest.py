"""Model digests (xlt.digest): every byte counts, stored digests are reused only while untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

import xlt.digest
from xlt.digest import dir_digest
from xlt.errors import UsageError
from xlt.digest import dir_digest as model_digest

MIB = 1 << 20


def make_dir(path, *, weights: int = 5 * MIB) -> str:
    """A model-like dir: weights larger than the head and tail that a sampling digest would read."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.safetensors"), "wb") as fh:
        fh.write(bytes(range(256)) * (weights // 256))
    for name, text in (("config.json", '{"model_type": "bert"}'), ("tokenizer.json", '{"vocab": ["a", "b"]}'),
                       ("tokenizer_config.json", "{}")):
        with open(os.path.join(path, name), "w") as fh:
            fh.write(text)
    return str(path)


def poke(path: str, offset: int, *, keep_mtime: bool = True) -> None:
    """Change one byte in place (same size), putting the mtime back as `cp -p`/`rsync -t` would."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("XLT_HOME", str(h))
    return h


@pytest.fixture
def reads(monkeypatch):
    """Count the files whose content is hashed."""
    seen: list[str] = []
    real = hashlib.file_digest

    def counting(fh, name):
        seen.append(os.path.basename(fh.name))
        return real(fh, name)

    monkeypatch.setattr(xlt.digest.hashlib, "file_digest", counting)
    return seen


def test_a_byte_in_the_middle_of_the_weights_changes_the_digest(tmp_path, home):
    d = make_dir(tmp_path / "m")
    before = model_digest(d)
    assert model_digest(d) == before
    poke(os.path.join(d, "model.safetensors"), 5 * MIB // 2)
    after = model_digest(d)
    assert after != before
    assert after == dir_digest(d) and after.startswith("sha256:") and len(after) == len("sha256:") + 64
    # a tokenizer file is part of the model too
    poke(os.path.join(d, "tokenizer.json"), 3)
    assert model_digest(d) not in (before, after)


def test_golden_and_what_is_left_out(tmp_path, home):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_bytes(b"{}")
    (d / "sub").mkdir()
    (d / "sub" / "w.bin").write_bytes(b"abc")
    h = hashlib.sha256(b"xlt-dir-digest-1\n")
    h.update(b"config.json\x002\x00" + hashlib.sha256(b"{}").hexdigest().encode() + b"\n")
    h.update(b"sub/w.bin\x003\x00" + hashlib.sha256(b"abc").hexdigest().encode() + b"\n")
    golden = "sha256:" + h.hexdigest()
    assert dir_digest(str(d)) == golden
    # the manifest (it holds the digest) and hidden files are not the model
    (d / "xlt.json").write_text('{"seed": 1}')
    (d / ".lock").write_text("x")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref")
    # nor are tracking logs (top-level runs/: TensorBoard, wandb, MLflow), but sub/runs/ is content
    (d / "runs" / "teach").mkdir(parents=True)
    (d / "runs" / "teach" / "events.out").write_bytes(b"ev")
    assert dir_digest(str(d)) == golden
    (d / "sub" / "runs").mkdir()
    (d / "sub" / "runs" / "x").write_bytes(b"x")
    assert dir_digest(str(d)) != golden
    shutil.rmtree(d / "sub" / "runs")
    assert dir_digest(str(d)) == golden
    # names count: the same bytes under another name are another model
    os.rename(d / "sub" / "w.bin", d / "sub" / "v.bin")
    assert dir_digest(str(d)) != golden
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no model files"):
        dir_digest(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="not a model directory"):
        dir_digest(str(d / "config.json"))


def test_remembered_in_xlt_home_while_untouched(tmp_path, home, reads, monkeypatch):
    monkeypatch.setattr(xlt.digest, "RACY_SECONDS", 0)
    d = make_dir(tmp_path / "m")
    first = dir_digest(d)
    assert len(reads) == 4
    (memo,) = os.listdir(home / "digests")
    assert json.loads((home / "digests" / memo).read_text())["value"] == first
    reads.clear()
    assert dir_digest(d) == first and reads == []  # remembered: nothing read
    poke(os.path.join(d, "model.safetensors"), 3 * MIB)  # same size, same mtime: the ctime moved
    second = dir_digest(d)
    assert second != first and len(reads) == 4
    assert len(os.listdir(home / "digests")) == 2


def test_fresh_files_are_not_remembered(tmp_path, home, reads):
    """A file written within the last RACY_SECONDS may change again within its timestamps' tick."""
    d = make_dir(tmp_path / "m")
    dir_digest(d)
    dir_digest(d)
    assert len(reads) == 8 and not (home / "digests").exists()


def test_an_unwritable_home_only_costs_a_rehash(tmp_path, monkeypatch):
    monkeypatch.setattr(xlt.digest, "RACY_SECONDS", 0)
    blocker = tmp_path / "home"
    blocker.write_text("a file, not a directory")
    monkeypatch.setenv("XLT_HOME", str(blocker))
    d = make_dir(tmp_path / "m", weights=1024)
    assert dir_digest(d) == dir_digest(d)


def test_a_file_changed_while_read_is_read_again(tmp_path, home, monkeypatch):
    d = make_dir(tmp_path / "m", weights=4096)
    real = hashlib.file_digest
    calls = []

    def racing(fh, name):
        calls.append(fh.name)
        if len(calls) == 1:  # another process rewrites the config while the weights are read
            with open(os.path.join(d, "config.json"), "w") as out:
                out.write('{"model_type": "roberta"}')
        return real(fh, name)

    monkeypatch.setattr(xlt.digest.hashlib, "file_digest", racing)
    got = dir_digest(d)
    monkeypatch.setattr(xlt.digest.hashlib, "file_digest", real)
    assert got == xlt.digest.digest_record(d)["value"]  # the digest of what is there now
    assert len(calls) == 8


def test_a_checkpoint_stores_its_digest(tmp_path, home, reads, tiny_classifier):
    """save_checkpoint hashes once and records each file's stat; reading it back hashes nothing
    until a file changes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlt.train.checkpoint import read_manifest, save_checkpoint

    ckpt = tmp_path / "c.ckpt"
    ckpt.mkdir()
    save_checkpoint(AutoModelForSequenceClassification.from_pretrained(tiny_classifier),
                    AutoTokenizer.from_pretrained(tiny_classifier), str(ckpt), {"seed": 3})
    stored = read_manifest(str(ckpt))["content_digest"]
    assert stored["format"] == 1 and "model.safetensors" in stored["files"] and "xlt.json" not in stored["files"]
    assert set(stored["files"]["config.json"]) == {"size", "mtime_ns", "ctime_ns", "ino"}
    n = len(reads)
    assert n == len(stored["files"])
    assert dir_digest(str(ckpt)) == stored["value"] and len(reads) == n  # reused, nothing read
    poke(str(ckpt / "model.safetensors"), os.path.getsize(ckpt / "model.safetensors") // 2)
    changed = dir_digest(str(ckpt))
    assert changed != stored["value"] and len(reads) == 2 * n
    # a copy (new inodes and ctimes, same bytes) has the same digest, computed afresh
    shutil.copytree(ckpt, tmp_path / "copy.ckpt", copy_function=shutil.copy2)
    assert dir_digest(str(tmp_path / "copy.ckpt")) == changed
