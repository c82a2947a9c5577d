"""What every training command (`teach`, `distill`) does around the training loop.

A command reads and checks its records, decides its objective and how to build its model, and
hands the rest to `run_training`: seed, build the model, tokenize (through the cache), batches,
dev scoring, the checkpoint manifest, train (xlt.train.loop) and save. `RunOptions` is what the
commands share besides their model and objective; `PerturbableModel` and `model_loss` serve
robust training (xlt.robust) for any objective.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import __version__, log
from xlt.envinfo import versions
from xlt.errors import InputError
from xlt.io import SkipReport
from xlt.records import is_tagging
from xlt.train.data import Corpus, LabelSet, read_labelled
from xlt.train.loop import BatchFn, DevFn, Objective, TrainConfig, TrainResult, check_run, seed_everything, train

#: The batch keys a classifier's forward pass takes.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class RunOptions:
    """What a training command takes besides its model and objective: the checkpoint to write,
    the optimisation settings, how records are read and tokenized, dev files for model
    selection, robust training (an `xlt.robust.RobustConfig`), LoRA (an `xlt.train.lora.LoraOptions`;
    None: full fine-tuning), experiment tracking (an `xlt.train.tracking.Tracking`) and the report
    of skipped records."""

    out: str
    cfg: TrainConfig
    max_length: int = 128
    labels: LabelSet | None = None
    fields: tuple[str, ...] | None = None
    dev_files: Sequence[str] | None = None
    robust: Any = None
    lora: Any = None
    tracking: Any = None
    force: bool = False
    resume: bool = False
    on_error: str = "fail"
    skipped: SkipReport = field(default_factory=SkipReport)

    def check(self) -> None:
        """Everything that needs no data and no model: call it before reading, loading and tokenizing."""
        check_run(self.out, self.cfg, force=self.force, resume=self.resume)

    def read(self, files: Sequence[str] | None, **options: Any) -> Corpus:
        """The records of `files` with these options' fields, labels and error handling
        (`options`: more of `read_labelled`'s)."""
        return read_labelled(files, fields=self.fields, labels=self.labels, on_error=self.on_error,
                             skipped=self.skipped, **options)


@dataclass
class BuiltModel:
    """A model ready to train, its tokenizer, and what the manifest records of where it came from."""

    model: Any
    tokenizer: Any
    about: dict[str, Any]


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def log_corpus(corpus: Corpus, what: str, detail: str) -> None:
    log.info(f"{len(corpus.examples)} {what}, languages "
             + ", ".join(f"{k} {v}" for k, v in corpus.langs.items()) + f"; {detail}")


def gold_labels(corpus: Corpus, labels: LabelSet, *, required: str | None = None) -> list[Any]:
    """Each example's gold label as an index into `labels` (tagging: a list, one per word); -100
    (what cross-entropy ignores) where it has none or one outside `labels`. A label set of fewer than two classes is refused,
    and so, when `required` names what needs gold labels, is a corpus without a usable one."""
    raw = [ex.extra.get("_label") for ex in corpus.examples]
    missing = f"{required} needs gold labels, and no record has one"
    if required and all(r is None for r in raw):
        raise InputError(missing)  # reported first: with no label at all there is no label set either
    if len(labels) < 2:
        raise InputError("no label set: records need gold labels, teacher outputs, or --labels")
    if is_tagging(corpus.fields):  # a list of tag indices per example, one per word
        words = [len(ex.texts[0]) for ex in corpus.examples]
        tags = [[labels.index(t) if labels.has(t) else -100 for t in r] if r is not None else [-100] * n
                for r, n in zip(raw, words)]
        if required and all(t == -100 for row in tags for t in row):
            raise InputError(missing)
        return tags
    gold = [labels.index(r) if r is not None and labels.has(r) else -100 for r in raw]
    if required and all(g == -100 for g in gold):
        raise InputError(missing)
    return gold


def batch_builder(encoded: Any, *, pad: int, gold: Any, tensors: Mapping[str, Any]) -> BatchFn:
    """Batches of token ids (dynamic padding), gold labels and per-example tensors (teacher outputs)."""

    def make_batch(rows: Sequence[int]) -> dict[str, Any]:
        idx = list(rows)
        batch = encoded.batch(idx, pad_id=pad)
        batch["labels"] = gold[idx]
        for k, v in tensors.items():
            batch[k] = v[idx]
        return batch

    return make_batch


class PerturbableModel:
    """A model whose input embeddings robust training can perturb: `get_input_embeddings` reaches
    through a DDP wrapper while the forward pass still goes through it (so gradients are
    synchronised); `call_kwargs` are passed to every forward call."""

    def __init__(self, model: Any, **call_kwargs: Any) -> None:
        self._model = model
        self._inner = getattr(model, "module", model)
        self._kwargs = call_kwargs

    def get_input_embeddings(self) -> Any:
        return self._inner.get_input_embeddings()

    def __call__(self, **kwargs: Any) -> Any:
        return self._model(**kwargs, **self._kwargs)


def model_loss(model: Any, batch: Mapping[str, Any], loss_from_outputs: Callable[[Any], Any], *, robust: Any = None,
               **call_kwargs: Any) -> Any:
    """`loss_from_outputs` of the model's outputs on the batch's model inputs; with `robust`, on
    perturbed input embeddings (xlt.robust: adversarial PGD or random noise in the L-infinity ball,
    Huang et al. 2021). The noise comes from torch's global RNG, seeded and saved with the state."""
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
    if robust is not None and robust.method != "none":
        from xlt.robust import robust_loss

        return robust_loss(PerturbableModel(model, **call_kwargs), inputs, robust, loss_fn_from_outputs=loss_from_outputs)
    return loss_from_outputs(model(**inputs, **call_kwargs))


def load_base_classifier(model_name: str, labels: LabelSet, *, option: str = "--model",
                         tagging: bool = False) -> tuple[Any, Any, str]:
    """The base encoder with a fresh (or matching) classification head, and its tokenizer; with
    `tagging`, a token classification head (one prediction per subword, read per word)."""
    from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                              AutoTokenizer)

    from xlt.hf import quiet_transformers, safe_load_kwargs
    from xlt.models import resolve_model

    quiet_transformers()
    resolved = resolve_model(model_name, option=option)
    from xlt.inference.torch_engine import register_small_students
    from xlt.train.lora import is_adapter_dir

    if is_adapter_dir(resolved):
        from xlt.errors import UsageError

        raise UsageError(f"{option} {model_name}: a LoRA adapter dir; train from the checkpoint that holds it "
                         "(its merged model) or from its base model")

    if os.path.isdir(resolved):
        register_small_students(resolved)
    config = AutoConfig.from_pretrained(resolved)
    id2label = {i: name for i, name in enumerate(labels.names)}
    old = getattr(config, "id2label", None) or {}
    same_head = [old.get(i) for i in range(len(old))] == labels.names
    config.num_labels = len(labels)
    config.id2label = id2label
    config.label2id = {name: i for i, name in id2label.items()}
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    model = auto.from_pretrained(resolved, config=config,
                                                               ignore_mismatched_sizes=not same_head,
                                                               **safe_load_kwargs(resolved, option=option))
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return model, tokenizer, resolved


