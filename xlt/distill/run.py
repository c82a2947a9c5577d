"""`distill`: train a student from teacher outputs with any weighted combination of objectives.

Teacher outputs come from the records (`teacher` key written by `soft-label`) or from a frozen
`--teacher` checkpoint run on each record's `src` view (or the record itself). A frozen teacher in
eval mode gives the same outputs at every step, so its outputs are computed once before training
(one pass instead of one per epoch). The student reads the record itself (the target-language
view). distill is: resolve the teacher signals, build the student, and the run every training
command shares (xlt.train.run): the same loop, checkpoint format, dev selection, resume and DDP as
`teach`.

Tagging records (`tokens`) distil word by word (FreeTransfer-X's word-level KD): the teacher's
outputs are per word (a tagger's, at each word's first subword), the student is a token
classifier read at the first subword of each of its own words, and every objective term is the
classification term applied to the covered words of the batch, flattened (`kd` is the mean KL
per word, `pseudo` keeps or drops each word, `hidden-kl` compares word vectors).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt import log
from xlt.distill.softlabel import TeacherCheck, ViewCheck, teacher_base
from xlt.errors import InputError, UsageError, XltError
from xlt.inference.ensemble import load_teacher, teacher_paths
from xlt.records import is_tagging, record_lang
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
    by `TeacherCheck` while reading: same label names, `kind` values, finite numbers); for tagging
    [N, W, C] (and [N, W, H]) padded with zeros past each record's words."""
    import torch

    tagging = is_tagging(corpus.fields)
    out: dict[str, Any]
    rows, hidden = [], []
    for ex in corpus.examples:
        t = ex.extra["teacher"]
        names = [str(x) for x in t["labels"]]
        order = [names.index(n) for n in labels.names]
        values = t[kind]
        rows.append([[float(w[j]) for j in order] for w in values] if tagging else [float(values[j]) for j in order])
        if need_hidden:
            hidden.append(t["hidden"])
    if tagging:
        from xlt.tagging.model import pad_words

        out = {f"teacher_{kind}": pad_words(rows, fill=0.0, dtype=torch.float32)}
        if need_hidden:
            out["teacher_hidden"] = pad_words(hidden, fill=0.0, dtype=torch.float32)
        return out
    out = {f"teacher_{kind}": torch.tensor(rows, dtype=torch.float32)}
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


