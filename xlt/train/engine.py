"""The training loop shared by `teach` and `distill`, on accelerate.

One loop for every objective: the caller supplies the model, a function that builds a batch
from example indices, and an objective `(model, batch) -> (loss, terms)`. The loop owns
length-grouped batching, gradient accumulation, AdamW with linear warm-up/decay, frozen
embeddings, mixed precision, DDP (`torchrun`/`accelerate launch`; only rank 0 writes), dev
selection (keeps the best), periodic resumable state and atomic checkpoint output.

Resumable state lives in `<out>.partial/` until the run completes: trainable weights, optimizer,
scheduler, step/epoch/batch position, per-rank RNG states, best dev state and the log, stored
without pickle (xlt.train.state). `--resume` continues from it and ends with the same weights as
an uninterrupted run with the same seed. A non-finite loss stops the run with the state of the
last finite step saved; SIGINT/SIGTERM save state and exit 130/143.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from xlt import log
from xlt.errors import Interrupted, UsageError, XltError
from xlt.io import atomic_path, check_output
from xlt.train.checkpoint import save_checkpoint
from xlt.train.data import length_grouped_batches
from xlt.train.state import (LoopState, check_state, check_state_dir, has_legacy_state, has_state,
                             make_state_dir, remove_state_dir)

Objective = Callable[[Any, dict[str, Any]], tuple[Any, dict[str, float]]]
BatchFn = Callable[[Sequence[int]], dict[str, Any]]
DevFn = Callable[[Any], dict[str, Any]]

PRECISIONS = ("auto", "no", "fp16", "bf16")


class NonFiniteError(XltError):
    """Training produced a non-finite loss or non-finite weights (exit 1)."""


@dataclass
class TrainConfig:
    """Optimisation settings (resolved values are recorded in the manifest)."""

    epochs: float = 3.0
    max_steps: int | None = None
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    batch_size: int = 32
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    freeze_embeddings: bool = False
    device: str = "auto"
    precision: str = "auto"
    eval_every: int | None = None
    save_every: int = 500
    log_every: int = 50

    def check(self) -> None:
        # NaN compares False with everything, so each bound below would let it through: check first.
        for name in ("epochs", "lr", "warmup", "weight_decay", "max_grad_norm"):
            if not math.isfinite(getattr(self, name)):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number (got {getattr(self, name)})")
        if self.epochs <= 0 and not self.max_steps:
            raise UsageError("--epochs must be > 0 (or give --max-steps)")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError("--max-steps must be >= 1")
        if self.lr <= 0:
            raise UsageError("--lr must be > 0")
        if not 0 <= self.warmup < 1:
            raise UsageError("--warmup is a fraction of the steps in [0, 1)")
        if self.weight_decay < 0:
            raise UsageError("--weight-decay must be >= 0")
        if self.max_grad_norm < 0:
            raise UsageError("--max-grad-norm must be >= 0 (0: no clipping)")
        if self.grad_accum < 1 or self.batch_size < 1:
            raise UsageError("--batch-size and --grad-accum must be >= 1")
        if self.eval_every is not None and self.eval_every < 1:
            raise UsageError("--eval-every must be >= 1 (leave it out to evaluate after each epoch)")
        if self.save_every < 0:
            raise UsageError("--save-every must be >= 0 (0: save state only when interrupted)")
        if self.log_every < 1:
            raise UsageError("--log-every must be >= 1")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    examples_seen: int
    train_seconds: float
    examples_per_second: float
    best: dict[str, Any] | None
    dev_history: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def freeze_input_embeddings(model: Any) -> int:
    """Freeze the word-embedding matrix (it then gets no gradient and no optimizer state)."""
    emb = model.get_input_embeddings()
    n = 0
    for p in emb.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _mixed_precision(cfg: TrainConfig, device: str) -> str:
    import torch

    if cfg.precision != "auto":
        if cfg.precision != "no" and not device.startswith("cuda"):
            raise UsageError(f"--precision {cfg.precision} needs a CUDA device (this run is on {device})")
        return cfg.precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


class _Stopper:
    """SIGTERM/SIGINT (e.g. a cluster preemption) -> save state at the next step and stop."""

    def __init__(self) -> None:
        self.signum = 0  # the signal received, 0 for none
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Stopper":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:  # second signal: stop now, without waiting for the step to end
            raise Interrupted(f"{signal.Signals(signum).name} again: stopped at once, without saving state "
                              "(the last saved state, if any, is kept for --resume)", signum=signum)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def work_dir_for(out: str) -> str:
    return out.rstrip("/") + ".partial"


def check_run(out: str, cfg: TrainConfig, *, force: bool, resume: bool) -> None:
    """Everything about a run that needs no data and no model, so that a bad command fails in a
    second instead of after reading, loading and tokenizing: the config, the output, the state
    dir (`<out>.partial`) and, with `resume`, that a state is there to resume."""
    cfg.check()
    work = work_dir_for(out)
    if resume:
        if not has_state(work):
            if has_legacy_state(work):
                raise UsageError(f"--resume: {work} holds a state.pt of an older xlt, which is pickled and no longer "
                                 "loaded (loading a pickle can run code); rerun without --resume to start over")
            raise UsageError(f"--resume: no saved state at {work} (nothing to resume; run without --resume)")
        check_state(work)
    else:
        check_output(out, force=force, what="checkpoint")
        check_state_dir(work)


# What a resumable state belongs to (manifest key -> how the user spells it): the state of another
# model or label set must not continue this run.
_OWNER = (("kind", "command"), ("base_model", "--model"), ("student", "--student"),
          ("student_arch", "--student-arch"), ("labels", "labels"))


def _owner(manifest: dict[str, Any]) -> dict[str, Any]:
    return {spelled: manifest[key] for key, spelled in _OWNER if key in manifest}


def _nonfinite_parameters(model: Any) -> list[str]:
    import torch

    return [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


def _trainable_tensors(model: Any) -> dict[str, Any]:
    """Trainable parameters and buffers: what a resumed or best model needs beyond its base."""
    params = dict(model.named_parameters())
    return {k: v for k, v in model.state_dict().items() if k not in params or params[k].requires_grad}


def _trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in _trainable_tensors(model).items()}


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    # numpy's key array as a list: the state is saved as tensors + JSON, never pickled
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(
    *,
    model: Any,
    tokenizer: Any,
    lengths: Sequence[int],
    make_batch: BatchFn,
    objective: Objective,
    cfg: TrainConfig,
    out: str,
    manifest: dict[str, Any],
    dev: DevFn | None = None,
    force: bool = False,
    resume: bool = False,
    dev_metric: str = "accuracy",
) -> TrainResult:
    """Train `model` on the examples behind `lengths`/`make_batch` and write the checkpoint `out`.

    `manifest` is completed with the run's results and written as `xlt.json`. With `dev`, the
    model is evaluated every `eval_every` optimizer steps (default: each epoch) and the best by
    `dev_metric` is what `out` holds.
    """
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from xlt.hf import resolve_device

    check_run(out, cfg, force=force, resume=resume)  # again: train() is also called from Python
    work = work_dir_for(out)

    device = resolve_device(cfg.device)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=_mixed_precision(cfg, device))
    rank, world = accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    if not is_main:
        log.state.quiet = True
    if world > 1:
        log.info(f"distributed: {world} processes ({accelerator.distributed_type}), rank {rank}")
    if not resume and os.path.lexists(work) and is_main:
        # A stale partial run of an earlier invocation: start over. Only xlt's own files go, and
        # only from a dir xlt recognisably made (checked again: it may have changed since).
        check_state_dir(work)
        remove_state_dir(work)
    accelerator.wait_for_everyone()

    def agree(*flags: int) -> list[int]:
        """The largest of each flag over all ranks, so every rank takes the same branch (a rank
        that stopped alone would leave the others waiting in a collective forever)."""
        if world == 1:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.int64, device=accelerator.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [int(x) for x in t.tolist()]

    if cfg.freeze_embeddings:
        n = freeze_input_embeddings(model)
        log.info(f"froze the word embeddings ({n / 1e6:.1f} M parameters: no gradient, no optimizer state)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    log.info(f"parameters: {trainable / 1e6:.1f} M trainable of {total_params / 1e6:.1f} M")

    # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop, which took
    # ~7% of a me5-small step on CPU; transformers' Trainer also defaults to it.
    groups = _param_groups(model, cfg.weight_decay)
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fusable or None)
    n_batches = math.ceil(len(lengths) / cfg.batch_size)
    per_rank = math.ceil(n_batches / world)
    updates_per_epoch = math.ceil(per_rank / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * updates_per_epoch))
    warmup_steps = int(cfg.warmup * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    eval_every = cfg.eval_every or updates_per_epoch

    step, epoch, batch_pos, seen, train_time = 0, 0, 0, 0, 0.0
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    train_log: list[dict[str, Any]] = []
    owner = _owner(manifest)
    if resume:
        saved = LoopState.load(work)
        saved.check_fits(owner=owner, where=work,
                         trainable={k: list(v.shape) for k, v in _trainable_tensors(model).items()})
        if saved.inputs != manifest.get("inputs"):
            raise UsageError(f"--resume: the input data differ from the interrupted run's ({work}); resume with the same files")
        if saved.world != world:
            raise UsageError(f"--resume: the state was saved by {saved.world} process(es), this run has {world}")
        model.load_state_dict(saved.model, strict=False)
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        step, epoch, batch_pos, seen, train_time = saved.step, saved.epoch, saved.batch_pos, saved.seen, saved.train_time
        best, best_state, history, train_log = saved.best, saved.best_state, saved.history, saved.log
        _set_rng_state(saved.rng[rank])
        log.info(f"resumed from {work} at step {step}/{total_steps} (epoch {epoch + 1}, batch {batch_pos})")
        del saved
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    if is_main:
        make_state_dir(work)

    def save_state(rng_now: dict[str, Any] | None = None) -> None:
        """Save the resumable state (every rank must call this: the RNG states are gathered)."""
        own = rng_now if rng_now is not None else _rng_state()
        rng = accelerator.gather_for_metrics([own], use_gather_object=True) if world > 1 else [own]
        if not is_main:
            return
        LoopState(
            owner=owner, world=world, step=step, epoch=epoch, batch_pos=batch_pos, seen=seen, train_time=train_time,
            model=_trainable_state(unwrapped), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            rng=rng, best=best, best_state=best_state, history=history, log=train_log, config=asdict(cfg),
            inputs=manifest.get("inputs"),
        ).save(work)

    def run_dev() -> None:
        nonlocal best, best_state
        if dev is None:
            return
        if is_main:
            unwrapped.eval()
            with torch.no_grad():
                metrics = dev(unwrapped)
            unwrapped.train()
            metrics = {"step": step, "epoch": round(step / updates_per_epoch, 3), **metrics}
            history.append(metrics)
            score = metrics.get(dev_metric)
            improved = best is None or (score is not None and score > best.get(dev_metric, -1))
            if improved:
                best = metrics
                best_state = _trainable_state(unwrapped)
            log.info(f"step {step}: dev {dev_metric} {score:.4f}" + (" (best)" if improved else f" (best {best[dev_metric]:.4f} at step {best['step']})"))
        accelerator.wait_for_everyone()

    model.train()
    n_epochs = math.ceil(total_steps / updates_per_epoch)
    loss_sum, loss_n, terms_sum = 0.0, 0, {}
    interval_start, interval_seen = time.monotonic(), 0
    seen_at_step = seen
    with _Stopper() as stopper:
        while step < total_steps and epoch < n_epochs:
            batches = length_grouped_batches(lengths, batch_size=cfg.batch_size, seed=cfg.seed + epoch)
            if world > 1:
                batches = batches + batches[: (-len(batches)) % world]  # equal count on every rank
            mine = batches[rank::world]
            micro = batch_pos
            t0 = time.monotonic()
            window_rng: dict[str, Any] | None = None
            bad_loss: float | None = None
            for bi in range(batch_pos, len(mine)):
                if window_rng is None:
                    # The RNG as the last optimizer step left it: if this accumulation window's
                    # loss is not finite, the saved state must not include its draws either.
                    window_rng = _rng_state()
                rows = mine[bi]
                batch = {k: (v.to(accelerator.device) if hasattr(v, "to") else v) for k, v in make_batch(rows).items()}
                is_update = (bi + 1) % cfg.grad_accum == 0 or bi + 1 == len(mine)
                sync = contextlib.nullcontext() if is_update or world == 1 else accelerator.no_sync(model)
                with sync:
                    with accelerator.autocast():
                        loss, terms = objective(model, batch)
                    accelerator.backward(loss / cfg.grad_accum)
                loss_value = float(loss.detach())
                if math.isfinite(loss_value):
                    loss_sum += loss_value
                    loss_n += 1
                    for k, v in terms.items():
                        terms_sum[k] = terms_sum.get(k, 0.0) + float(v)
                elif bad_loss is None:
                    bad_loss = loss_value
                seen += len(rows) * world
                interval_seen += len(rows) * world
                micro += 1
                # A lone process stops at its first bad micro-batch; under DDP the ranks must
                # first meet at the step (no_sync micro-batches have no collective to agree in).
                if not is_update and not (world == 1 and bad_loss is not None):
                    continue
                nonfinite, stop_signal = agree(int(bad_loss is not None), stopper.signum)
                if nonfinite:
                    optimizer.zero_grad(set_to_none=True)  # nothing of this window is applied
                    seen = seen_at_step
                    train_time += time.monotonic() - t0
                    what = (f"the loss is {bad_loss}" if bad_loss is not None else "the loss is not finite (on another process)")
                    what += f" at step {step + 1} (epoch {epoch + 1}, batch {bi + 1})"
                    if _nonfinite_parameters(unwrapped):  # identical on every rank under DDP
                        raise NonFiniteError(f"{what}, and the weights were already not finite (training diverged: "
                                             "lower --lr); no state saved")
                    save_state(window_rng)
                    raise NonFiniteError(f"{what}: stopped before applying that batch; the state after step {step} is "
                                         f"saved in {work} (rerun with --resume to continue from it once the cause is "
                                         "fixed: a non-finite or huge input value, or a too high --lr)")
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                batch_pos = bi + 1
                seen_at_step = seen
                window_rng = None
                if step % cfg.log_every == 0 or step == total_steps:
                    elapsed = time.monotonic() - interval_start
                    entry = {"step": step, "loss": round(loss_sum / max(loss_n, 1), 5),
                             "lr": scheduler.get_last_lr()[0], "examples_per_s": round(interval_seen / max(elapsed, 1e-9), 2)}
                    entry.update({k: round(v / max(loss_n, 1), 5) for k, v in terms_sum.items()})
                    train_log.append(entry)
                    log.info(f"step {step}/{total_steps} loss {entry['loss']:.4f} lr {entry['lr']:.2e} {entry['examples_per_s']:.1f} ex/s")
                    loss_sum, loss_n, terms_sum = 0.0, 0, {}
                    interval_start, interval_seen = time.monotonic(), 0
                done = step >= total_steps
                if step % eval_every == 0 or done:
                    train_time += time.monotonic() - t0
                    run_dev()
                    t0 = time.monotonic()
                    interval_start = time.monotonic()
                if stop_signal or (cfg.save_every and step % cfg.save_every == 0 and not done):
                    train_time += time.monotonic() - t0
                    save_state()
                    t0 = time.monotonic()
                    if stop_signal:
                        raise Interrupted(f"interrupted by {signal.Signals(stop_signal).name} at step {step}; state saved "
                                          f"in {work}: rerun the same command with --resume", signum=stop_signal)
                if done:
                    break
            else:
                train_time += time.monotonic() - t0
                epoch += 1
                batch_pos = 0
                continue
            train_time += time.monotonic() - t0
            break

    result = TrainResult(
        steps=step, epochs_done=round(step / updates_per_epoch, 3), examples_seen=seen,
        train_seconds=round(train_time, 2), examples_per_second=round(seen / max(train_time, 1e-9), 2),
        best=best, dev_history=history, log=train_log, world_size=world,
    )
    accelerator.wait_for_everyone()
    if is_main and best_state is not None:
        unwrapped.load_state_dict(best_state, strict=False)
    # A checkpoint of NaN weights predicts nothing and would poison what is built on it.
    bad = _nonfinite_parameters(unwrapped) if is_main else []
    if agree(int(bool(bad)))[0]:
        detail = f"{len(bad)} weight tensor(s) are not finite (first: {bad[0]})" if bad else "the weights are not finite"
        raise NonFiniteError(f"refusing to write {out}: {detail}; training diverged (lower --lr, or check the inputs)")
    if is_main:
        manifest = dict(manifest)
        manifest["training"] = {
            "config": asdict(cfg), "resolved": {"device": str(accelerator.device), "mixed_precision": accelerator.mixed_precision,
                                               "world_size": world, "total_steps": total_steps, "warmup_steps": warmup_steps,
                                               "updates_per_epoch": updates_per_epoch, "trainable_parameters": trainable},
            "steps": step, "epochs": result.epochs_done, "examples_seen": seen, "train_seconds": result.train_seconds,
            "examples_per_second": result.examples_per_second, "log": train_log,
        }
        manifest["dev"] = {"metric": dev_metric, "history": history, "best": best} if dev is not None else None
        with atomic_path(out, force=force or resume, what="checkpoint", is_dir=True) as tmp:
            save_checkpoint(unwrapped, tokenizer, tmp, manifest)
        if not remove_state_dir(work):
            log.warn(f"kept {work}: it holds files xlt did not write")
        log.info(f"wrote {out} ({step} steps, {result.examples_per_second:.1f} examples/s)")
    accelerator.wait_for_everyone()
    return result