@dataclass
class DevSet:
    """Labelled dev examples, tokenized once, scored during training."""

    corpus: Corpus
    encoded: Any

    def scorer(self, tokenizer: Any, batch_size: int) -> DevFn:
        from xlt.evaluate.metrics import accuracy, macro_f1
        from xlt.inference.torch_engine import run_model

        gold = [e.label for e in self.corpus.examples]
        langs = [e.lang for e in self.corpus.examples]
        if is_tagging(self.corpus.fields):
            from xlt.tagging.model import word_dev_scorer

            return word_dev_scorer(self.encoded, gold, langs, pad=pad_id(tokenizer), batch_size=batch_size)
        n_classes = len(self.corpus.labels)
        pad = pad_id(tokenizer)

        def score(model: Any) -> dict[str, Any]:
            device = next(model.parameters()).device
            out = run_model(model, self.encoded, pad_id=pad, batch_size=batch_size, device=device)
            pred = out.logits.argmax(axis=-1).tolist()
            per_lang = {}
            for lang in sorted(set(langs)):
                rows = [i for i, l in enumerate(langs) if l == lang]
                per_lang[lang] = round(accuracy([gold[i] for i in rows], [pred[i] for i in rows]), 5)
            return {"accuracy": round(accuracy(gold, pred), 5), "macro_f1": round(macro_f1(gold, pred, n_classes), 5),
                    "languages": per_lang, "n": len(gold)}

        return score


