"""`xlt distill`: train a student from teacher outputs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common
from xlt.cli import teach as t


def distill_cli(
    files: common.Files = None,
    out: t.Out = ...,
    student: Annotated[Optional[str], typer.Option("--student", help="Student encoder: local dir, xlt checkpoint, built-in offline name (me5-small) or hub id. Default: the teacher's own base encoder (recorded by soft-label in `teacher.base`, or read from --teacher), else me5-small.")] = None,
    student_arch: Annotated[Optional[str], typer.Option("--student-arch", help="Or a small student trained from scratch: transformer, bilstm or cnn (~5 M parameters, BPE vocabulary from the distillation text).")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=16, help="BPE vocabulary size of a --student-arch student.")] = 10000,
    objective: Annotated[str, typer.Option("--objective", help="Weighted terms: kd, mse, hidden-kl, ce, pseudo; e.g. `kd=1,ce=0.5` or `ce=1,hidden-kl=0.1` (BERT-KLD's lambda is the hidden-kl weight).")] = "kd",
    teacher: Annotated[Optional[list[str]], typer.Option("--teacher", help="Frozen teacher run on each record's `src` view (instead of stored soft labels; needed for hidden-kl unless soft-label --hidden was used). For XD it may be the student's own starting checkpoint. More than once: an ensemble (the mean of the teachers' logits).")] = None,
    teacher_view: Annotated[str, typer.Option("--teacher-view", help="What --teacher reads: auto (`src` when present), src, self.")] = "auto",
    temperature: Annotated[float, typer.Option("--temperature", parser=common.finite, help="kd temperature T (loss scaled by T^2; MONOX-KD uses 0.1).")] = 1.0,
    min_confidence: Annotated[float, typer.Option("--min-confidence", parser=common.finite, help="pseudo: keep teacher argmax labels only at or above this probability (0 keeps all).")] = 0.0,
    balance: Annotated[bool, typer.Option("--balance", help="pseudo: weight kept examples so every pseudo-class counts equally.")] = False,
    gold_langs: Annotated[Optional[str], typer.Option("--gold-langs", help="Read gold labels (ce, and the label set) only from records in these languages, comma-separated (e.g. `en`): every other record's label is dropped unread, so parallel target-language text with labels cannot leak into training.")] = None,
    dev: t.Dev = None,
    labels: t.Labels = None,
    fields: common.Fields = None,
    epochs: t.Epochs = 3.0,
    max_steps: t.MaxSteps = None,
    lr: Annotated[Optional[float], typer.Option("--lr", parser=common.finite, help="Peak learning rate (default 5e-5 for encoders, 1e-3 for --student-arch).")] = None,
    warmup: t.Warmup = 0.1,
    weight_decay: t.WeightDecay = 0.01,
    batch_size: common.BatchSize = 32,
    grad_accum: t.GradAccum = 1,
    max_length: t.MaxLength = 128,
    seed: common.Seed = 42,
    freeze_embeddings: t.Freeze = False,
    device: common.Device = "auto",
    precision: t.Precision = "auto",
    eval_every: t.EvalEvery = None,
    save_every: t.SaveEvery = 500,
    log_every: t.LogEvery = 50,
    robust: t.Robust = "none",
    epsilon: t.Epsilon = None,
    adv_steps: t.AdvSteps = None,
    adv_lr: t.AdvLr = None,
    peft: t.Peft = "none",
    lora_r: t.LoraR = None,
    lora_alpha: t.LoraAlpha = None,
    lora_dropout: t.LoraDropout = None,
    lora_targets: t.LoraTargets = None,
    report_to: common.ReportTo = "none",
    tracking_dir: common.TrackingDir = None,
    resume: t.Resume = False,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Train a student on records (their own, target-language text) from teacher outputs.

    Teacher outputs come from the records' `teacher` key (xlt soft-label) or from --teacher.
    Reads all of its input (training). Same checkpoints, dev selection, --resume and DDP as teach.
    Tagging records (`tokens`) distil word by word: per-word teacher outputs (a tagger's), a token
    classification student read at the first subword of each word, every term per word
    (--min-confidence keeps or drops each word; the pseudo-label counts are per language and tag).

    Example: xlt pair --src en xnli/dev.*.jsonl | xlt soft-label --teacher en.ckpt | xlt distill --student me5-small --objective kd --out st.ckpt -
    """
    with common.stage("distill", main_output=False, quiet=quiet, verbose=verbose) as stage:
        from xlt.distill.run import distill

        run = t.run_options(out=out, labels=labels, fields=fields, dev=dev, max_length=max_length, robust=robust,
                            epsilon=epsilon, adv_steps=adv_steps, adv_lr=adv_lr, force=force, resume=resume,
                            on_error=on_error, skipped=stage.skipped, epochs=epochs, max_steps=max_steps,
                            lr=lr or (1e-3 if student_arch else 5e-5), warmup=warmup, weight_decay=weight_decay,
                            batch_size=batch_size, grad_accum=grad_accum, seed=seed,
                            freeze_embeddings=freeze_embeddings, device=device, precision=precision,
                            eval_every=eval_every, save_every=save_every, log_every=log_every, peft=peft,
                            lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                            lora_targets=lora_targets, report_to=report_to, tracking_dir=tracking_dir)
        distill(files, run=run, objective=objective, student=student, student_arch=student_arch, vocab_size=vocab_size,
                teacher=teacher or None, teacher_view=teacher_view, gold_langs=gold_langs, temperature=temperature, min_confidence=min_confidence,
                balance=balance)


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_cli)
