"""The torch engine: a sequence classifier run with transformers, batched by length, gradient-free.

Also what training uses to score its dev set (`run_model`) and to load its students
(`register_small_students`).
"""

from __future__ import annotations

import os
from typing import Any

from xlt.inference.model_dir import ModelDir
from xlt.inference.types import Inputs, Outputs, gather_outputs
from xlt.train.checkpoint import read_manifest
from xlt.train.data import Encoded, sorted_batches


def run_model(model: Any, encoded: Encoded, *, pad_id: int, batch_size: int, device: Any,
              hidden: bool = False) -> Any:
    """Logits (and hidden vectors) for every example of `encoded`, in its order; for words (a
    `WordEncoded`, the tagging shape) per-word outputs (`xlt.tagging.model.WordOutputs`)."""
    import torch

    from xlt.tagging.encode import WordEncoded

    if isinstance(encoded, WordEncoded):
        from xlt.tagging.model import run_word_model

        return run_word_model(model, encoded, pad_id=pad_id, batch_size=batch_size, device=device, hidden=hidden)

    from xlt.distill.students import sentence_vector  # the first-token vector, of any model's outputs

    def forward(rows: Any) -> tuple[Any, Any]:
        batch = {k: v.to(device) for k, v in encoded.batch(rows, pad_id=pad_id).items()}
        out = model(**batch, output_hidden_states=hidden) if hidden else model(**batch)
        return out.logits.float().cpu().numpy(), sentence_vector(out).float().cpu().numpy() if hidden else None

    with torch.inference_mode():
        return gather_outputs(len(encoded.ids), sorted_batches(encoded.lengths(), batch_size=batch_size), forward)


def register_small_students(path: str) -> None:
    """Small xlt students (model_type `xlt-small`) load through the Auto classes once registered."""
    import json

    cfg = os.path.join(path, "config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as fh:
            if json.load(fh).get("model_type") == "xlt-small":
                import xlt.distill.students  # noqa: F401  (registers the classes)


def load_model_dir(path: str, *, option: str = "--model") -> tuple[Any, Any, dict[str, Any]]:
    """A sequence classifier (or a token classifier: `xlt.tagging.model.is_tagger`), its tokenizer
    and manifest from a checkpoint or HF model dir/id, or a peft adapter dir (its base model with
    the adapter merged)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from xlt.tagging.model import is_tagger

    from xlt.hf import quiet_transformers, safe_load_kwargs
    from xlt.models import resolve_model

    quiet_transformers()
    resolved = resolve_model(path, option=option)
    from xlt.train.lora import is_adapter_dir

    if is_adapter_dir(resolved):  # a LoRA adapter: base + adapter, merged
        return _load_adapter_classifier(resolved, option=option)
    manifest = read_manifest(resolved) if os.path.isdir(resolved) else {}
    register_small_students(resolved)
    auto = AutoModelForTokenClassification if is_tagger(resolved) else AutoModelForSequenceClassification
    model = auto.from_pretrained(resolved, **safe_load_kwargs(resolved, option=option))
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return model, tokenizer, manifest


class TorchEngine(ModelDir):
    """The model in torch on `device`; `threads` (0: torch's default) sets torch's thread count,
    which is process-wide."""

    kind = "torch"
    name = "torch"

    def __init__(self, resolved: str, *, spec: str, option: str = "--model", device: str = "auto",
                 threads: int = 0) -> None:
        from xlt.hf import resolve_device

        if threads:
            import torch

            torch.set_num_threads(threads)
        model, tokenizer, manifest = load_model_dir(resolved, option=option)
        id2label = model.config.id2label
        super().__init__(resolved, spec=spec, tokenizer=tokenizer, manifest=manifest,
                         labels=[id2label[i] for i in range(len(id2label))])
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()

    def run(self, inputs: Inputs, *, batch_size: int, hidden: bool = False) -> Any:
        return run_model(self.model, inputs.encoded, pad_id=self.pad_id, batch_size=batch_size, device=self.device,
                         hidden=hidden)


def _load_adapter_classifier(path: str, *, option: str = "--model") -> tuple[Any, Any, dict[str, Any]]:
    """The classifier (or tagger) of a peft adapter dir: its base model (`base_model_name_or_path`,
    resolved like any --model) with the adapter loaded and merged, the tokenizer (the adapter dir's, else
    the base's) and the dir's manifest (an adapter xlt wrote carries the checkpoint's)."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from xlt.records import is_tagging

    from xlt.hf import safe_load_kwargs
    from xlt.io import load_json
    from xlt.models import resolve_model
    from xlt.train.checkpoint import read_manifest
    from xlt.errors import UsageError
    from xlt.train.lora import ADAPTER_CONFIG

    adapter = load_json(os.path.join(path, ADAPTER_CONFIG), what="adapter config")
    base_name = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
    if not base_name:
        raise UsageError(f"{option} {path}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    base = resolve_model(str(base_name), option=f"{option} {path}: its base model")
    manifest = read_manifest(path)
    config = AutoConfig.from_pretrained(base)
    labels = manifest.get("labels")
    if labels:
        config.num_labels = len(labels)
        config.id2label = {i: str(name) for i, name in enumerate(labels)}
        config.label2id = {name: i for i, name in config.id2label.items()}
    # a tagger's adapter (xlt writes the checkpoint's manifest into it; peft's task type otherwise)
    tagging = is_tagging(manifest.get("fields")) or adapter.get("task_type") == "TOKEN_CLS"
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    model = auto.from_pretrained(base, config=config, ignore_mismatched_sizes=True, **safe_load_kwargs(base, option=option))
    _check_adapter_has_head(path, option=option)
    model = PeftModel.from_pretrained(model, path).merge_and_unload()
    has_tokenizer = any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else base)
    return model, tokenizer, manifest


def _check_adapter_has_head(path: str, *, option: str) -> None:
    """The base is loaded with a new, random head: an adapter that does not carry the trained head
    (peft's modules_to_save) would give random predictions without a word. Refuse it."""
    from safetensors import safe_open

    from xlt.errors import UsageError

    weights = os.path.join(path, "adapter_model.safetensors")
    if not os.path.isfile(weights):
        raise UsageError(f"{option} {path}: no adapter_model.safetensors (safetensors adapters only)")
    with safe_open(weights, framework="pt") as fh:
        keys = list(fh.keys())
    if not any(part in k for k in keys for part in ("classifier", ".score.", "modules_to_save")):
        raise UsageError(f"{option} {path}: the adapter holds no classification head (modules_to_save); "
                         "its predictions would come from a random head")