def load_dev(run: RunOptions, *, tokenizer: Any, fields: tuple[str, ...], labels: LabelSet) -> DevSet:
    """The dev records of `run.dev_files`, read as the training records are and tokenized."""
    from xlt.train.tokcache import cached_tokenize

    corpus = read_labelled(run.dev_files, fields=fields, labels=labels, on_error=run.on_error, skipped=run.skipped)
    return DevSet(corpus, cached_tokenize(tokenizer, [e.texts for e in corpus.examples], max_length=run.max_length,
                                          fields=fields, what="dev records"))


def run_manifest(run: RunOptions, *, kind: str, corpus: Corpus, labels: LabelSet, about: Mapping[str, Any],
                 dev: DevSet | None) -> dict[str, Any]:
    """The checkpoint manifest before training: the command, where the model came from (`about`),
    the data, its digests, the seed, robust training and versions (the loop adds its results)."""
    return {
        "xlt_version": __version__, "kind": kind, **about, "fields": list(corpus.fields), "labels": labels.values,
        "max_length": run.max_length, "train_langs": corpus.langs,
        "inputs": {"train": corpus.digests, "dev": dev.corpus.digests if dev is not None else {}},
        "seed": run.cfg.seed, "robust": run.robust.to_dict() if run.robust is not None else None,
        "versions": versions(), "command": sys.argv,
    }


def run_training(run: RunOptions, corpus: Corpus, labels: LabelSet, *, kind: str, build: Callable[[], BuiltModel],
                 objective: Objective, gold: Sequence[Any], tensors: Mapping[str, Any] | None = None,
                 what: str = "training records") -> TrainResult:
    """Train on `corpus` (read and checked) and write the checkpoint `run.out`.

    The model is built by `build` after seeding, so a fresh head is the same in every run with
    that seed. `gold` holds the examples' label indices (`gold_labels`) and `tensors` per-example
    tensors added to every batch (teacher outputs)."""
    import torch

    from xlt.train.tokcache import cached_tokenize

    seed_everything(run.cfg.seed)
    built = build()
    if run.lora is not None:
        from xlt.train.lora import apply_lora

        built.model, built.about["peft"] = apply_lora(built.model, run.lora)
        p = built.about["peft"]
        log.info(f"LoRA r={p['r']} alpha={p['alpha']:g} on {', '.join(p['targets'])}, head {', '.join(p['head'])} "
                 f"trained fully: {p['trainable_parameters']:,} of {p['total_parameters']:,} parameters trainable")
    encoded = cached_tokenize(built.tokenizer, [e.texts for e in corpus.examples], max_length=run.max_length,
                              fields=corpus.fields, what=what)
    if is_tagging(corpus.fields):
        from xlt.tagging.model import pad_words, word_batch_builder

        if encoded.uncovered():
            log.warn(f"{encoded.uncovered()} training word(s) lost their label: past --max-length {run.max_length} "
                     "subwords, or given no subword by the tokenizer")
        make_batch = word_batch_builder(encoded, pad=pad_id(built.tokenizer),
                                        gold=pad_words(gold, fill=-100, dtype=torch.long), tensors=tensors or {})
    else:
        make_batch = batch_builder(encoded, pad=pad_id(built.tokenizer), gold=torch.tensor(gold, dtype=torch.long),
                                   tensors=tensors or {})
    devset = load_dev(run, tokenizer=built.tokenizer, fields=corpus.fields, labels=labels) if run.dev_files else None
    dev = devset.scorer(built.tokenizer, batch_size=max(run.cfg.batch_size, 64)) if devset is not None else None
    manifest = run_manifest(run, kind=kind, corpus=corpus, labels=labels, about=built.about, dev=devset)
    return train(model=built.model, tokenizer=built.tokenizer, lengths=encoded.lengths(), make_batch=make_batch,
                 objective=objective, cfg=run.cfg, out=run.out, manifest=manifest, dev=dev, force=run.force,
                 resume=run.resume, tracking=run.tracking)
