"""`xlt teach`: fine-tune a (teacher) classifier."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from xlt.cli import common

Epochs = Annotated[float, typer.Option("--epochs", parser=common.finite, help="Training epochs (fractions allowed).")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps (overrides --epochs).")]
Lr = Annotated[float, typer.Option("--lr", parser=common.finite, help="Peak learning rate (AdamW).")]
Warmup = Annotated[float, typer.Option("--warmup", parser=common.finite, help="Linear warm-up over this fraction of the steps, then linear decay to 0.")]
WeightDecay = Annotated[float, typer.Option("--weight-decay", parser=common.finite, help="AdamW weight decay (not on biases and LayerNorms).")]
GradAccum = Annotated[int, typer.Option("--grad-accum", min=1, help="Gradient accumulation steps.")]
MaxLength = Annotated[int, typer.Option("--max-length", min=8, help="Truncate inputs to this many tokens.")]
Freeze = Annotated[bool, typer.Option("--freeze-embeddings", help="Freeze the word-embedding matrix (large multilingual vocabularies: much faster on CPU, often better zero-shot transfer).")]
Precision = Annotated[str, typer.Option("--precision", help="Mixed precision: auto (bf16/fp16 on GPU, none on CPU), no, fp16, bf16.")]
Dev = Annotated[Optional[list[str]], typer.Option("--dev", help="Dev file(s) for model selection: the checkpoint keeps the best dev accuracy. Repeatable.")]
EvalEvery = Annotated[Optional[int], typer.Option("--eval-every", min=1, help="Evaluate on --dev every N steps (default: each epoch).")]
SaveEvery = Annotated[int, typer.Option("--save-every", min=0, help="Save resumable state every N steps (0: only on interruption).")]
LogEvery = Annotated[int, typer.Option("--log-every", min=1, help="Log loss and speed every N steps.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its saved state (<out>.partial).")]
Labels = Annotated[Optional[str], typer.Option("--labels", help="Label set in index order, comma-separated (default: sorted labels of the data).")]
Robust = Annotated[str, typer.Option("--robust", help="Robust training: none, adv (PGD on input embeddings) or rs (random noise, RS-RP).")]
Epsilon = Annotated[Optional[float], typer.Option("--epsilon", parser=common.finite, help="L-infinity radius of the embedding perturbation (paper grid: 0.001, 0.01, 0.1, 1.0).")]
AdvSteps = Annotated[Optional[int], typer.Option("--adv-steps", min=1, help="--robust adv: projected gradient steps of the inner maximization.")]
AdvLr = Annotated[Optional[float], typer.Option("--adv-lr", parser=common.finite, help="--robust adv: step size of the inner maximization (default from epsilon and steps).")]
Peft = Annotated[str, typer.Option("--peft", help="Parameter-efficient fine-tuning: none (every weight) or lora (low-rank adapters on the attention, head trained fully; the checkpoint holds the merged model and the adapter in adapter/).")]
LoraR = Annotated[Optional[int], typer.Option("--lora-r", min=1, help="--peft lora: adapter rank (default 8).", show_default=False)]
LoraAlpha = Annotated[Optional[float], typer.Option("--lora-alpha", parser=common.finite, help="--peft lora: scaling alpha; updates are scaled by alpha/r (default 16).", show_default=False)]
LoraDropout = Annotated[Optional[float], typer.Option("--lora-dropout", parser=common.finite, help="--peft lora: dropout on the adapter input (default 0.1).", show_default=False)]
LoraTargets = Annotated[Optional[str], typer.Option("--lora-targets", help="--peft lora: modules to adapt, comma-separated (default: query,value for BERT/XLM-R/RoBERTa, q_lin,v_lin for DistilBERT).", show_default=False)]
Out = Annotated[str, typer.Option("--out", help="Checkpoint directory to write (atomically).")]


def teach_cli(
    files: common.Files = None,
    model: Annotated[str, typer.Option("--model", help="Base encoder: local dir, built-in offline name (me5-small, minilm-en) or hub id.")] = "me5-small",
    out: Out = ...,
    dev: Dev = None,
    labels: Labels = None,
    fields: common.Fields = None,
    epochs: Epochs = 3.0,
    max_steps: MaxSteps = None,
    lr: Lr = 5e-5,
    warmup: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    batch_size: common.BatchSize = 32,
    grad_accum: GradAccum = 1,
    max_length: MaxLength = 128,
    seed: common.Seed = 42,
    freeze_embeddings: Freeze = False,
    device: common.Device = "auto",
    precision: Precision = "auto",
    eval_every: EvalEvery = None,
    save_every: SaveEvery = 500,
    log_every: LogEvery = 50,
    robust: Robust = "none",
    epsilon: Epsilon = None,
    adv_steps: AdvSteps = None,
    adv_lr: AdvLr = None,
    peft: Peft = "none",
    lora_r: LoraR = None,
    lora_alpha: LoraAlpha = None,
    lora_dropout: LoraDropout = None,
    lora_targets: LoraTargets = None,
    report_to: common.ReportTo = "none",
    tracking_dir: common.TrackingDir = None,
    resume: Resume = False,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Fine-tune a sequence(-pair) classifier on labelled records and write a checkpoint dir.

    Reads all of its input (training needs every record); several files or languages mix into
    one run (multilingual tuning). Works under `torchrun --nproc-per-node N` / `accelerate launch`
    (DDP; only rank 0 writes). The checkpoint loads with AutoModelForSequenceClassification.

    Example: xlt teach en.jsonl --dev dev.en.jsonl --model me5-small --freeze-embeddings --out en.ckpt
    """
    # the checkpoint dir is checked and written by the training run itself (xlt.train.loop.check_run
    # first; state saved as it goes, so that --resume works; published atomically at the end)
    with common.stage("teach", main_output=False, quiet=quiet, verbose=verbose) as stage:
        from xlt.train.teach import teach

        run = run_options(out=out, labels=labels, fields=fields, dev=dev, max_length=max_length, robust=robust,
                          epsilon=epsilon, adv_steps=adv_steps, adv_lr=adv_lr, force=force, resume=resume,
                          on_error=on_error, skipped=stage.skipped, epochs=epochs, max_steps=max_steps, lr=lr,
                          warmup=warmup, weight_decay=weight_decay, batch_size=batch_size, grad_accum=grad_accum,
                          seed=seed, freeze_embeddings=freeze_embeddings, device=device, precision=precision,
                          eval_every=eval_every, save_every=save_every, log_every=log_every, peft=peft,
                          lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_targets=lora_targets,
                          report_to=report_to, tracking_dir=tracking_dir)
        teach(files, model=model, run=run)


