"""Find or make the CTranslate2 model directory behind `--model`.

`--model` is a CTranslate2 model directory (`model.bin` plus the Hugging Face tokenizer files), or
a Hugging Face seq2seq model (local directory or hub id: Marian/OPUS-MT, M2M-100, NLLB, mBART).
A Hugging Face model is converted once with CTranslate2's own `TransformersConverter` into the
xlt cache (`$XLT_HOME/mt/`, default `~/.cache/xlt/mt/`), written to a temporary directory and
renamed when complete, so parallel jobs (a SLURM array) never see half a model. The cache entry
is keyed by the model's path or hub id, the content digest of its files (`xlt.digest`: a model
changed in place is converted again) and the quantization. The converted directory holds a copy
of the tokenizer files and `xlt-mt.json` (source, family, limits, versions), so it is
self-contained.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

from xlt.cache import cache_dir
from xlt.ct2 import conversion_dir, convert_once
from xlt.errors import UsageError, XltError

META_FILE = "xlt-mt.json"
CACHE_KIND = "mt"  # $XLT_HOME/mt
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def cache_root() -> str:
    return cache_dir(CACHE_KIND)


@dataclass(frozen=True)
class ModelSource:
    """What `--model` names: `kind` is "ct2" (a CTranslate2 dir), "hf" (a local HF dir) or "hub"."""

    spec: str
    kind: str
    path: str


def inspect_model(spec: str) -> ModelSource:
    """Classify `--model`, refusing what cannot be a model with a one-line reason."""
    if os.path.isdir(spec):
        path = os.path.abspath(spec)
        if os.path.isfile(os.path.join(path, "model.bin")):
            if not _has_tokenizer(path):
                raise UsageError(
                    f"--model {spec}: a CTranslate2 model without tokenizer files (tokenizer_config.json); copy the "
                    "Hugging Face tokenizer files into it, or pass the Hugging Face model directory instead"
                )
            return ModelSource(spec, "ct2", path)
        config = os.path.join(path, "config.json")
        if os.path.isfile(config):
            try:
                with open(config, encoding="utf-8") as fh:
                    cfg = json.load(fh)
            except (OSError, ValueError) as exc:
                raise UsageError(f"--model {spec}: unreadable config.json ({exc})") from None
            if isinstance(cfg, dict) and "model_type" in cfg:
                return ModelSource(spec, "hf", path)
        raise UsageError(
            f"--model {spec}: not a model directory (expected a CTranslate2 model with model.bin, "
            "or a Hugging Face seq2seq model with config.json)"
        )
    if os.path.exists(spec):
        raise UsageError(f"--model {spec}: is a file; expected a model directory or a Hugging Face hub id")
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        raise UsageError(f"--model {spec}: no such directory")
    return ModelSource(spec, "hub", spec)


def _has_tokenizer(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer_config.json", "tokenizer.json"))


def source_digest(src: ModelSource) -> str:
    """The cache key of a model: a local model's content digest (`xlt.digest.dir_digest`: every
    byte, so a model edited in place is converted again) with its path and files' sizes and mtimes
    (a touched model is converted again too, as before the content digest); a hub model's id."""
    h = hashlib.sha256(f"{src.kind}\0{src.path}\0".encode())
    if src.kind == "hf":
        from xlt.digest import dir_digest

        h.update(f"{dir_digest(src.path)}\0".encode())
        for name in sorted(os.listdir(src.path)):
            full = os.path.join(src.path, name)
            if name.startswith(".") or not os.path.isfile(full):
                continue
            st = os.stat(full)
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def cache_dir_for(src: ModelSource, quantization: str) -> str:
    base = src.spec.rstrip("/").replace("\\", "/")
    name = base.split("/")[-1] if src.kind == "hf" else base.replace("/", "--")
    return conversion_dir(CACHE_KIND, name, key=source_digest(src), compute_type=quantization)


def ensure_ct2(spec: str, *, quantization: str) -> tuple[str, ModelSource]:
    """The CTranslate2 directory for `spec`: a Hugging Face model is converted with
    `ctranslate2.converters.TransformersConverter`, with its tokenizer files and `xlt-mt.json`,
    once (atomically) into the cache."""
    src = inspect_model(spec)
    if src.kind == "ct2":
        return src.path, src
    target = convert_once(cache_dir_for(src, quantization), lambda tmp: _convert_into(src, tmp, quantization=quantization),
                          meta_file=META_FILE, what=spec, compute_type=quantization)
    return target, src


def _convert_into(src: ModelSource, out: str, *, quantization: str) -> dict[str, Any]:
    import warnings

    import ctranslate2
    import transformers
    from ctranslate2.converters import TransformersConverter

    try:
        config = transformers.AutoConfig.from_pretrained(src.path)
    except (OSError, ValueError) as exc:
        if src.kind == "hub":
            raise XltError(f"--model {src.spec}: no such directory, and the Hugging Face hub has no such model or "
                           f"cannot be reached: {_first_line(exc)}") from None
        raise UsageError(f"--model {src.spec}: cannot load its config.json: {_first_line(exc)}") from None
    if not getattr(config, "is_encoder_decoder", False):
        raise UsageError(f"--model {src.spec}: a {config.model_type} model is not a seq2seq (encoder-decoder) translation model")

    class Converter(TransformersConverter):
        tokenizer: Any = None

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MarianTokenizer: "Recommended: pip install sacremoses"
                self.tokenizer = super().load_tokenizer(tokenizer_class, model_name_or_path, **kwargs)
            return _LangTokensShim(self.tokenizer)

    converter = Converter(src.path)
    try:
        converter.convert(out, quantization=quantization, force=True)
    except ValueError as exc:  # e.g. "No conversion is registered for the model configuration ..."
        raise UsageError(f"--model {src.spec}: CTranslate2 cannot convert it: {_first_line(exc)}") from None
    tokenizer = converter.tokenizer
    _save_tokenizer(tokenizer, out)
    return {
        "source": src.spec if src.kind == "hub" else src.path,
        "source_kind": src.kind,
        "source_digest": source_digest(src),
        "model_type": config.model_type,
        "tokenizer_class": type(tokenizer).__name__,
        "quantization": quantization,
        "max_input_length": int(getattr(config, "max_position_embeddings", 0) or 0) or None,
        "versions": {"ctranslate2": ctranslate2.__version__, "transformers": transformers.__version__},
    }


class _LangTokensShim:
    """transformers 5's M2M100Tokenizer no longer lists its `__xx__` language tokens among the
    special tokens, so ctranslate2's M2M100 loader (which appends
    `special_tokens_map["additional_special_tokens"]` to the vocabulary) would build a vocabulary
    without them and refuse the model. Give the loader the tokens, in id order."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        mapping = dict(self._tokenizer.special_tokens_map)
        lang_ids = getattr(self._tokenizer, "lang_token_to_id", None)
        if isinstance(lang_ids, dict) and not mapping.get("additional_special_tokens"):
            mapping["additional_special_tokens"] = sorted(lang_ids, key=lang_ids.get)
        return mapping


def _save_tokenizer(tokenizer: Any, out: str) -> None:
    # save_pretrained writes tokenizer_config.json (with tokenizer_class), vocabularies and
    # sentencepiece files; keep CTranslate2's own config.json safe from any same-named file.
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            if name == "config.json" or os.path.exists(os.path.join(out, name)):
                continue
            os.replace(os.path.join(tmp, name), os.path.join(out, name))


def read_meta(ct2_dir: str) -> dict[str, Any]:
    path = os.path.join(ct2_dir, META_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