def _online_teacher(corpus: Corpus, clf: Any, *, which: str, need_hidden: bool,
                    labels: LabelSet | None) -> TeacherSignals:
    """Run a frozen teacher (a loaded `Classifier`) once over every example's `src` view (or the
    example itself); a tagger per word (the reader's `ViewCheck` made sure it sees every word)."""
    import numpy as np
    import torch

    from xlt.records import RecordError, view

    fields = corpus.fields
    tagging = is_tagging(fields)
    if tagging != bool(clf.tagging):
        raise UsageError(f"--teacher {clf.path} is {'a tagger' if clf.tagging else 'a sequence classifier'} and the "
                         f"records are {'tagging records (tokens)' if tagging else 'not tagging records'}: "
                         f"use {'a tagger' if tagging else 'a sequence-classification'} teacher")
    texts = []
    for ex in corpus.examples:
        rec = {**dict(zip(fields, ex.texts)), **ex.extra}
        try:
            v = view(rec, fields, which)
        except RecordError as exc:
            raise InputError(f"record {ex.index + 1}: {exc}") from None
        texts.append(tuple(v[f] for f in fields))
    log.info(f"running the teacher {clf.path} on {len(texts)} {'source views' if which != 'self' else 'records'}")
    from xlt.inference.unique import UniqueRuns

    runs = UniqueRuns(clf, limit=len(texts))  # parallel records share their src view: each is run once
    out = runs.predict(texts, hidden=need_hidden)
    if runs.note():
        log.info(str(runs.note()))
    if tagging and out.uncovered():  # refused while reading (ViewCheck); a tokenizer-less engine gets here
        raise InputError(f"--teacher {clf.path} saw no subword of {out.uncovered()} word(s) (past its max length "
                         f"{clf.max_length}): per-word teacher outputs need every word")
    # per record: logits [C] (or [W, C] per word), the same rows of hidden vectors
    finite = np.array([np.isfinite(out.logits[i]).all() and (not need_hidden or np.isfinite(out.hidden[i]).all())
                       for i in range(len(texts))], dtype=bool)
    if not finite.all():
        raise XltError(f"--teacher {clf.path} produced non-finite outputs (NaN or Infinity) for "
                       f"{int((~finite).sum())} of {len(texts)} records; refusing to train on them")
    tl = labels or clf.labels
    if sorted(tl.names) != sorted(clf.labels.names):
        raise UsageError(f"--labels {tl.names} differ from the teacher's {clf.labels.names}")
    order = [clf.labels.names.index(n) for n in tl.names]
    if tagging:
        from xlt.tagging.model import pad_words

        tensors = {"teacher_logits": pad_words([lg[:, order] for lg in out.logits], fill=0.0, dtype=torch.float32)}
        if need_hidden:
            tensors["teacher_hidden"] = pad_words(out.hidden, fill=0.0, dtype=torch.float32)
    else:
        tensors = {"teacher_logits": torch.tensor(out.logits[:, order], dtype=torch.float32)}
        if need_hidden:
            tensors["teacher_hidden"] = torch.tensor(out.hidden, dtype=torch.float32)
    return TeacherSignals(tensors, tl, clf.digest, clf.source_langs, teacher_base(clf))


def _read_with_signals(files: Sequence[str] | None, run: RunOptions, needs: Collection[str], *,
                       teacher: str | Sequence[str] | None, teacher_view: str, objective: str,
                       gold_langs: Collection[str] | None = None) -> tuple[Corpus, TeacherSignals]:
    """The records, and the teacher signals the objective needs: run `teacher` (one model, or
    several as an ensemble) on them, or take what they carry; without either, only the teacher's
    base encoder recorded in them. `gold_langs`: only their records keep gold labels."""
    teacher = teacher_paths(teacher)
    need_hidden = "student_hidden" in needs
    need_teacher = bool(set(needs) & {"teacher", "teacher_logits", "teacher_hidden"})
    stored = TeacherCheck(run.labels, need_hidden=need_hidden, fields=run.fields) if need_teacher and not teacher else None
    clf = None
    check: Any = stored
    if need_teacher and teacher:
        if need_hidden and len(teacher) > 1:
            raise UsageError("objective hidden-kl compares vectors with one teacher's: an ensemble of teachers has "
                             "no one vector space (give one --teacher)")
        clf = load_teacher(teacher, device=run.cfg.device, batch_size=64)
        if clf.tagging:  # the views it reads are checked while reading: FILE:LINE, --on-error skip
            check = ViewCheck(teacher_view, run.fields, teacher=clf)
    corpus = run.read(files, need_label=False, extra_keys=("teacher", "src", "langs"), allow_one_label=True,
                      check=check, gold_langs=gold_langs)
    if clf is not None:
        return corpus, _online_teacher(corpus, clf, which=teacher_view, need_hidden=need_hidden, labels=run.labels)
    if stored is not None:
        return corpus, _stored_teacher(corpus, stored, labels=run.labels, need_hidden=need_hidden,
                                       need_logits="teacher_logits" in needs, objective=objective)
    base = None
    if not teacher:
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

    tagging = is_tagging(corpus.fields)
    # a tagging example's one text is its list of words: the vocabulary learns from the sentence
    texts = (" ".join(t) if tagging else t for ex in corpus.examples for t in ex.texts)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size, model_max_length=max(max_length, 512))
    extra = {"pooled_size": pooled_size} if pooled_size else {}
    model = build_student(arch, vocab_size=len(tokenizer), labels=labels.names, pad_token_id=tokenizer.pad_token_id,
                          max_position_embeddings=max(max_length, 512), tagging=tagging, **extra)
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
    net, tokenizer, resolved = load_base_classifier(student, labels, option="--student",
                                                    tagging=is_tagging(corpus.fields))
    return BuiltModel(net, tokenizer, {"student": student, "student_resolved": resolved, "student_arch": None,
                                       "vocab_size": None})


