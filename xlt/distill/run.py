"""`distill`: train a student from teacher outputs with any weighted combination of objectives.

Teacher outputs come from the records (`teacher` key written by `soft-label`) or from a frozen
`--teacher` checkpoint run on each record's `src` view (or the record itself). A frozen teacher in
eval mode gives the same outputs at every step, so its outputs are computed once before training
(one pass instead of one per epoch). The student reads the record itself (the target-language
view). Same training engine, checkpoint format, dev selection, resume and DDP as `teach`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from xlt import __version__, log
from xlt.envinfo import versions
from xlt.errors import InputError, UsageError, XltError
from xlt.distill.softlabel import TeacherCheck, teacher_base
from xlt.io import SkipReport
from xlt.records import record_lang
from xlt.train.data import Corpus, LabelSet, read_labelled
from xlt.train.engine import TrainConfig, TrainResult, seed_everything, train
from xlt.train.teach import _Embeddable, load_base_classifier, load_dev

STUDENT_SOURCES = "--student NAME (an encoder) or --student-arch transformer|bilstm|cnn (a small model from scratch)"


def _teacher_tensors(corpus: Corpus, labels: LabelSet, *, kind: str, need_hidden: bool) -> dict[str, Any]:
    """Stored teacher outputs as tensors in the student's label order (every record was checked
    by `TeacherCheck` while reading: same label names, `kind` values, finite numbers)."""
    import torch

    rows, hidden = [], []
    for ex in corpus.examples:
        t = ex.extra["teacher"]
        names = [str(x) for x in t["labels"]]
        values = t[kind]
        rows.append([float(values[names.index(n)]) for n in labels.names])
        if need_hidden:
            hidden.append(t["hidden"])
    out: dict[str, Any] = {f"teacher_{kind}": torch.tensor(rows, dtype=torch.float32)}
    if need_hidden:
        out["teacher_hidden"] = torch.tensor(hidden, dtype=torch.float32)
    return out


def _online_teacher(corpus: Corpus, teacher: str, *, which: str, need_hidden: bool, device: str,
                    batch_size: int, labels: LabelSet | None) -> tuple[dict[str, Any], LabelSet, str, list[str], str | None]:
    """Run a frozen teacher once over every example's `src` view (or the example itself)."""
    import torch

    from xlt.infer import Classifier
    from xlt.records import RecordError, view

    clf = Classifier(teacher, device=device, batch_size=batch_size, option="--teacher")
    fields = corpus.fields
    texts = []
    for ex in corpus.examples:
        rec = {**dict(zip(fields, ex.texts)), **ex.extra}
        try:
            v = view(rec, fields, which)
        except RecordError as exc:
            raise InputError(f"record {ex.index + 1}: {exc}") from None
        texts.append(tuple(v[f] for f in fields))
    log.info(f"running the teacher {teacher} on {len(texts)} {'source views' if which != 'self' else 'records'}")
    out = clf.predict(texts, hidden=need_hidden)
    import numpy as np

    finite = np.isfinite(out.logits).all(axis=-1)
    if need_hidden:
        finite &= np.isfinite(out.hidden).all(axis=-1)
    if not finite.all():
        raise XltError(f"--teacher {teacher} produced non-finite outputs (NaN or Infinity) for "
                       f"{int((~finite).sum())} of {len(texts)} records; refusing to train on them")
    tl = labels or clf.labels
    if sorted(tl.names) != sorted(clf.labels.names):
        raise UsageError(f"--labels {tl.names} differ from the teacher's {clf.labels.names}")
    order = [clf.labels.names.index(n) for n in tl.names]
    tensors = {"teacher_logits": torch.tensor(out.logits[:, order], dtype=torch.float32)}
    if need_hidden:
        tensors["teacher_hidden"] = torch.tensor(out.hidden, dtype=torch.float32)
    return tensors, tl, clf.digest, clf.source_langs, teacher_base(clf)


def distill_source_langs(corpus: Corpus, *, student_dir: str | None, teacher_langs: Sequence[str],
                         teacher_used: bool, teacher_view: str, gold_used: bool) -> list[str]:
    """Where a distilled student's supervision came from, for `eval`'s "non-source" average: the
    source languages of its starting checkpoint and of an online teacher, the languages of the
    `src` views the teacher read, and those of the gold labels it used. Distillation languages
    the student only imitated a teacher in are not source languages (XD on French text from an
    English-tuned model: source en)."""
    from xlt.train.checkpoint import manifest_source_langs, read_manifest

    langs: dict[str, None] = dict.fromkeys(manifest_source_langs(read_manifest(student_dir)) if student_dir else [])
    langs.update(dict.fromkeys(teacher_langs))
    for ex in corpus.examples:
        src = ex.extra.get("src")
        if teacher_used and teacher_view != "self" and isinstance(src, dict) and src.get("lang"):
            langs[str(src["lang"])] = None
        if gold_used and ex.extra.get("_label") is not None:
            langs[ex.lang] = None
    return list(langs)


