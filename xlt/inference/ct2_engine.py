"""The CTranslate2 engine: a classifier's encoder on CTranslate2, its classification head in numpy.

`--engine ct2` runs the checkpoint's transformer encoder with CTranslate2 and applies the
classification head in numpy, in float32, from the checkpoint's own weights, so logits match the
torch model up to the encoder's compute type:

  BERT                     tanh(pooler.dense(h0)) -> classifier
  XLM-R / RoBERTa / CamemBERT  tanh(classifier.dense(h0)) -> classifier.out_proj
  DistilBERT               relu(pre_classifier(h0)) -> classifier

where h0 is the final first-token hidden vector (also what `--hidden` returns). The encoder is
converted once with CTranslate2's `TransformersConverter` (`xlt.ct2.convert_once`) into the xlt cache
(`$XLT_HOME/encoders/`, default `~/.cache/xlt/encoders/`), keyed by the checkpoint's content
digest (`xlt.digest.dir_digest`: every byte of its files, so a model changed in place is converted
again) and the compute type, written to a temporary directory and renamed when complete (as the
translation models are), so parallel jobs never see half a model. `auto` picks ct2 whenever the
model can run there (a local checkpoint of a family above with safetensors weights, and
ctranslate2 installed), else torch; small xlt students (`xlt-small`) always run in torch.

Which compute type runs when none is given (`xlt.ct2.choose_compute_type`): `exact` callers (eval,
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

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.cache import cache_dir
from xlt.ct2 import EXACT_COMPUTE_TYPE, choose_compute_type, conversion_dir, convert_once, intra_threads, resolve_device
from xlt.errors import UsageError, XltError
from xlt.inference.model_dir import ModelDir
from xlt.inference.types import Inputs, Outputs, gather_outputs, softmax
from xlt.train.checkpoint import read_manifest
from xlt.train.data import sorted_batches

META_FILE = "xlt-encoder.json"
CACHE_KIND = "encoders"  # $XLT_HOME/encoders
DEFAULT_RESCORE_MARGIN = 0.03
#: The compute types on GPU when none is given and outputs need not be exact, best first.
FAST_ON_GPU = ("float16", "int8_float16", "float32")


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
    return cache_dir(CACHE_KIND)


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
    from xlt.train.lora import is_adapter_dir

    if is_adapter_dir(path):
        return "a LoRA adapter dir (its base model and the adapter are merged in torch)"
    cfg = _read_config(path)
    if any(str(a).endswith("ForTokenClassification") for a in cfg.get("architectures") or []):
        return "a token classifier (taggers run on the torch engine)"
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


def check_rescore_margin(margin: float | None) -> float | None:
    if margin is not None and not 0.0 <= margin <= 1.0:
        raise UsageError(f"--rescore-margin must be in [0, 1] (a probability margin; 0: off), not {margin}")
    return margin


def top2_margin(logits: Any) -> Any:
    """p(top class) - p(second class) per row of logits [N, C] (softmax at temperature 1)."""
    import numpy as np

    probs = np.sort(softmax(np.asarray(logits, dtype=np.float64)), axis=-1)
    return probs[:, -1] - probs[:, -2]


def cache_dir_for(path: str, digest: str, compute_type: str) -> str:
    """The cache dir of `path`'s encoder: `digest` is its `xlt.digest.dir_digest` (content, not names
    or times), so an edited model never reuses the old model's conversion."""
    name = os.path.basename(os.path.abspath(path))
    return conversion_dir(CACHE_KIND, name, key=digest, compute_type=compute_type)


def ensure_encoder(path: str, *, digest: str, compute_type: str) -> str:
    """The converted CTranslate2 encoder of checkpoint `path`, converting it once into the cache."""
    return convert_once(cache_dir_for(path, digest, compute_type),
                        lambda tmp: _convert_into(path, tmp, digest=digest, compute_type=compute_type),
                        meta_file=META_FILE, what=f"the encoder of {path}", compute_type=compute_type)


def _convert_into(path: str, out: str, *, digest: str, compute_type: str) -> dict[str, Any]:
    import ctranslate2
    import transformers

    try:
        _converter_class()(path).convert(out, quantization=compute_type, force=True)
    except (ValueError, AssertionError, NotImplementedError, KeyError) as exc:
        raise UsageError(f"{path}: CTranslate2 cannot convert this encoder: {exc}") from None
    return {"source": os.path.abspath(path), "model_digest": digest, "compute_type": compute_type,
            "model_type": _read_config(path).get("model_type"),
            "versions": {"ctranslate2": ctranslate2.__version__, "transformers": transformers.__version__}}


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