def _pseudo_label_report(corpus: Corpus, labels: LabelSet, tensors: dict[str, Any], min_confidence: float) -> Any:
    """Counts of the teacher's argmax labels kept at `min_confidence`, per language and class
    (per word and tag for tagging records; logged)."""
    import torch

    from xlt.distill.report import PseudoLabelReport
    from xlt.inference.types import softmax

    tagging = is_tagging(corpus.fields)
    report = PseudoLabelReport(labels.names, unit="words" if tagging else "examples")
    probs = tensors["teacher_probs"] if "teacher_probs" in tensors else torch.from_numpy(softmax(tensors["teacher_logits"].numpy()))
    conf, arg = probs.max(dim=-1)
    langs = [ex.lang for ex in corpus.examples]
    if tagging:  # [N, W]: every word of every record, not the padding past its words
        words = torch.tensor([len(ex.texts[0]) for ex in corpus.examples])
        real = torch.arange(conf.shape[1])[None, :] < words[:, None]
        langs = [lang for lang, n in zip(langs, words.tolist()) for _ in range(n)]
        conf, arg = conf[real], arg[real]
    report.update(langs, arg, conf >= min_confidence)
    for row in report.rows():
        log.info(f"pseudo-labels{' per word' if tagging else ''}: {row}")
    return report


def _gold_langs(value: str | Collection[str] | None) -> set[str] | None:
    """`--gold-langs`: a set of language codes (comma-separated or a list), None for every language."""
    if value is None:
        return None
    langs = {x.strip() for x in (value.split(",") if isinstance(value, str) else value) if x.strip()}
    if not langs:
        raise UsageError("--gold-langs needs one or more language codes, e.g. --gold-langs en")
    return langs


