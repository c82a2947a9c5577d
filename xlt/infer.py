"""Batched, length-sorted, gradient-free classification with a checkpoint (torch engine).

Used by `eval`, dev selection during training and `soft-label`. Records stream through in
chunks: each chunk is tokenized at once, sorted by length into batches, run, and yielded back
in input order, so memory depends on the chunk size, not on the input size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt.errors import RecordError, UsageError
from xlt.records import Record, finite_numbers
from xlt.train.checkpoint import manifest_source_langs, read_manifest
from xlt.train.data import Encoded, LabelSet, sorted_batches, tokenize


@dataclass
class Outputs:
    """Per-example logits [N, C] and, when asked, first-token hidden vectors [N, H] (numpy)."""

    logits: Any
    hidden: Any | None = None


def hidden_of(outputs: Any) -> Any:
    """The final first-token ([CLS]) hidden vector from a model's outputs."""
    hidden = getattr(outputs, "hidden", None)
    if hidden is not None:
        return hidden
    states = getattr(outputs, "hidden_states", None)
    if not states:
        raise UsageError("this model does not return hidden states")
    return states[-1][:, 0]


def run_model(model: Any, encoded: Encoded, *, pad_id: int, batch_size: int, device: Any,
              hidden: bool = False) -> Outputs:
    """Logits (and hidden vectors) for every example of `encoded`, in its order."""
    import numpy as np
    import torch

    n = len(encoded.ids)
    logits: np.ndarray | None = None
    hid: np.ndarray | None = None
    with torch.inference_mode():
        for rows in sorted_batches(encoded.lengths(), batch_size=batch_size):
            batch = {k: v.to(device) for k, v in encoded.batch(rows, pad_id=pad_id).items()}
            out = model(**batch, output_hidden_states=hidden) if hidden else model(**batch)
            lg = out.logits.float().cpu().numpy()
            if logits is None:
                logits = np.zeros((n, lg.shape[1]), dtype=np.float32)
            logits[rows] = lg
            if hidden:
                h = hidden_of(out).float().cpu().numpy()
                if hid is None:
                    hid = np.zeros((n, h.shape[1]), dtype=np.float32)
                hid[rows] = h
    if logits is None:
        logits = np.zeros((0, 0), dtype=np.float32)
    return Outputs(logits, hid)