def _load_light(path: str) -> tuple[Any, dict[str, Any], list[Any]]:
    """Tokenizer, manifest and label order of a local model dir, without its weights."""
    from transformers import AutoConfig, AutoTokenizer

    from xlt.hf import quiet_transformers

    quiet_transformers()
    id2label = dict(AutoConfig.from_pretrained(path).id2label)
    return AutoTokenizer.from_pretrained(path), read_manifest(path), [id2label[i] for i in range(len(id2label))]


class CT2Engine(ModelDir):
    """A checkpoint's encoder on CTranslate2 plus its classification head in numpy; the torch
    model is never loaded.

    `run` takes the same token ids the torch engine sees (xlt.train.data.tokenize) and batches
    them the same way (length-sorted, each batch padded to its own longest member).
    """

    kind = "ct2"

    def __init__(self, path: str, *, spec: str | None = None, device: str = "auto", compute_type: str | None = None,
                 exact: bool = False, threads: int = 0, rescore_margin: float | None = None) -> None:
        threads = intra_threads(threads)
        check_rescore_margin(rescore_margin)
        tokenizer, manifest, labels = _load_light(path)
        super().__init__(path, spec=spec or path, tokenizer=tokenizer, manifest=manifest, labels=labels)
        self.family = FAMILIES[_read_config(path)["model_type"]]
        self.device, self.device_index = resolve_device(device)
        self.compute_type = choose_compute_type(compute_type, self.device, exact=exact, fast_on_gpu=FAST_ON_GPU)
        quantized = self.compute_type.startswith("int")
        if rescore_margin and not quantized:
            raise UsageError(f"--rescore-margin re-scores the near-ties of an int8/int16 compute type; {self.compute_type} "
                             "has none (add --compute-type int8, or drop --rescore-margin)")
        self.threads = threads
        self.head = load_head(path, self.family)
        margin = DEFAULT_RESCORE_MARGIN if rescore_margin is None else rescore_margin
        self.rescore_margin = margin if quantized else 0.0
        self.exact_type = EXACT_COMPUTE_TYPE if self.rescore_margin > 0 else None
        self.scored = 0    # records run
        self.rescored = 0  # of them, re-run on the exact encoder
        self.dir, self.encoder = self._load(self.compute_type)
        self._exact: Any = None

    def _load(self, compute_type: str) -> tuple[str, Any]:
        import ctranslate2

        target = ensure_encoder(self.resolved, digest=self.digest, compute_type=compute_type)
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

    def run(self, inputs: Inputs, *, batch_size: int, hidden: bool = False) -> Outputs:
        import numpy as np

        encoded = inputs.encoded
        n = len(encoded.ids)
        out = self._forward(encoded, list(range(n)), batch_size=batch_size, hidden=hidden)
        self.scored += n
        if n and self.rescore_margin > 0:
            rows = np.flatnonzero(top2_margin(out.logits) < self.rescore_margin).tolist()
            if rows:
                exact = self._forward(encoded, rows, batch_size=batch_size, hidden=hidden, encoder=self.exact_encoder)
                out.logits[rows] = exact.logits
                if hidden:
                    out.hidden[rows] = exact.hidden
                self.rescored += len(rows)
        return out

    def _forward(self, encoded: Any, rows: list[int], *, batch_size: int, hidden: bool,
                 encoder: Any = None) -> Outputs:
        """Logits (and first-token vectors) of the records `rows`, in that order, batched by length
        (longest first, each batch padded to its own longest member)."""
        lengths = encoded.lengths()

        def forward(batch: Sequence[int]) -> tuple[Any, Any]:
            ids = [encoded.ids[rows[i]] for i in batch]
            types = [encoded.types[rows[i]] for i in batch] if encoded.types is not None else None
            h0 = self.first_token(ids, types, encoder=encoder)
            return apply_head(h0, self.head), h0 if hidden else None

        return gather_outputs(len(rows), sorted_batches([lengths[r] for r in rows], batch_size=batch_size), forward)
