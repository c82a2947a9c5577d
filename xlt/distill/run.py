"""`distill`: train a student from teacher outputs with any weighted combination of objectives.

Teacher outputs come from the records (`teacher` key written by `soft-label`) or from a frozen
`--teacher` checkpoint run on each record's `src` view (or the record itself). A frozen teacher in
eval mode gives the same outputs at every step, so its outputs are computed once before training
(one pass instead of one per epoch). The student reads the record itself (the target-language
view). distill is: resolve the teacher signals, build the student, and the run every training
command shares (xlt.train.run): the same loop, checkpoint format, dev selection, resume and DDP as
`teach`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import log
from xlt.distill.softlabel import TeacherCheck, teacher_base
from xlt.errors import InputError, UsageError, XltError
from xlt.records import record_lang
from xlt.train.data import Corpus, LabelSet
from xlt.train.loop import Objective, TrainResult
from xlt.train.run import BuiltModel, RunOptions, gold_labels, load_base_classifier, log_corpus, model_loss, run_training

STUDENT_SOURCES = "--student NAME (an encoder) or --student-arch transformer|bilstm|cnn (a small model from scratch)"


@dataclass
class TeacherSignals:
    """What a student learns from besides gold labels: per-record teacher tensors in the label
    order of `labels` (`teacher_logits` or `teacher_probs`, and `teacher_hidden`), the teacher's
    label set (None: the data's), content digest, source languages and base encoder (the default
    student)."""

    tensors: dict[str, Any] = field(default_factory=dict)
    labels: LabelSet | None = None
    digest: str | None = None
    langs: list[str] = field(default_factory=list)
    base: str | None = None


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


def _stored_teacher(corpus: Corpus, check: TeacherCheck, *, labels: LabelSet | None, need_hidden: bool,
                    need_logits: bool, objective: str) -> TeacherSignals:
    """The teacher outputs the records carry (written by `soft-label`)."""
    assert check.kind is not None and check.values is not None
    if need_logits and check.kind != "logits":  # mse matches logits: stored probabilities will not do
        raise InputError(f"objective {objective} needs teacher logits and the records carry "
                         "only probabilities: soft-label again (it stores both), or use kd")
    labels = labels or LabelSet(check.values)
    return TeacherSignals(_teacher_tensors(corpus, labels, kind=check.kind, need_hidden=need_hidden), labels,
                          check.model, base=check.base)


def _online_teacher(corpus: Corpus, teacher: str, *, which: str, need_hidden: bool, device: str,
                    batch_size: int, labels: LabelSet | None) -> TeacherSignals:
    """Run a frozen teacher once over every example's `src` view (or the example itself)."""
    import torch

    from xlt.inference.classifier import Classifier
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
    return TeacherSignals(tensors, tl, clf.digest, clf.source_langs, teacher_base(clf))


def _read_with_signals(files: Sequence[str] | None, run: RunOptions, needs: Collection[str], *, teacher: str | None,
                       teacher_view: str, objective: str) -> tuple[Corpus, TeacherSignals]:
    """The records, and the teacher signals the objective needs: run `teacher` on them, or take
    what they carry; without either, only the teacher's base encoder recorded in them."""
    need_hidden = "student_hidden" in needs
    need_teacher = bool(set(needs) & {"teacher", "teacher_logits", "teacher_hidden"})
    stored = TeacherCheck(run.labels, need_hidden=need_hidden) if need_teacher and teacher is None else None
    corpus = run.read(files, need_label=False, extra_keys=("teacher", "src", "langs"), allow_one_label=True,
                      check=stored)
    if need_teacher and teacher is not None:
        return corpus, _online_teacher(corpus, teacher, which=teacher_view, need_hidden=need_hidden,
                                       device=run.cfg.device, batch_size=64, labels=run.labels)
    if stored is not None:
        return corpus, _stored_teacher(corpus, stored, labels=run.labels, need_hidden=need_hidden,
                                       need_logits="teacher_logits" in needs, objective=objective)
    base = None
    if teacher is None:
        base = next((ex.extra["teacher"].get("base") for ex in corpus.examples
                     if isinstance(ex.extra.get("teacher"), dict) and isinstance(ex.extra["teacher"].get("base"), str)), None)
    return corpus, TeacherSignals(labels=run.labels, base=base)


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


def _student(corpus: Corpus, labels: LabelSet, *, student: str | None, arch: str | None, vocab_size: int,
             max_length: int, pooled_size: int | None) -> BuiltModel:
    """The student: a small model from scratch (`arch`) or an encoder with a classification head."""
    if arch is not None:
        net, tokenizer = _build_small_student(arch, corpus, labels, vocab_size=vocab_size, max_length=max_length,
                                              pooled_size=pooled_size)
        return BuiltModel(net, tokenizer, {"student": student, "student_resolved": None, "student_arch": arch,
                                           "vocab_size": len(tokenizer)})
    assert student is not None
    net, tokenizer, resolved = load_base_classifier(student, labels, option="--student")
    return BuiltModel(net, tokenizer, {"student": student, "student_resolved": resolved, "student_arch": None,
                                       "vocab_size": None})


