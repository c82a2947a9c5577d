"""`teach`: fine-tune a sequence(-pair) classifier on labelled records (one or many languages),
or a tagger on `tokens` + `tags` records.

Mixing several files or languages in one run is multilingual tuning (MLT). The classification
head sits on the first token ([CLS] / <s>), as in the papers' setups; a tagger's on every subword,
read at the first subword of each word (xlt.tagging).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xlt.records import is_tagging
from xlt.train.loop import Objective, TrainResult
from xlt.train.run import BuiltModel, RunOptions, gold_labels, load_base_classifier, log_corpus, model_loss, run_training


def teach(train_files: Sequence[str] | None, *, model: str, run: RunOptions) -> TrainResult:
    """Fine-tune `model` on `train_files` and write the checkpoint directory `run.out`."""
    run.check()  # before reading, loading and tokenizing anything
    corpus = run.read(train_files)
    log_corpus(corpus, "training records", f"labels {', '.join(corpus.labels.names)}")

    tagging = is_tagging(corpus.fields)

    def build() -> BuiltModel:
        net, tokenizer, resolved = load_base_classifier(model, corpus.labels, tagging=tagging)
        return BuiltModel(net, tokenizer, {"base_model": model, "base_model_resolved": resolved})

    if tagging:
        objective = tagging_objective(run.robust)
    else:
        objective = classification_objective(run.robust)
    return run_training(run, corpus, corpus.labels, kind="teach", build=build, objective=objective,
                        gold=gold_labels(corpus, corpus.labels))


def classification_objective(robust: Any = None) -> Objective:
    """Cross-entropy on gold labels; with `robust`, on perturbed input embeddings (xlt.robust:
    adversarial PGD or random noise in the L-infinity ball, Huang et al. 2021)."""
    import torch.nn.functional as F

    def objective(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        labels = batch["labels"]
        return model_loss(model, batch, lambda out: F.cross_entropy(out.logits.float(), labels), robust=robust), {}

    return objective


def tagging_objective(robust: Any = None) -> Objective:
    """Cross-entropy of each covered word's first-subword logits against its gold tag (words
    without a gold tag, -100, are left out); with `robust`, on perturbed input embeddings."""
    import torch.nn.functional as F

    from xlt.tagging.model import word_logits

    def objective(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        labels = batch["labels"].masked_fill(~batch["word_mask"], -100)

        def loss(out: Any) -> Any:
            lg = word_logits(out.logits.float(), batch["word_pos"])
            return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), labels.reshape(-1), ignore_index=-100)

        return model_loss(model, batch, loss, robust=robust), {}

    return objective
