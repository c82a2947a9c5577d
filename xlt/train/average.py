"""Weight averaging of fine-tuned checkpoints: one model whose parameters are a weighted mean.

    theta = sum_i w_i theta_i,   w_i >= 0,   sum_i w_i = 1

Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT, CVPR 2022), eq. 1: the
interpolation (1 - alpha) theta_0 + alpha theta_1 of a model before and after fine-tuning keeps
what the first was good at (for xlt: English, after a distillation on target-language text) while
keeping most of the second's gain; "Model soups" (Wortsman et al., ICML 2022) is the same mean over
fine-tuned runs of one starting point. Averaging only makes sense between models that share a
starting point: the members must have the same architecture, parameter names and shapes, label
order, text fields and vocabulary, and the command refuses otherwise.

Floating-point tensors are averaged in float32 and cast back to their dtype; every other tensor
(position ids, ...) must be equal in every member. Members are read one at a time (two models in
memory at most) and the result is refused if a weight is not finite.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.errors import NonFiniteError, UsageError

KIND = "average"


@dataclass(frozen=True)
class AverageResult:
    out: str
    weights: list[float]
    tensors: int
    parameters: int


def normalized_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """`weights` (one per member, >= 0, not all 0) scaled to sum to 1; uniform when None."""
    if n < 2:
        raise UsageError(f"averaging needs at least 2 models, got {n}")
    if weights is None:
        return [1.0 / n] * n
    ws = [float(w) for w in weights]
    if len(ws) != n:
        raise UsageError(f"--weights has {len(ws)} value(s) for {n} models: give one weight per model")
    if any(not math.isfinite(w) or w < 0 for w in ws):
        raise UsageError(f"--weights must be finite and >= 0, got {','.join(f'{w:g}' for w in weights)}")
    total = sum(ws)
    if total <= 0:
        raise UsageError("--weights are all 0: at least one model must count")
    return [w / total for w in ws]


def _same(what: str, first: Any, other: Any, *, a: str, b: str) -> None:
    if first != other:
        raise UsageError(f"cannot average {a} and {b}: their {what} differ ({_short(first)} vs {_short(other)})")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signature(model: Any, tokenizer: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """What members must share to be averaged (besides parameter names and shapes)."""
    cfg = model.config
    return {
        "model classes": type(model).__name__,
        "label orders": [cfg.id2label[i] for i in range(len(cfg.id2label))],
        "text fields": manifest.get("fields"),
        "vocabularies": tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else None,
    }


def average_checkpoints(models: Sequence[str], *, out: str, weights: Sequence[float] | None = None,
                        force: bool = False) -> AverageResult:
    """Write the checkpoint `out`: the weighted parameter mean of `models` (checkpoint dirs, Hugging
    Face model dirs or LoRA adapter dirs of one base), with the first member's tokenizer and
    configuration and a manifest naming every member, its content digest and its weight."""
    import torch

    from xlt import __version__
    from xlt.digest import dir_digest
    from xlt.envinfo import versions
    from xlt.inference.torch_engine import load_model_dir
    from xlt.io import atomic_path, check_output
    from xlt.models import resolve_model
    from xlt.train.checkpoint import manifest_source_langs, save_checkpoint

    ws = normalized_weights(weights, len(models))
    check_output(out, force=force, what="checkpoint")  # before any model is read
    if os.path.abspath(out) in {os.path.abspath(m) for m in models}:
        raise UsageError(f"--out {out} is one of the models being averaged; write to a new directory")
    first_model = first_tokenizer = None
    first_manifest: dict[str, Any] = {}
    first_sig: dict[str, Any] = {}
    acc: dict[str, torch.Tensor] = {}
    members: list[dict[str, Any]] = []
    max_lengths: set[Any] = set()
    source_langs: list[str] = []
    for i, (spec, w) in enumerate(zip(models, ws)):
        model, tokenizer, manifest = load_model_dir(spec, option="model")
        state = model.state_dict()
        sig = _signature(model, tokenizer, manifest)
        if i == 0:
            first_model, first_tokenizer, first_manifest, first_sig = model, tokenizer, manifest, sig
            for name, t in state.items():
                acc[name] = t.detach().float() * w if t.is_floating_point() else t.detach().clone()
        else:
            for what, value in sig.items():
                _same(what, first_sig[what], value, a=models[0], b=spec)
            _same("parameter names", sorted(acc), sorted(state), a=models[0], b=spec)
            for name, t in state.items():
                ref = acc[name]
                _same(f"shapes of {name}", tuple(ref.shape), tuple(t.shape), a=models[0], b=spec)
                if t.is_floating_point():
                    ref.add_(t.detach().float(), alpha=w)
                elif not torch.equal(ref, t):
                    raise UsageError(f"cannot average {models[0]} and {spec}: their {name} (not a float tensor, "
                                     "so it cannot be averaged) differ")
            del model, state
        max_lengths.add(manifest.get("max_length"))
        for lang in manifest_source_langs(manifest):
            if lang not in source_langs:
                source_langs.append(lang)
        resolved = resolve_model(spec, option="model")  # a built-in name's dir, so it has a digest too
        members.append({"model": spec, "digest": dir_digest(resolved) if os.path.isdir(resolved) else f"hub:{spec}",
                        "weight": w,
                        "kind": manifest.get("kind"), "seed": manifest.get("seed")})

    assert first_model is not None
    dtypes = {name: t.dtype for name, t in first_model.state_dict().items()}
    averaged = {name: (t.to(dtypes[name]) if dtypes[name].is_floating_point else t) for name, t in acc.items()}
    bad = [name for name, t in averaged.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteError(f"refusing to write {out}: {len(bad)} averaged weight tensor(s) are not finite "
                             f"(first: {bad[0]}); a member holds non-finite weights")
    first_model.load_state_dict(averaged, strict=True)
    lengths = [m for m in max_lengths if m is not None]
    seeds = {m["seed"] for m in members}
    manifest = {
        "xlt_version": __version__, "kind": KIND,
        "base_model": first_manifest.get("base_model") or first_manifest.get("student")
        or first_manifest.get("student_arch"),
        "fields": first_manifest.get("fields"), "labels": first_sig["label orders"],
        # the longest input a member was trained on (they usually agree)
        "max_length": max(lengths) if lengths else None,
        # the members' seed when they share one (a model and its distilled self), else None
        "source_langs": source_langs, "members": members, "seed": seeds.pop() if len(seeds) == 1 else None,
        "versions": versions(), "command": sys.argv,
    }
    with atomic_path(out, force=force, what="checkpoint", is_dir=True) as tmp:
        save_checkpoint(first_model, first_tokenizer, tmp, manifest)
    n_params = sum(t.numel() for t in averaged.values() if t.is_floating_point())
    return AverageResult(out=out, weights=ws, tensors=len(averaged), parameters=n_params)
