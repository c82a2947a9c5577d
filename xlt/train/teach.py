"""`teach`: fine-tune a sequence(-pair) classifier on labelled records (one or many languages).

Mixing several files or languages in one run is multilingual tuning (MLT). The classification
head sits on the first token ([CLS] / <s>), as in the papers' setups.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xlt import __version__, log
from xlt.envinfo import versions
from xlt.io import SkipReport
from xlt.train.data import Corpus, LabelSet, read_labelled
from xlt.train.engine import TrainConfig, TrainResult, seed_everything, train


@dataclass
class DevSet:
    """Labelled dev examples, tokenized once, scored during training."""

    corpus: Corpus
    encoded: Any

    def scorer(self, tokenizer: Any, batch_size: int) -> Any:
        from xlt.evaluate.metrics import accuracy, macro_f1
        from xlt.infer import run_model

        gold = [e.label for e in self.corpus.examples]
        langs = [e.lang for e in self.corpus.examples]
        n_classes = len(self.corpus.labels)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

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


def load_dev(dev_files: Sequence[str], *, tokenizer: Any, fields: tuple[str, ...], labels: LabelSet,
             max_length: int, on_error: str, skipped: SkipReport) -> DevSet:
    from xlt.train.tokcache import cached_tokenize

    corpus = read_labelled(dev_files, fields=fields, labels=labels, on_error=on_error, skipped=skipped)
    return DevSet(corpus, cached_tokenize(tokenizer, [e.texts for e in corpus.examples], max_length=max_length,
                                          fields=fields, what="dev records"))


def load_base_classifier(model_name: str, labels: LabelSet, *, option: str = "--model") -> tuple[Any, Any, str]:
    """The base encoder with a fresh (or matching) classification head, and its tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from xlt.hf import quiet_transformers
    from xlt.models import resolve_model

    quiet_transformers()
    resolved = resolve_model(model_name, option=option)
    from xlt.infer import register_small_students

    if os.path.isdir(resolved):
        register_small_students(resolved)
    config = AutoConfig.from_pretrained(resolved)
    id2label = {i: name for i, name in enumerate(labels.names)}
    old = getattr(config, "id2label", None) or {}
    same_head = [old.get(i) for i in range(len(old))] == labels.names
    config.num_labels = len(labels)
    config.id2label = id2label
    config.label2id = {name: i for i, name in id2label.items()}
    from xlt.hf import safe_load_kwargs

    model = AutoModelForSequenceClassification.from_pretrained(resolved, config=config,
                                                               ignore_mismatched_sizes=not same_head,
                                                               **safe_load_kwargs(resolved, option=option))
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return model, tokenizer, resolved


def teach(
    train_files: Sequence[str] | None,
    *,
    model: str,
    out: str,
    cfg: TrainConfig,
    max_length: int = 128,
    labels: LabelSet | None = None,
    fields: tuple[str, ...] | None = None,
    dev_files: Sequence[str] | None = None,
    robust: Any = None,
    force: bool = False,
    resume: bool = False,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
) -> TrainResult:
    """Fine-tune `model` on `train_files` and write the checkpoint directory `out`."""
    from xlt.train.engine import check_run

    check_run(out, cfg, force=force, resume=resume)  # before reading, loading and tokenizing anything

    import torch

    from xlt.train.tokcache import cached_tokenize

    skipped = skipped if skipped is not None else SkipReport()
    corpus = read_labelled(train_files, fields=fields, labels=labels, on_error=on_error, skipped=skipped)
    log.info(f"{len(corpus.examples)} training records, languages "
             + ", ".join(f"{k} {v}" for k, v in corpus.langs.items()) + f"; labels {', '.join(corpus.labels.names)}")
    seed_everything(cfg.seed)
    net, tokenizer, resolved = load_base_classifier(model, corpus.labels)
    encoded = cached_tokenize(tokenizer, [e.texts for e in corpus.examples], max_length=max_length,
                              fields=corpus.fields, what="training records")
    gold = torch.tensor([e.label for e in corpus.examples], dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def make_batch(rows: Sequence[int]) -> dict[str, Any]:
        batch = encoded.batch(rows, pad_id=pad)
        batch["labels"] = gold[list(rows)]
        return batch

    objective = classification_objective(robust)
    dev = None
    dev_corpus = None
    if dev_files:
        devset = load_dev(dev_files, tokenizer=tokenizer, fields=corpus.fields, labels=corpus.labels,
                          max_length=max_length, on_error=on_error, skipped=skipped)
        dev_corpus = devset.corpus
        dev = devset.scorer(tokenizer, batch_size=max(cfg.batch_size, 64))
    manifest = {
        "xlt_version": __version__, "kind": "teach", "base_model": model, "base_model_resolved": resolved,
        "fields": list(corpus.fields), "labels": corpus.labels.values, "max_length": max_length,
        "train_langs": corpus.langs, "inputs": {"train": corpus.digests, "dev": dev_corpus.digests if dev_corpus else {}},
        "seed": cfg.seed, "robust": robust.to_dict() if robust is not None else None,
        "versions": versions(), "command": sys.argv,
    }
    return train(model=net, tokenizer=tokenizer, lengths=encoded.lengths(), make_batch=make_batch,
                 objective=objective, cfg=cfg, out=out, manifest=manifest, dev=dev, force=force, resume=resume)


class _Embeddable:
    """Lets robust training reach the input embeddings through a DDP wrapper while the forward
    pass still goes through the wrapper (so gradients are synchronised)."""

    def __init__(self, model: Any, **call_kwargs: Any) -> None:
        self._model = model
        self._inner = getattr(model, "module", model)
        self._kwargs = call_kwargs

    def get_input_embeddings(self) -> Any:
        return self._inner.get_input_embeddings()

    def __call__(self, **kwargs: Any) -> Any:
        return self._model(**kwargs, **self._kwargs)


def classification_objective(robust: Any = None) -> Any:
    """Cross-entropy on gold labels; with `robust`, on perturbed input embeddings (xlt.robust:
    adversarial PGD or random noise in the L-infinity ball, Huang et al. 2021). The noise comes
    from torch's global RNG, which is seeded and saved with resumable state."""
    import torch.nn.functional as F

    def objective(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if robust is not None and robust.method != "none":
            from xlt.robust import robust_loss

            loss = robust_loss(_Embeddable(model), inputs, robust,
                               loss_fn_from_outputs=lambda out: F.cross_entropy(out.logits.float(), labels))
            return loss, {}
        out = model(**inputs)
        return F.cross_entropy(out.logits.float(), labels), {}

    return objective
