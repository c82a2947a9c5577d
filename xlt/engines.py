"""Inference engines for sequence classifiers: torch, or a CTranslate2 encoder plus the head.

`--engine ct2` runs the checkpoint's transformer encoder with CTranslate2 and applies the
classification head in numpy, in float32, from the checkpoint's own weights, so logits match the
torch model up to the encoder's compute type:

  BERT                     tanh(pooler.dense(h0)) -> classifier
  XLM-R / RoBERTa / CamemBERT  tanh(classifier.dense(h0)) -> classifier.out_proj
  DistilBERT               relu(pre_classifier(h0)) -> classifier

where h0 is the final first-token hidden vector (also what `--hidden` returns). The encoder is
converted once with CTranslate2's `TransformersConverter` into the xlt cache
(`$XLT_HOME/encoders/`, default `~/.cache/xlt/encoders/`), keyed by the checkpoint's content
digest (`xlt.digest.dir_digest`: every byte of its files, so a model changed in place is converted
again) and the compute type, written to a temporary directory and renamed when complete (as the
translation models are), so parallel jobs never see half a model. `auto` picks ct2 whenever the
model can run there (a local checkpoint of a family above with safetensors weights, and
ctranslate2 installed), else torch; small xlt students (`xlt-small`) always run in torch.

Which compute type runs when none is given (`default_compute_type`): `exact` callers (eval,
whose numbers are published) get float32 on CPU and GPU, the model's own outputs to ~1e-6;
float16 is not the GPU default until its argmax agreement with float32 is measured >= 99.9 %
(no GPU here yet). Other callers (soft-label) get the fast type: int8 on CPU (near-ties re-scored,
below), float16 on GPU.

Near-ties are re-scored exactly. int8 moves a record's logits a little (max |probability
difference| ~0.1 on XNLI), which flips the argmax only where the top two classes are close: with
an int8 (or int16) compute type, every record whose top-2 probability margin is below
`rescore_margin` (default 0.03, `--rescore-margin`; 0 turns it off) is run again on the float32
encoder (converted and loaded on first need) and takes those outputs. On 5,000 XNLI dev records
with an me5-small checkpoint this re-scores 5 % of them and lifts argmax agreement with torch
float32 from 96.9 % to 98.8 % for 8 % more time (RESULTS.md): what soft-label's fast default
trades; eval's exact default agrees with torch float32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt import log
from xlt.errors import UsageError, XltError

ENGINES = ("auto", "torch", "ct2")
META_FILE = "xlt-encoder.json"
DEFAULT_RESCORE_MARGIN = 0.03
COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class Family:
    """How one model family's classification head reads the first-token vector."""

    architecture: str
    layers: tuple[tuple[str, str], ...]  # (weight prefix, activation after it) in order
    token_types: bool  # does the converted encoder take token type ids (2 source embeddings)


_ROBERTA_HEAD = (("classifier.dense", "tanh"), ("classifier.out_proj", "none"))
FAMILIES: dict[str, Family] = {
    "bert": Family("BertForSequenceClassification", (("bert.pooler.dense", "tanh"), ("classifier", "none")), True),
    "xlm-roberta": Family("XLMRobertaForSequenceClassification", _ROBERTA_HEAD, True),
    "roberta": Family("RobertaForSequenceClassification", _ROBERTA_HEAD, True),
    "camembert": Family("CamembertForSequenceClassification", _ROBERTA_HEAD, True),
    "distilbert": Family("DistilBertForSequenceClassification", (("pre_classifier", "relu"), ("classifier", "none")), False),
}


def encoders_root() -> str:
    from xlt.cache import cache_dir

    return cache_dir("encoders")


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _weight_files(path: str) -> list[str]:
    """The safetensors files of a model dir (one file, or the shards of an index)."""
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [os.path.join(path, s) for s in shards]
    return []


def ct2_unsupported(path: str) -> str | None:
    """Why the model dir `path` cannot run on the ct2 engine (None when it can)."""
    if not os.path.isdir(path):
        return "not a local model directory"
    cfg = _read_config(path)
    model_type = cfg.get("model_type")
    family = FAMILIES.get(model_type or "")
    if family is None:
        supported = ", ".join(sorted(FAMILIES))
        return f"CTranslate2 runs {supported} classifiers, not model_type {model_type!r}"
    if family.architecture not in (cfg.get("architectures") or []):
        return f"not a {family.architecture} checkpoint (architectures: {cfg.get('architectures')})"
    if model_type == "bert" and cfg.get("position_embedding_type", "absolute") != "absolute":
        return "CTranslate2 supports only absolute position embeddings"
    if family.layers == _ROBERTA_HEAD and cfg.get("pad_token_id", 1) == 0:
        # positions start after the padding index; ctranslate2's converter assumes it is >= 1
        return "RoBERTa-style position embeddings with padding index 0 are not supported by CTranslate2's converter"
    if not _weight_files(path):
        return "no safetensors weights (model.safetensors)"
    if importlib.util.find_spec("ctranslate2") is None:
        return "ctranslate2 is not installed"
    return None


