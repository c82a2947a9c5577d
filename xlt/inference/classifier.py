"""Batched, length-sorted, gradient-free classification: a model and the engine that runs it.

Used by `eval`, `soft-label` and distill's online teacher. Records stream through in chunks: each
chunk is tokenized at once (when the engine reads token ids), run in batches sorted by length,
and returned in input order, so memory depends on the chunk size, not on the input size.

Engines (`xlt.inference.types.Engine`): torch (`xlt.inference.torch_engine`), CTranslate2
(`xlt.inference.ct2_engine`) and saved predictions (`xlt.inference.saved`).
"""

from __future__ import annotations

import os
from typing import Any

from xlt import log
from xlt.ct2 import check_threads
from xlt.errors import UsageError
from xlt.inference.ct2_engine import CT2Engine, check_rescore_margin, ct2_unsupported
from xlt.inference.model_dir import pad_id_of
from xlt.inference.saved import SavedPredictions
from xlt.inference.torch_engine import TorchEngine
from xlt.inference.types import Engine, Inputs, Outputs, Texts
from xlt.records import TAGGING, is_tagging
from xlt.tagging.model import is_tagger
from xlt.train.checkpoint import manifest_source_langs, manifest_training_info
from xlt.train.data import LabelSet, tokenize

ENGINES = ("auto", "torch", "ct2")


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


def open_engine(path: str, *, option: str = "--model", engine: str = "torch", device: str = "auto",
                compute_type: str | None = None, exact: bool = False, threads: int = 0,
                rescore_margin: float | None = None) -> Engine:
    """The engine that runs the model `path` (a directory, built-in name or hub id): `engine` is
    torch, ct2 or auto (ct2 when the model can run there, else torch). The ct2 options
    (`compute_type`, `exact`, `rescore_margin`) are refused with an explicit torch engine and
    ignored when auto falls back to torch."""
    from xlt.models import resolve_model

    resolved = resolve_model(path, option=option)
    kind = choose_engine(engine, resolved, option=option, name=path)
    if compute_type and engine == "torch":
        raise UsageError("--compute-type sets CTranslate2's compute type: use it with --engine ct2 or auto")
    if rescore_margin is not None and engine == "torch":
        raise UsageError("--rescore-margin re-scores CTranslate2's int8 near-ties: use it with --engine ct2 or auto")
    check_rescore_margin(rescore_margin)
    check_threads(threads)
    if kind == "ct2":
        return CT2Engine(resolved, spec=path, device=device, compute_type=compute_type, exact=exact, threads=threads,
                         rescore_margin=rescore_margin)
    return TorchEngine(resolved, spec=path, option=option, device=device, threads=threads)


class Classifier:
    """A trained classifier (xlt checkpoint or any HF sequence-classification model) and the engine
    that runs it (`runner`; `open_engine` picks it, see there for `engine` and the ct2 options).

    `engine` then names the engine used (`torch`, `ct2`, `predictions`), `engine_name` what ran,
    for signatures. Without `compute_type`, ct2 runs float32 when `exact` (the model's own outputs:
    what eval publishes), else its fast type (int8 on CPU with near-ties re-scored, float16 on GPU:
    soft-label's trade, see xlt.inference.ct2_engine). `model` is the torch model with the torch
    engine, else None. `runner` given (e.g. saved predictions) replaces the engine choice.
    """

    def __init__(self, path: str, *, device: str = "auto", batch_size: int = 64,
                 max_length: int | None = None, option: str = "--model", engine: str = "torch",
                 compute_type: str | None = None, exact: bool = False, threads: int = 0,
                 rescore_margin: float | None = None, runner: Engine | None = None) -> None:
        self.path = path
        self.batch_size = batch_size
        self.runner: Engine = runner or open_engine(
            path, option=option, engine=engine, device=device, compute_type=compute_type, exact=exact,
            threads=threads, rescore_margin=rescore_margin)
        self.resolved = self.runner.resolved
        self.manifest = self.runner.manifest
        self.tokenizer = self.runner.tokenizer
        self.model = self.runner.model
        self.device = self.runner.device
        self.compute_type = self.runner.compute_type
        self.engine = self.runner.kind
        labels = self.manifest.get("labels")
        self.labels = LabelSet(labels if labels is not None else list(self.runner.labels))
        self.fields: tuple[str, ...] | None = tuple(self.manifest["fields"]) if self.manifest.get("fields") else None
        #: a token classifier: `predict` gives per-word outputs (xlt.tagging.model.WordOutputs)
        self.tagging = is_tagging(self.fields) or (os.path.isdir(self.resolved) and is_tagger(self.resolved))
        if self.tagging:
            self.fields = TAGGING
        self.max_length = max_length or self.manifest.get("max_length") or _tokenizer_limit(self.tokenizer)
        self.pad_id = pad_id_of(self.tokenizer)

    @property
    def digest(self) -> str:
        """The model's content digest (`xlt.digest.dir_digest`), `hub:<id>` for a hub model."""
        return self.runner.digest

    @property
    def engine_name(self) -> str:
        """The engine for signatures: `torch`, `ct2:<compute type>`, or with int8 near-ties re-scored
        `ct2:int8+float32<0.03`, `predictions`."""
        return self.runner.name

    def engine_note(self) -> str | None:
        """What the engine did worth a log line (how many near-ties ct2 re-scored), or None."""
        return self.runner.note()

    @property
    def source_langs(self) -> list[str]:
        """The languages its labels came from (teach: its training languages; distill: see
        xlt.distill.run.distill_source_langs)."""
        return manifest_source_langs(self.manifest)

    @property
    def training(self) -> dict[str, Any] | None:
        """How the model was trained (`xlt.train.checkpoint.manifest_training_info`: seed, steps,
        training seconds, ...), None for a model xlt did not train; a predictions file's is the one
        eval wrote into it (`pred.training`)."""
        if self.engine == "predictions":
            return getattr(self.runner, "training", None)
        return manifest_training_info(self.manifest)

    def predict(self, texts: Texts, *, hidden: bool = False) -> Any:
        """Outputs of `texts` (one tuple of text fields per record; `(words,)` for a tagger, whose
        outputs are per word: `xlt.tagging.model.WordOutputs`)."""
        return self.runner.run(Inputs(texts, self._encode), batch_size=self.batch_size, hidden=hidden)

    def _encode(self, texts: Texts) -> Any:
        return tokenize(self.tokenizer, texts, max_length=self.max_length)


def _tokenizer_limit(tokenizer: Any) -> int | None:
    """The longest input the tokenizer takes, at most 512 (None without a tokenizer)."""
    if tokenizer is None:
        return None
    return min(getattr(tokenizer, "model_max_length", 512) or 512, 512)


def load_classifier(path: str, *, option: str = "--model", **run: Any) -> Classifier:
    """A model directory/name/hub id (`run` its keyword options: engine, compute_type, exact, ...),
    or a predictions file from `xlt eval --predictions` (run by `SavedPredictions`)."""
    runner = SavedPredictions(path, option=option) if os.path.isfile(path) else None
    return Classifier(path, option=option, runner=runner, **run)