def _pseudo_label_report(corpus: Corpus, labels: LabelSet, tensors: dict[str, Any], min_confidence: float) -> Any:
    """Counts of the teacher's argmax labels kept at `min_confidence`, per language and class (logged)."""
    import torch

    from xlt.distill.report import PseudoLabelReport
    from xlt.inference.types import softmax

    report = PseudoLabelReport(labels.names)
    probs = tensors["teacher_probs"] if "teacher_probs" in tensors else torch.from_numpy(softmax(tensors["teacher_logits"].numpy()))
    conf, arg = probs.max(dim=-1)
    report.update([ex.lang for ex in corpus.examples], arg, conf >= min_confidence)
    for row in report.rows():
        log.info(f"pseudo-labels: {row}")
    return report


def distillation_objective(combined: Any, *, teacher_keys: Collection[str], use_labels: bool, need_hidden: bool,
                           robust: Any = None) -> Objective:
    """`combined` (a `CombinedObjective`) on the student's outputs and the batch's teacher tensors
    (`teacher_keys`) and gold labels; with `robust`, on perturbed input embeddings."""
    from xlt.distill.losses import DistillBatch
    from xlt.distill.students import sentence_vector

    call = {"output_hidden_states": True} if need_hidden else {}

    def objective(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        holder: dict[str, Any] = {}

        def loss_from_outputs(out: Any) -> Any:
            # robust training calls this more than once: the last call is the loss trained on
            holder["r"] = combined(DistillBatch(
                student_logits=out.logits.float(), labels=batch["labels"] if use_labels else None,
                student_hidden=sentence_vector(out).float() if need_hidden else None,
                **{k: batch[k] for k in teacher_keys}))
            return holder["r"].loss

        loss = model_loss(model, batch, loss_from_outputs, robust=robust, **call)
        return loss, {k: float(v) for k, v in holder["r"].terms.items()}

    return objective


def distill(
    files: Sequence[str] | None,
    *,
    run: RunOptions,
    objective: str = "kd",
    student: str | None = None,
    student_arch: str | None = None,
    vocab_size: int = 10000,
    teacher: str | None = None,
    teacher_view: str = "auto",
    temperature: float = 1.0,
    min_confidence: float = 0.0,
    balance: bool = False,
) -> TrainResult:
    """Train a student on records and write the checkpoint directory `run.out`."""
    run.check()  # before reading the records and running the teacher
    from xlt.distill.losses import CombinedObjective

    if student is not None and student_arch is not None:
        raise UsageError(f"choose one student: {STUDENT_SOURCES}")
    if run.lora is not None and student_arch is not None:
        raise UsageError(f"--peft lora adapts a pretrained encoder student; a --student-arch {student_arch} student "
                         "is trained from scratch: drop --peft lora, or use --student")
    combined = CombinedObjective(objective, temperature=temperature, min_confidence=min_confidence, balance=balance)
    needs, spec = combined.needs, combined.describe()
    need_hidden = "student_hidden" in needs
    corpus, signals = _read_with_signals(files, run, needs, teacher=teacher, teacher_view=teacher_view,
                                         objective=spec["objective"])
    if student is None and student_arch is None:
        from xlt.models.builtin import DEFAULT_MODEL

        student = signals.base or DEFAULT_MODEL
        log.info(f"student: {student} ({'the teacher' + chr(39) + 's base encoder' if signals.base else 'the built-in default'}; "
                 f"choose another with {STUDENT_SOURCES})")
    labels = signals.labels or corpus.labels
    gold = gold_labels(corpus, labels, required="objective ce" if "labels" in needs else None)
    use_labels = any(g != -100 for g in gold)
    combined.check_inputs({"student_logits", *signals.tensors, *(["student_hidden"] if need_hidden else []),
                           *(["labels"] if use_labels else [])})
    report = _pseudo_label_report(corpus, labels, signals.tensors, min_confidence) if "pseudo" in combined.weights else None
    log_corpus(corpus, "distillation records", f"objective {spec['objective']}")
    teacher_used = bool(needs & {"teacher", "teacher_logits", "teacher_hidden"})

    def build() -> BuiltModel:
        pooled = int(signals.tensors["teacher_hidden"].shape[1]) if need_hidden and student_arch else None
        built = _student(corpus, labels, student=student, arch=student_arch, vocab_size=vocab_size,
                         max_length=run.max_length, pooled_size=pooled)
        source_langs = distill_source_langs(corpus, student_dir=built.about["student_resolved"], teacher_langs=signals.langs,
                                            teacher_used=teacher_used, teacher_view=teacher_view, gold_used="labels" in needs)
        built.about.update({"teacher": teacher, "teacher_digest": signals.digest,
                            "teacher_view": teacher_view if teacher else None, "objective": spec,
                            "source_langs": source_langs, "pseudo_labels": report.to_dict() if report is not None else None})
        return built

    return run_training(run, corpus, labels, kind="distill", build=build, gold=gold, tensors=signals.tensors,
                        objective=distillation_objective(combined, teacher_keys=list(signals.tensors), use_labels=use_labels,
                                                         need_hidden=need_hidden, robust=run.robust),
                        what="distillation records")


__all__ = ["distill", "record_lang"]