def choose_engine(engine: str, path: str, *, option: str = "--model", name: str | None = None) -> str:
    """`torch` or `ct2` for the resolved model dir `path`: auto prefers ct2 and falls back quietly;
    an explicit `ct2` the model cannot use is a usage error (exit 2)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "torch":
        return "torch"
    reason = ct2_unsupported(path)
    if reason is None:
        return "ct2"
    if engine == "ct2":
        raise UsageError(f"--engine ct2: {option} {name or path}: {reason}; use --engine torch")
    log.debug(f"{option} {name or path}: using the torch engine ({reason})")
    return "torch"


def default_compute_type(device: str, *, exact: bool) -> str:
    """The compute type when none is given: float32 when `exact` (the model's own outputs; float16
    on GPU is unmeasured), else the fast one: int8 on CPU, float16 on GPU (falling back to what
    the device supports)."""
    import ctranslate2

    if exact:
        return "float32"
    supported = ctranslate2.get_supported_compute_types(device)
    prefs = ("int8", "int8_float32", "float32") if device == "cpu" else ("float16", "int8_float16", "float32")
    return next((c for c in prefs if c in supported), "float32")


def exact_compute_type(device: str) -> str:
    """The compute type near-ties are re-scored in: float32 on every device (float16's agreement
    with float32 is unmeasured)."""
    return "float32"


def check_rescore_margin(margin: float | None) -> float | None:
    if margin is not None and not 0.0 <= margin <= 1.0:
        raise UsageError(f"--rescore-margin must be in [0, 1] (a probability margin; 0: off), not {margin}")
    return margin


def top2_margin(logits: Any) -> Any:
    """p(top class) - p(second class) per row of logits [N, C] (softmax at temperature 1)."""
    import numpy as np

    from xlt.infer import softmax

    probs = np.sort(softmax(np.asarray(logits, dtype=np.float64)), axis=-1)
    return probs[:, -1] - probs[:, -2]


def check_compute_type(compute_type: str, device: str) -> str:
    import ctranslate2

    if compute_type not in COMPUTE_TYPES:
        raise UsageError(f"--compute-type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}")
    supported = sorted(ctranslate2.get_supported_compute_types(device))
    if compute_type not in supported:
        raise UsageError(f"--compute-type {compute_type}: not supported on {device} (supported: {', '.join(supported)})")
    return compute_type


def cache_dir_for(path: str, digest: str, compute_type: str) -> str:
    """The cache dir of `path`'s encoder: `digest` is its `xlt.digest.dir_digest` (content, not names
    or times), so an edited model never reuses the old model's conversion."""
    key = hashlib.sha256(f"{digest}\0{compute_type}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^\w.-]+", "-", os.path.basename(os.path.abspath(path))) or "model"
    return os.path.join(encoders_root(), f"{slug}-{compute_type}-{key}")


def ensure_encoder(path: str, *, digest: str, compute_type: str) -> str:
    """The converted CTranslate2 encoder of checkpoint `path`, converting it once into the cache."""
    target = cache_dir_for(path, digest, compute_type)
    if os.path.isfile(os.path.join(target, META_FILE)):
        log.debug(f"using the converted encoder in {target}")
        return target
    if os.path.lexists(target):
        raise XltError(f"{target}: exists but is not a complete conversion (no {META_FILE}); remove it and rerun")
    log.info(f"converting the encoder of {path} to CTranslate2 ({compute_type}) into {target} (once)")
    convert_encoder(path, target, digest=digest, compute_type=compute_type)
    return target