def _build_small_student(arch: str, corpus: Corpus, labels: LabelSet, *, vocab_size: int, max_length: int,
                         pooled_size: int | None) -> tuple[Any, Any]:
    from xlt.distill.bpe import train_bpe_tokenizer
    from xlt.distill.students import build_student

    texts = (t for ex in corpus.examples for t in ex.texts)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size, model_max_length=max(max_length, 512))
    extra = {"pooled_size": pooled_size} if pooled_size else {}
    model = build_student(arch, vocab_size=len(tokenizer), labels=labels.names, pad_token_id=tokenizer.pad_token_id,
                          max_position_embeddings=max(max_length, 512), **extra)
    log.info(f"student {arch}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, BPE vocabulary {len(tokenizer)}")
    return model, tokenizer


def distill(
    files: Sequence[str] | None,
    *,
    out: str,
    cfg: TrainConfig,
    objective: str = "kd",
    student: str | None = None,
    student_arch: str | None = None,
    vocab_size: int = 10000,
    teacher: str | None = None,
    teacher_view: str = "auto",
    temperature: float = 1.0,
    min_confidence: float = 0.0,
    balance: bool = False,
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
    """Train a student on records and write the checkpoint directory `out`."""
    from xlt.train.engine import check_run

    check_run(out, cfg, force=force, resume=resume)  # before reading the records and running the teacher

    import torch

    from xlt.distill.losses import CombinedObjective, DistillBatch
    from xlt.distill.report import PseudoLabelReport
    from xlt.train.tokcache import cached_tokenize

    if student is not None and student_arch is not None:
        raise UsageError(f"choose one student: {STUDENT_SOURCES}")
    combined = CombinedObjective(objective, temperature=temperature, min_confidence=min_confidence, balance=balance)
    need_hidden = "student_hidden" in combined.needs
    need_teacher = bool(combined.needs & {"teacher", "teacher_logits", "teacher_hidden"})
    if need_teacher and teacher is None and "teacher_logits" in combined.needs:
        need_kind = "logits"  # mse matches logits: stored probabilities will not do
    else:
        need_kind = None
    skipped = skipped if skipped is not None else SkipReport()
    stored_check = TeacherCheck(labels, need_hidden=need_hidden) if need_teacher and teacher is None else None
    corpus = read_labelled(files, fields=fields, labels=labels, on_error=on_error, skipped=skipped, need_label=False,
                           extra_keys=("teacher", "src", "langs"), allow_one_label=True, check=stored_check)
    teacher_digest = None
    teacher_langs: list[str] = []  # an online teacher's source languages
    base: str | None = None  # the teacher's base encoder: the default student
    tensors: dict[str, Any] = {}
    if need_teacher and teacher is not None:
        tensors, labels, teacher_digest, teacher_langs, base = _online_teacher(
            corpus, teacher, which=teacher_view, need_hidden=need_hidden, device=cfg.device, batch_size=64, labels=labels)
    elif stored_check is not None:
        assert stored_check.kind is not None and stored_check.values is not None
        if need_kind and stored_check.kind != need_kind:
            raise InputError(f"objective {combined.describe()['objective']} needs teacher logits and the records carry "
                             "only probabilities: soft-label again (it stores both), or use kd")
        labels = labels or LabelSet(stored_check.values)
        tensors = _teacher_tensors(corpus, labels, kind=stored_check.kind, need_hidden=need_hidden)
        teacher_digest, base = stored_check.model, stored_check.base
    elif teacher is None:
        base = next((ex.extra["teacher"].get("base") for ex in corpus.examples
                     if isinstance(ex.extra.get("teacher"), dict) and isinstance(ex.extra["teacher"].get("base"), str)), None)
    if student is None and student_arch is None:
        from xlt.models.builtin import DEFAULT_MODEL

        student = base or DEFAULT_MODEL
        log.info(f"student: {student} ({'the teacher' + chr(39) + 's base encoder' if base else 'the built-in default'}; "
                 f"choose another with {STUDENT_SOURCES})")
    if "labels" in combined.needs and all(ex.extra.get("_label") is None for ex in corpus.examples):
        raise InputError("objective ce needs gold labels, and no record has one")
    labels = labels or corpus.labels
    if len(labels) < 2:
        raise InputError("no label set: records need gold labels, teacher outputs, or --labels")
    gold = []
    for ex in corpus.examples:
        raw = ex.extra.get("_label")
        gold.append(labels.index(raw) if raw is not None and labels.has(raw) else -100)
    if "labels" in combined.needs and all(g == -100 for g in gold):
        raise InputError("objective ce needs gold labels, and no record has one")
    available = {"student_logits"} | set(tensors) | ({"student_hidden"} if need_hidden else set())
    if any(g != -100 for g in gold):
        available.add("labels")
    combined.check_inputs(available)

    report = None
    if "pseudo" in combined.weights:
        from xlt.infer import softmax

        report = PseudoLabelReport(labels.names)
        probs = tensors["teacher_probs"] if "teacher_probs" in tensors else torch.from_numpy(softmax(tensors["teacher_logits"].numpy()))
        conf, arg = probs.max(dim=-1)
        report.update([ex.lang for ex in corpus.examples], arg, conf >= min_confidence)
        for row in report.rows():
            log.info(f"pseudo-labels: {row}")

    log.info(f"{len(corpus.examples)} distillation records, languages "
             + ", ".join(f"{k} {v}" for k, v in corpus.langs.items()) + f"; objective {combined.describe()['objective']}")
    seed_everything(cfg.seed)
    if student_arch is not None:
        pooled = int(tensors["teacher_hidden"].shape[1]) if need_hidden else None
        net, tokenizer = _build_small_student(student_arch, corpus, labels, vocab_size=vocab_size, max_length=max_length,
                                              pooled_size=pooled)
        resolved = None
    else:
        net, tokenizer, resolved = load_base_classifier(student, labels, option="--student")
    encoded = cached_tokenize(tokenizer, [ex.texts for ex in corpus.examples], max_length=max_length,
                              fields=corpus.fields, what="distillation records")
    gold_t = torch.tensor(gold, dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def make_batch(rows: Sequence[int]) -> dict[str, Any]:
        idx = list(rows)
        batch = encoded.batch(idx, pad_id=pad)
        batch["labels"] = gold_t[idx]
        for k, v in tensors.items():
            batch[k] = v[idx]
        return batch

    def student_outputs(model: Any, out: Any, batch: dict[str, Any]) -> Any:
        from xlt.distill.students import sentence_vector

        kw = {k: batch[k] for k in tensors}
        labels_t = batch["labels"] if "labels" in available else None
        return combined(DistillBatch(student_logits=out.logits.float(), labels=labels_t,
                                     student_hidden=sentence_vector(out).float() if need_hidden else None, **kw))

    def objective_fn(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        extra = {"output_hidden_states": True} if need_hidden else {}
        if robust is not None:
            from xlt.robust import robust_loss

            holder: dict[str, Any] = {}

            def from_outputs(out: Any) -> Any:
                holder["r"] = student_outputs(model, out, batch)
                return holder["r"].loss

            wrapped = _Embeddable(model, **extra)
            loss = robust_loss(wrapped, inputs, robust, loss_fn_from_outputs=from_outputs)
            return loss, {k: float(v) for k, v in holder["r"].terms.items()}
        result = student_outputs(model, model(**inputs, **extra), batch)
        return result.loss, {k: float(v) for k, v in result.terms.items()}

    dev = None
    dev_corpus = None
    if dev_files:
        devset = load_dev(dev_files, tokenizer=tokenizer, fields=corpus.fields, labels=labels,
                          max_length=max_length, on_error=on_error, skipped=skipped)
        dev_corpus = devset.corpus
        dev = devset.scorer(tokenizer, batch_size=max(cfg.batch_size, 64))
    manifest = {
        "xlt_version": __version__, "kind": "distill", "student": student, "student_resolved": resolved,
        "student_arch": student_arch, "vocab_size": len(tokenizer) if student_arch else None,
        "teacher": teacher, "teacher_digest": teacher_digest, "teacher_view": teacher_view if teacher else None,
        "objective": combined.describe(), "fields": list(corpus.fields), "labels": labels.values,
        "max_length": max_length, "train_langs": corpus.langs,
        "source_langs": distill_source_langs(corpus, student_dir=resolved if student_arch is None else None,
                                             teacher_langs=teacher_langs, teacher_used=need_teacher,
                                             teacher_view=teacher_view, gold_used="labels" in combined.needs),
        "inputs": {"train": corpus.digests, "dev": dev_corpus.digests if dev_corpus else {}},
        "pseudo_labels": report.to_dict() if report is not None else None,
        "seed": cfg.seed, "robust": robust.to_dict() if robust is not None else None,
        "versions": versions(), "command": sys.argv,
    }
    return train(model=net, tokenizer=tokenizer, lengths=encoded.lengths(), make_batch=make_batch,
                 objective=objective_fn, cfg=cfg, out=out, manifest=manifest, dev=dev, force=force, resume=resume)


__all__ = ["distill", "record_lang"]