def distillation_objective(combined: Any, *, teacher_keys: Collection[str], use_labels: bool, need_hidden: bool,
                           robust: Any = None, tagging: bool = False) -> Objective:
    """`combined` (a `CombinedObjective`) on the student's outputs and the batch's teacher tensors
    (`teacher_keys`) and gold labels; with `robust`, on perturbed input embeddings. With
    `tagging`, on the batch's covered words: the student's logits (and last-layer vectors) at the
    first subword of each word (`word_pos`, `word_mask`), the per-word teacher tensors [B, W, ...]
    and gold tags [B, W], flattened to one row per word."""
    from xlt.distill.losses import DistillBatch
    from xlt.distill.losses.combined import ObjectiveResult
    from xlt.distill.students import sentence_vector, token_vectors
    from xlt.tagging.model import word_logits

    call = {"output_hidden_states": True} if need_hidden else {}

    def objective(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        holder: dict[str, Any] = {}

        def loss_from_outputs(out: Any) -> Any:
            # robust training calls this more than once: the last call is the loss trained on
            logits = out.logits.float()
            labels = batch["labels"] if use_labels else None
            teacher = {k: batch[k] for k in teacher_keys}
            if not tagging:
                hidden = sentence_vector(out).float() if need_hidden else None
            else:
                keep, pos = batch["word_mask"], batch["word_pos"]
                if not bool(keep.any()):  # every word past --max-length: nothing to learn from (not NaN)
                    holder["r"] = ObjectiveResult(logits.sum() * 0.0)
                    return holder["r"].loss
                logits = word_logits(logits, pos)[keep]
                hidden = word_logits(token_vectors(out).float(), pos)[keep] if need_hidden else None
                labels = labels[keep] if labels is not None else None
                teacher = {k: v[keep] for k, v in teacher.items()}
            holder["r"] = combined(DistillBatch(student_logits=logits, labels=labels, student_hidden=hidden, **teacher))
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
    teacher: str | Sequence[str] | None = None,
    teacher_view: str = "auto",
    temperature: float = 1.0,
    min_confidence: float = 0.0,
    balance: bool = False,
    gold_langs: str | Collection[str] | None = None,
) -> TrainResult:
    """Train a student on records and write the checkpoint directory `run.out`. `teacher`: one
    frozen model or several (an ensemble: their mean logits); `gold_langs` (a list, or comma-
    separated): only records in these languages keep their gold labels."""
    run.check()  # before reading the records and running the teacher
    from xlt.distill.losses import CombinedObjective

    if student is not None and student_arch is not None:
        raise UsageError(f"choose one student: {STUDENT_SOURCES}")
    if run.lora is not None and student_arch is not None:
        raise UsageError(f"--peft lora adapts a pretrained encoder student; a --student-arch {student_arch} student "
                         "is trained from scratch: drop --peft lora, or use --student")
    teachers = teacher_paths(teacher)
    golds = _gold_langs(gold_langs)
    combined = CombinedObjective(objective, temperature=temperature, min_confidence=min_confidence, balance=balance)
    needs, spec = combined.needs, combined.describe()
    need_hidden = "student_hidden" in needs
    corpus, signals = _read_with_signals(files, run, needs, teacher=teachers, teacher_view=teacher_view,
                                         objective=spec["objective"], gold_langs=golds)
    if student is None and student_arch is None:
        from xlt.models.builtin import DEFAULT_MODEL

        student = signals.base or DEFAULT_MODEL
        log.info(f"student: {student} ({'the teacher' + chr(39) + 's base encoder' if signals.base else 'the built-in default'}; "
                 f"choose another with {STUDENT_SOURCES})")
    labels = signals.labels or corpus.labels
    tagging = is_tagging(corpus.fields)
    gold = gold_labels(corpus, labels, required="objective ce" if "labels" in needs else None)
    use_labels = any(t != -100 for g in gold for t in (g if tagging else [g]))
    combined.check_inputs({"student_logits", *signals.tensors, *(["student_hidden"] if need_hidden else []),
                           *(["labels"] if use_labels else [])})
    report = _pseudo_label_report(corpus, labels, signals.tensors, min_confidence) if "pseudo" in combined.weights else None
    log_corpus(corpus, "distillation records", f"objective {spec['objective']}")
    teacher_used = bool(needs & {"teacher", "teacher_logits", "teacher_hidden"})

    def build() -> BuiltModel:
        pooled = int(signals.tensors["teacher_hidden"].shape[-1]) if need_hidden and student_arch else None
        built = _student(corpus, labels, student=student, arch=student_arch, vocab_size=vocab_size,
                         max_length=run.max_length, pooled_size=pooled)
        source_langs = distill_source_langs(corpus, student_dir=built.about["student_resolved"], teacher_langs=signals.langs,
                                            teacher_used=teacher_used, teacher_view=teacher_view, gold_used="labels" in needs)
        built.about.update({"teacher": (teachers[0] if len(teachers) == 1 else teachers) or None,
                            "teacher_digest": signals.digest, "teacher_view": teacher_view if teachers else None,
                            "gold_langs": sorted(golds) if golds is not None else None, "objective": spec,
                            "source_langs": source_langs, "pseudo_labels": report.to_dict() if report is not None else None})
        return built

    return run_training(run, corpus, labels, kind="distill", build=build, gold=gold, tensors=signals.tensors,
                        objective=distillation_objective(combined, teacher_keys=list(signals.tensors), use_labels=use_labels,
                                                         need_hidden=need_hidden, robust=run.robust, tagging=tagging),
                        what="distillation records")


__all__ = ["distill", "record_lang"]