def convert_encoder(path: str, target: str, *, digest: str, compute_type: str) -> None:
    """Convert into a temporary dir beside `target`, then rename it into place; a job that loses
    the race to another converting the same model uses the winner's directory."""
    import ctranslate2
    import transformers

    from xlt.hf import quiet_transformers

    quiet_transformers()
    converter_class = _converter_class()
    from xlt.mt.model import publish_dir

    def fill(tmp: str) -> dict[str, Any]:
        try:
            converter_class(path).convert(tmp, quantization=compute_type, force=True)
        except (ValueError, AssertionError, NotImplementedError, KeyError) as exc:
            raise UsageError(f"{path}: CTranslate2 cannot convert this encoder: {exc}") from None
        return {"source": os.path.abspath(path), "model_digest": digest, "compute_type": compute_type,
                "model_type": _read_config(path).get("model_type"),
                "versions": {"ctranslate2": ctranslate2.__version__, "transformers": transformers.__version__}}

    publish_dir(os.path.abspath(target), META_FILE, fill)


def _converter_class() -> Any:
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        """transformers 5 configs no longer carry `position_embedding_type` (absolute is the only
        kind left), which ctranslate2's BERT/RoBERTa loaders assert on: fill it in."""

        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            model = super().load_model(model_class, model_name_or_path, **kwargs)
            for cfg in {id(c): c for c in (model.config, getattr(getattr(model, "roberta", None), "config", None)) if c}.values():
                if getattr(cfg, "position_embedding_type", None) is None:
                    try:
                        cfg.position_embedding_type = "absolute"
                    except AttributeError:
                        pass
            return model

    return Converter


def load_head(path: str, family: Family) -> list[tuple[Any, Any, str]]:
    """The head's (weight [out, in], bias [out], activation) layers as float32 numpy arrays, read
    from the checkpoint's safetensors without loading the rest of the model."""
    import numpy as np
    from safetensors import safe_open

    wanted = {f"{prefix}.{part}" for prefix, _ in family.layers for part in ("weight", "bias")}
    found: dict[str, Any] = {}
    for file in _weight_files(path):
        with safe_open(file, framework="np") as st:
            keys = set(st.keys())
        for name in wanted & keys:
            found[name] = _read_tensor(file, name)
    missing = sorted(wanted - set(found))
    if missing:
        raise UsageError(f"{path}: the checkpoint has no classification head weights ({', '.join(missing)})")
    return [(np.ascontiguousarray(found[f"{p}.weight"], dtype=np.float32),
             np.ascontiguousarray(found[f"{p}.bias"], dtype=np.float32), act) for p, act in family.layers]


def _read_tensor(file: str, name: str) -> Any:
    from safetensors import safe_open

    try:
        with safe_open(file, framework="np") as st:
            return st.get_tensor(name)
    except (TypeError, ValueError):  # bfloat16 has no numpy dtype: go through torch
        with safe_open(file, framework="pt") as st:
            return st.get_tensor(name).float().numpy()


def apply_head(h0: Any, head: Sequence[tuple[Any, Any, str]]) -> Any:
    """Logits [N, C] from first-token vectors [N, H] (dropout is off at inference)."""
    import numpy as np

    x = np.asarray(h0, dtype=np.float32)
    for weight, bias, act in head:
        x = x @ weight.T + bias
        if act == "tanh":
            x = np.tanh(x)
        elif act == "relu":
            x = np.maximum(x, 0)
    return x