def softmax(logits: Any, temperature: float = 1.0) -> Any:
    import numpy as np

    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def register_small_students(path: str) -> None:
    """Small xlt students (model_type `xlt-small`) load through the Auto classes once registered."""
    import json

    cfg = os.path.join(path, "config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as fh:
            if json.load(fh).get("model_type") == "xlt-small":
                import xlt.distill.students  # noqa: F401  (registers the classes)


def load_model_dir(path: str, *, option: str = "--model") -> tuple[Any, Any, dict[str, Any]]:
    """A sequence classifier, its tokenizer and manifest from a checkpoint or HF model dir/id."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlt.hf import quiet_transformers
    from xlt.models import resolve_model

    quiet_transformers()
    resolved = resolve_model(path, option=option)
    manifest = read_manifest(resolved) if os.path.isdir(resolved) else {}
    register_small_students(resolved)
    from xlt.hf import safe_load_kwargs

    model = AutoModelForSequenceClassification.from_pretrained(resolved, **safe_load_kwargs(resolved, option=option))
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return model, tokenizer, manifest


class Classifier:
    """A trained classifier (xlt checkpoint or any HF sequence-classification model).

    `engine` is torch, ct2 (the encoder on CTranslate2 with the head in numpy, see xlt.engines)
    or auto (ct2 when the model can run there, else torch); `engine` then names the one used.
    With ct2 the torch model is never loaded. Without `compute_type`, ct2 runs float32 when `exact`
    (the model's own outputs: what eval publishes), else its fast type (int8 on CPU with near-ties
    re-scored, float16 on GPU: soft-label's trade, see xlt.engines).
    """

    def __init__(self, path: str, *, device: str = "auto", batch_size: int = 64,
                 max_length: int | None = None, option: str = "--model", engine: str = "torch",
                 compute_type: str | None = None, exact: bool = False, threads: int = 0,
                 rescore_margin: float | None = None) -> None:
        from xlt.engines import check_rescore_margin, choose_engine

        self.path = path
        self.batch_size = batch_size
        self._digest: str | None = None
        self.resolved = resolved = _resolve(path, option=option)
        self.engine = choose_engine(engine, resolved, option=option, name=path)
        if compute_type and engine == "torch":
            raise UsageError("--compute-type sets CTranslate2's compute type: use it with --engine ct2 or auto")
        if rescore_margin is not None and engine == "torch":
            raise UsageError("--rescore-margin re-scores CTranslate2's int8 near-ties: use it with --engine ct2 or auto")
        check_rescore_margin(rescore_margin)
        if threads < 0:
            raise UsageError(f"--threads must be >= 0 (0: all cores), not {threads}")
        self.model: Any = None
        self.runner: Any = None
        self.compute_type: str | None = None
        if self.engine == "ct2":
            self.tokenizer, self.manifest, id2label = _load_light(resolved)
            from xlt.engines import CT2Encoder

            self.runner = CT2Encoder(resolved, digest=self._digest_of(resolved), device=device,
                                     compute_type=compute_type, exact=exact, threads=threads,
                                     rescore_margin=rescore_margin)
            self.device = self.runner.device
            self.compute_type = self.runner.compute_type
        else:
            from xlt.hf import resolve_device

            if threads:
                import torch

                torch.set_num_threads(threads)
            self.model, self.tokenizer, self.manifest = load_model_dir(resolved, option=option)
            self.device = resolve_device(device)
            self.model.to(self.device).eval()
            id2label = self.model.config.id2label
        self.max_length = max_length or self.manifest.get("max_length") or min(
            getattr(self.tokenizer, "model_max_length", 512) or 512, 512)
        if self.manifest.get("labels") is not None:
            self.labels = LabelSet(self.manifest["labels"])
        else:
            self.labels = LabelSet([id2label[i] for i in range(len(id2label))])
        self.fields: tuple[str, ...] | None = tuple(self.manifest["fields"]) if self.manifest.get("fields") else None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _digest_of(self, resolved: str) -> str:
        from xlt.digest import dir_digest

        self._digest = dir_digest(resolved)
        return self._digest

    @property
    def digest(self) -> str:
        """The model's content digest (`xlt.digest.dir_digest`), `hub:<id>` for a hub model."""
        if self._digest is None:
            self._digest = self._digest_of(self.resolved) if os.path.isdir(self.resolved) else f"hub:{self.path}"
        return self._digest

    @property
    def engine_name(self) -> str:
        """The engine for signatures: `torch`, `ct2:<compute type>`, or with int8 near-ties re-scored
        `ct2:int8+float32<0.03`."""
        return self.runner.name if self.runner is not None else "torch"

    def engine_note(self) -> str | None:
        """What the engine did worth a log line (how many near-ties ct2 re-scored), or None."""
        return self.runner.note() if self.runner is not None else None

    @property
    def source_langs(self) -> list[str]:
        """The languages its labels came from (teach: its training languages; distill: see
        xlt.distill.run.distill_source_langs)."""
        return manifest_source_langs(self.manifest)

    def predict(self, texts: Sequence[tuple[str, ...]], *, hidden: bool = False) -> Outputs:
        encoded = tokenize(self.tokenizer, texts, max_length=self.max_length)
        if self.runner is not None:
            return self.runner.run(encoded, batch_size=self.batch_size, hidden=hidden)
        return run_model(self.model, encoded, pad_id=self.pad_id, batch_size=self.batch_size,
                         device=self.device, hidden=hidden)


def _resolve(path: str, *, option: str) -> str:
    from xlt.models import resolve_model

    return resolve_model(path, option=option)


def _load_light(path: str) -> tuple[Any, dict[str, Any], dict[int, Any]]:
    """Tokenizer, manifest and id2label of a local model dir, without its weights."""
    from transformers import AutoConfig, AutoTokenizer

    from xlt.hf import quiet_transformers

    quiet_transformers()
    config = AutoConfig.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path), read_manifest(path), dict(config.id2label)


class Predicted:
    """A frozen model: the predictions an earlier `xlt eval --predictions` wrote for the same records.

    Lets `eval` score or compare runs without running their models again (`--compare
    base.pred.jsonl`). The file is read in step with the input; each record's texts must match.
    """

    engine_name = "predictions"
    fields: tuple[str, ...] | None = None
    source_langs: list[str] = []
    max_length = None

    def engine_note(self) -> str | None:
        return None

    def __init__(self, path: str, *, option: str = "--model") -> None:
        from xlt.io import iter_located

        self.path = path
        self.option = option
        self._records = iter_located([path])
        first = next(self._records, None)
        if first is None:
            raise UsageError(f"{option} {path}: an empty predictions file")
        self._pending: list[tuple[str, Record]] = [first]
        pred = first[1].get("pred")
        if not isinstance(pred, dict) or not isinstance(pred.get("labels"), list):
            raise UsageError(f"{option} {path}: not a model directory nor a predictions file from `xlt eval "
                             f"--predictions` (first record has no \"pred\" with \"labels\")")
        self.labels = LabelSet(pred["labels"])
        self.digest = str(pred.get("model") or f"predictions:{path}")

    def _next(self) -> tuple[str, Record]:
        if self._pending:
            return self._pending.pop()
        item = next(self._records, None)
        if item is None:
            raise UsageError(f"{self.option} {self.path}: fewer predictions than input records")
        return item

    def predict(self, texts: Sequence[tuple[str, ...]], *, hidden: bool = False) -> Outputs:
        import numpy as np

        from xlt.errors import InputError

        if hidden:
            raise UsageError(f"{self.option} {self.path}: a predictions file has no hidden states")
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for i, text in enumerate(texts):
            where, rec = self._next()
            pred = rec.get("pred")
            values = set(v for v in rec.values() if isinstance(v, str))
            if not isinstance(pred, dict):
                raise InputError(f'{where}: missing field "pred" (a predictions file from xlt eval --predictions)')
            try:
                probs = finite_numbers(pred.get("probs"), "pred.probs", length=len(self.labels))
            except RecordError as exc:
                raise InputError(f"{where}: {exc}") from None
            if any(p < 0 or p > 1 for p in probs):
                raise InputError(f'{where}: field "pred.probs" must be probabilities in [0, 1]')
            if not all(t in values for t in text):
                raise UsageError(f"{where}: this prediction is for another record than the input's {i + 1}th "
                                 f"of its chunk: {self.option} needs predictions of the same records in the same order")
            logits[i] = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))
        return Outputs(logits)


def load_classifier(path: str, *, option: str = "--model", **run: Any) -> Any:
    """A model directory/name/hub id (`Classifier`, `run` its keyword options: engine,
    compute_type, exact, ...), or a predictions file (`Predicted`)."""
    if os.path.isfile(path):
        return Predicted(path, option=option)
    return Classifier(path, option=option, **run)
