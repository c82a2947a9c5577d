"""LoRA fine-tuning through `peft` (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models": W x + (alpha / r) B A x with A, B of rank r, eq. 3), for `teach` and encoder `distill`.

The encoder's weights stay frozen; low-rank adapters are trained on the attention projections
(`targets`) and the classification head is trained fully (peft's `modules_to_save`). The training
loop sees a model like any other: its trainable tensors (adapters + head) are what the resumable
state and the best dev state hold. The checkpoint holds the merged model (a plain Hugging Face
classifier) and the adapter in `adapter/` (xlt.train.checkpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from xlt.errors import UsageError

METHODS = ("none", "lora")
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"

#: Attention query and value projections per model_type (the LoRA paper adapts W_q and W_v).
DEFAULT_TARGETS = {
    "bert": ("query", "value"), "roberta": ("query", "value"), "xlm-roberta": ("query", "value"),
    "camembert": ("query", "value"), "electra": ("query", "value"), "distilbert": ("q_lin", "v_lin"),
}
#: Classification-head modules, trained fully where present: BERT's head is its pooler (which
#: me5-small and other encoders ship without, so it starts random and must be saved) and the
#: classifier, DistilBERT's pre_classifier and classifier.
HEAD_MODULES = ("pooler", "pre_classifier", "classifier", "score")


@dataclass(frozen=True)
class LoraOptions:
    """`--peft lora` settings; `targets` None: the architecture's default (DEFAULT_TARGETS)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, method: str, *, r: int | None, alpha: float | None, dropout: float | None,
                     targets: str | None) -> "LoraOptions | None":
        """The LoRA settings of `--peft METHOD`, or None for full fine-tuning (LoRA options
        without `--peft lora` would do nothing: refused)."""
        if method not in METHODS:
            raise UsageError(f"--peft must be one of {', '.join(METHODS)} (got {method!r})")
        given = [name for name, v in (("--lora-r", r), ("--lora-alpha", alpha), ("--lora-dropout", dropout),
                                      ("--lora-targets", targets)) if v is not None]
        if method == "none":
            if given:
                raise UsageError(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --peft lora")
            return None
        names = None
        if targets is not None:
            names = tuple(t.strip() for t in targets.split(",") if t.strip())
            if not names:
                raise UsageError("--lora-targets: give module names, comma-separated (e.g. query,value)")
        opts = cls(r=cls.r if r is None else r, alpha=cls.alpha if alpha is None else alpha,
                   dropout=cls.dropout if dropout is None else dropout, targets=names)
        opts.check()
        return opts

    def check(self) -> None:
        if self.r < 1:
            raise UsageError("--lora-r must be >= 1")
        if not self.alpha > 0:
            raise UsageError("--lora-alpha must be > 0")
        if not 0 <= self.dropout < 1:
            raise UsageError("--lora-dropout must be in [0, 1)")


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def apply_lora(model: Any, opts: LoraOptions) -> tuple[Any, dict[str, Any]]:
    """`model` (a sequence classifier) with LoRA adapters, and what the manifest records of them."""
    from peft import LoraConfig, get_peft_model

    model_type = getattr(model.config, "model_type", None)
    targets = opts.targets or DEFAULT_TARGETS.get(model_type or "")
    if targets is None:
        raise UsageError(f"--peft lora: no default LoRA target modules for model_type {model_type!r}; "
                         "name them with --lora-targets (e.g. --lora-targets query,value)")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise UsageError(f"--lora-targets: the model has no module named {', '.join(missing)}")
    heads = [h for h in HEAD_MODULES if any(n == h or n.endswith("." + h) for n, _ in model.named_modules())]
    config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=list(targets),
                        modules_to_save=heads, bias="none")
    wrapped = get_peft_model(model, config)
    base = getattr(model.config, "_name_or_path", None)
    if base and os.path.isdir(base):  # the adapter names its base so that it loads from anywhere
        wrapped.peft_config["default"].base_model_name_or_path = os.path.abspath(base)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    about = {"method": "lora", "r": opts.r, "alpha": opts.alpha, "dropout": opts.dropout, "targets": list(targets),
             "head": heads, "trainable_parameters": trainable, "total_parameters": total}
    return wrapped, about


def merged_copy(model: Any) -> Any:
    """A plain transformers model with the adapters merged into the base weights and the trained
    head in place (the training model is left as it is)."""
    import copy

    return copy.deepcopy(model).merge_and_unload()


def is_adapter_dir(path: str) -> bool:
    """A peft adapter directory without a full model of its own (no config.json)."""
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, ADAPTER_CONFIG))
            and not os.path.isfile(os.path.join(path, "config.json")))