def run_options(*, out: str, labels: str | None, fields: str | None, dev: list[str] | None, max_length: int,
                robust: str, epsilon: float | None, adv_steps: int | None, adv_lr: float | None, force: bool,
                resume: bool, on_error: str, skipped: Any, peft: str = "none", lora_r: int | None = None,
                lora_alpha: float | None = None, lora_dropout: float | None = None, lora_targets: str | None = None,
                report_to: str = "none", tracking_dir: str | None = None, **train: Any) -> Any:
    """teach's and distill's shared options as the library's `RunOptions`; `train` holds the
    `TrainConfig` fields (epochs, lr, batch_size, seed, ...)."""
    from xlt.records import parse_fields
    from xlt.train.data import LabelSet
    from xlt.train.lora import LoraOptions
    from xlt.train.loop import TrainConfig
    from xlt.train.run import RunOptions
    from xlt.train.tracking import Tracking

    robust_cfg = robust_config(robust, epsilon=epsilon, adv_steps=adv_steps, adv_lr=adv_lr, seed=train["seed"])
    return RunOptions(out=out, cfg=TrainConfig(**train), max_length=max_length,
                      labels=LabelSet.parse(labels) if labels else None, fields=parse_fields(fields), dev_files=dev,
                      robust=robust_cfg, force=force, resume=resume, on_error=on_error, skipped=skipped,
                      lora=LoraOptions.from_options(peft, r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                                                    targets=lora_targets),
                      tracking=Tracking.from_options(report_to, tracking_dir))


def robust_config(method: str, *, epsilon: float | None, adv_steps: int | None, adv_lr: float | None, seed: int):  # type: ignore[no-untyped-def]
    """The robust-training settings, or None for plain training (options that would do nothing are refused)."""
    from xlt.robust import RobustConfig

    cfg = RobustConfig.from_options(method, epsilon=epsilon, adv_steps=adv_steps, adv_lr=adv_lr, seed=seed)
    return None if cfg.method == "none" else cfg


def register(app: typer.Typer) -> None:
    app.command("teach")(teach_cli)