class CT2Encoder:
    """A checkpoint's encoder on CTranslate2 plus its classification head in numpy.

    `run(encoded, ...)` takes the same token ids the torch engine sees (xlt.train.data.tokenize)
    and batches them the same way (length-sorted, each batch padded to its own longest member).
    """

    def __init__(self, path: str, *, digest: str, device: str = "auto", compute_type: str | None = None,
                 exact: bool = False, threads: int = 0, rescore_margin: float | None = None) -> None:
        from xlt.mt.translator import default_threads, resolve_device

        if threads < 0:
            raise UsageError(f"--threads must be >= 0 (0: all cores), not {threads}")
        check_rescore_margin(rescore_margin)
        cfg = _read_config(path)
        self.path, self.digest = path, digest
        self.family = FAMILIES[cfg["model_type"]]
        self.device, self.device_index = resolve_device(device)
        self.compute_type = (check_compute_type(compute_type, self.device) if compute_type
                             else default_compute_type(self.device, exact=exact))
        quantized = self.compute_type.startswith("int")
        if rescore_margin and not quantized:
            raise UsageError(f"--rescore-margin re-scores the near-ties of an int8/int16 compute type; {self.compute_type} "
                             "has none (add --compute-type int8, or drop --rescore-margin)")
        self.threads = threads or default_threads()
        self.head = load_head(path, self.family)
        margin = DEFAULT_RESCORE_MARGIN if rescore_margin is None else rescore_margin
        self.rescore_margin = margin if quantized else 0.0
        self.exact_type = exact_compute_type(self.device) if self.rescore_margin > 0 else None
        self.scored = 0    # records run
        self.rescored = 0  # of them, re-run on the exact encoder
        self.dir, self.encoder = self._load(self.compute_type)
        self._exact: Any = None

    def _load(self, compute_type: str) -> tuple[str, Any]:
        import ctranslate2

        target = ensure_encoder(self.path, digest=self.digest, compute_type=compute_type)
        try:
            return target, ctranslate2.Encoder(target, device=self.device, device_index=self.device_index,
                                               compute_type=compute_type, intra_threads=self.threads)
        except (RuntimeError, ValueError) as exc:
            raise XltError(f"{target}: CTranslate2 cannot load this encoder: {exc}") from None

    @property
    def exact_encoder(self) -> Any:
        if self._exact is None:
            self._exact = self._load(self.exact_type)[1]
        return self._exact

    @property
    def name(self) -> str:
        """For signatures: `ct2:int8`, or `ct2:int8+float32<0.03` with re-scoring."""
        return f"ct2:{self.compute_type}" + (f"+{self.exact_type}<{self.rescore_margin:g}" if self.rescore_margin else "")

    def note(self) -> str | None:
        """How many records were re-scored, for the end-of-run log."""
        if not self.rescore_margin or not self.scored:
            return None
        return (f"{self.rescored:,} of {self.scored:,} records ({100.0 * self.rescored / self.scored:.1f} %) had a top-2 "
                f"margin < {self.rescore_margin:g} under {self.compute_type} and were re-scored in {self.exact_type}")

    def first_token(self, ids: list[list[int]], types: list[list[int]] | None, *, encoder: Any = None) -> Any:
        """Final hidden vectors of the first token, [B, H] float32, for one batch."""
        import ctranslate2
        import numpy as np

        encoder = encoder if encoder is not None else self.encoder
        if self.family.token_types:
            types = types if types is not None else [[0] * len(x) for x in ids]
            out = encoder.forward_batch(ids, token_type_ids=types)
        else:
            out = encoder.forward_batch(ids)
        state = out.last_hidden_state
        if state.device != "cpu":
            state = state.to_device(ctranslate2.Device.cpu)
        if str(state.dtype) not in ("DataType.float32", "float32"):
            state = state.to(ctranslate2.DataType.float32)
        return np.array(state)[:, 0].astype(np.float32, copy=True)

    def run(self, encoded: Any, *, batch_size: int, hidden: bool = False) -> Any:
        import numpy as np

        from xlt.infer import Outputs

        n = len(encoded.ids)
        if n == 0:
            return Outputs(np.zeros((0, 0), dtype=np.float32), None)
        logits, hid = self._forward(encoded, list(range(n)), batch_size=batch_size, hidden=hidden)
        self.scored += n
        if self.rescore_margin > 0:
            rows = np.flatnonzero(top2_margin(logits) < self.rescore_margin).tolist()
            if rows:
                exact_logits, exact_hid = self._forward(encoded, rows, batch_size=batch_size, hidden=hidden,
                                                        encoder=self.exact_encoder)
                logits[rows] = exact_logits
                if hidden:
                    hid[rows] = exact_hid
                self.rescored += len(rows)
        return Outputs(logits, hid)

    def _forward(self, encoded: Any, rows: list[int], *, batch_size: int, hidden: bool,
                 encoder: Any = None) -> tuple[Any, Any]:
        """Logits (and first-token vectors) of the records `rows`, in that order, batched by length
        (longest first, each batch padded to its own longest member)."""
        import numpy as np

        from xlt.train.data import sorted_batches

        logits: Any = None
        hid: Any = None
        lengths = encoded.lengths()
        for batch in sorted_batches([lengths[r] for r in rows], batch_size=batch_size):
            ids = [encoded.ids[rows[i]] for i in batch]
            types = [encoded.types[rows[i]] for i in batch] if encoded.types is not None else None
            h0 = self.first_token(ids, types, encoder=encoder)
            lg = apply_head(h0, self.head)
            if logits is None:
                logits = np.zeros((len(rows), lg.shape[1]), dtype=np.float32)
            logits[batch] = lg
            if hidden:
                if hid is None:
                    hid = np.zeros((len(rows), h0.shape[1]), dtype=np.float32)
                hid[batch] = h0
        return logits, hid
