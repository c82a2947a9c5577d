"""The training loop shared by `teach` and `distill`, on accelerate.

One loop for every objective: the caller supplies the model, a function that builds a batch
from example indices, and an objective `(model, batch) -> (loss, terms)`. The loop owns
length-grouped batching, gradient accumulation, AdamW with linear warm-up/decay, frozen
embeddings, mixed precision, DDP (`torchrun`/`accelerate launch`; only rank 0 writes), dev
selection (keeps the best), periodic resumable state and atomic checkpoint output.

It is built as spaCy's `train_while_improving` is: `train_steps` is a generator that runs the
optimizer steps and yields after each one; `train` consumes it and decides what happens between
steps (logging, dev selection, saving state, stopping at the step budget or on a signal), then
writes the checkpoint. The run's position, dev history and log are a `LoopState`
(xlt.train.state), which saves and restores itself.

Resumable state lives in `<out>.partial/` until the run completes: trainable weights, optimizer,
scheduler, step/epoch/batch position, per-rank RNG states, best dev state and the log, stored
without pickle. `--resume` continues from it and ends with the same weights as an uninterrupted
run with the same seed. A non-finite loss stops the run with the state of the last finite step
saved; SIGINT/SIGTERM save state and exit 130/143.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from xlt import log
from xlt.errors import Interrupted, NonFiniteError, UsageError
from xlt.io import atomic_path, check_output
from xlt.train.checkpoint import save_checkpoint
from xlt.train.data import length_grouped_batches
from xlt.train.state import (LoopState, check_state, check_state_dir, has_legacy_state, has_state, make_state_dir,
                             remove_state_dir, rng_state, trainable_state)

Objective = Callable[[Any, dict[str, Any]], tuple[Any, dict[str, float]]]
BatchFn = Callable[[Sequence[int]], dict[str, Any]]
DevFn = Callable[[Any], dict[str, Any]]

PRECISIONS = ("auto", "no", "fp16", "bf16")


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
          ("student_arch", "--student-arch"), ("labels", "labels"), ("peft", "--peft"))


def _owner(manifest: dict[str, Any]) -> dict[str, Any]:
    return {spelled: manifest[key] for key, spelled in _OWNER if key in manifest}


def _nonfinite_parameters(model: Any) -> list[str]:
    import torch

    return [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


# --- the run's fixed parts: plan, processes, live objects -------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How many optimizer steps the run makes, and when it evaluates."""

    updates_per_epoch: int
    total_steps: int
    warmup_steps: int
    n_epochs: int
    eval_every: int

    @classmethod
    def of(cls, n_examples: int, cfg: TrainConfig, world: int) -> "_Plan":
        n_batches = math.ceil(n_examples / cfg.batch_size)
        per_rank = math.ceil(n_batches / world)
        updates_per_epoch = math.ceil(per_rank / cfg.grad_accum)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * updates_per_epoch))
        return cls(updates_per_epoch, total_steps, int(cfg.warmup * total_steps),
                   math.ceil(total_steps / updates_per_epoch), cfg.eval_every or updates_per_epoch)


class _Processes:
    """This process among the DDP ranks (a lone process is rank 0 of 1), and the collectives."""

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process

    def agree(self, *flags: int) -> list[int]:
        """The largest of each flag over all ranks, so every rank takes the same branch (a rank
        that stopped alone would leave the others waiting in a collective forever)."""
        if self.world == 1:
            return list(flags)
        import torch

        t = torch.tensor(flags, dtype=torch.int64, device=self.accelerator.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [int(x) for x in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order."""
        if self.world == 1:
            return [obj]
        return self.accelerator.gather_for_metrics([obj], use_gather_object=True)


@dataclass
class Loop:
    """The live objects of one training run, shared by the step generator and its consumer."""

    cfg: TrainConfig
    plan: _Plan
    procs: _Processes
    model: Any  # as accelerate prepared it (wrapped for DDP)
    unwrapped: Any
    optimizer: Any
    scheduler: Any
    work: str  # the state dir, `<out>.partial`
    trainable: int  # trainable parameters
    clipped: list[Any]  # the parameters whose gradient norm is clipped
    tracking: Any = None  # an xlt.train.tracking.Tracking while its trackers are open, else None

    def save(self, state: LoopState, rng_now: dict[str, Any] | None = None) -> None:
        """Save the resumable state (every rank must call this: the RNG states are gathered)."""
        rng = self.procs.gather(rng_now if rng_now is not None else rng_state())
        if self.procs.is_main:
            state.save_run(self.work, model=self.unwrapped, optimizer=self.optimizer, scheduler=self.scheduler, rng=rng)


def _tracking_dir(tracking: Any, work: str) -> str:
    """Where the trackers write: `--tracking-dir`, else `runs/` in the state dir, which moves into
    the checkpoint (`OUT/runs/`) when it is published."""
    from xlt.train.tracking import RUNS_DIR

    return tracking.directory or os.path.join(work, RUNS_DIR)


def _accelerator(cfg: TrainConfig, work: str, *, resume: bool, tracking: Any = None) -> _Processes:
    """Accelerate for this device, precision, set of processes and trackers; a stale state dir of
    an earlier run (not resumed) is cleared."""
    from accelerate import Accelerator

    from xlt.hf import resolve_device

    device = resolve_device(cfg.device)
    trackers = {"log_with": tracking.report_to, "project_dir": _tracking_dir(tracking, work)} if tracking else {}
    procs = _Processes(Accelerator(cpu=device == "cpu", mixed_precision=_mixed_precision(cfg, device), **trackers))
    if not procs.is_main:
        log.state.quiet = True
    if procs.world > 1:
        log.info(f"distributed: {procs.world} processes ({procs.accelerator.distributed_type}), rank {procs.rank}")
    if not resume and os.path.lexists(work) and procs.is_main:
        # A stale partial run of an earlier invocation: start over. Only xlt's own files go, and
        # only from a dir xlt recognisably made (checked again: it may have changed since).
        check_state_dir(work)
        remove_state_dir(work)
    procs.accelerator.wait_for_everyone()
    return procs


def _optimizer(model: Any, cfg: TrainConfig) -> Any:
    import torch

    # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop, which took
    # ~7% of a me5-small step on CPU; transformers' Trainer also defaults to it.
    groups = _param_groups(model, cfg.weight_decay)
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fusable or None)


def _start(model: Any, *, cfg: TrainConfig, n_examples: int, out: str, manifest: dict[str, Any],
           resume: bool, tracking: Any = None) -> tuple[Loop, LoopState]:
    """Set the run up: processes, frozen embeddings, optimizer, schedule, and the loop state,
    fresh or resumed from `<out>.partial`."""
    from transformers import get_linear_schedule_with_warmup

    work = work_dir_for(out)
    procs = _accelerator(cfg, work, resume=resume, tracking=tracking)
    if cfg.freeze_embeddings:
        n = freeze_input_embeddings(model)
        log.info(f"froze the word embeddings ({n / 1e6:.1f} M parameters: no gradient, no optimizer state)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    log.info(f"parameters: {trainable / 1e6:.1f} M trainable of {total_params / 1e6:.1f} M")
    optimizer = _optimizer(model, cfg)
    plan = _Plan.of(n_examples, cfg, procs.world)
    scheduler = get_linear_schedule_with_warmup(optimizer, plan.warmup_steps, plan.total_steps)
    owner, inputs = _owner(manifest), manifest.get("inputs")
    if resume:
        state = LoopState.load(work)
        state.check_resumes(owner=owner, model=model, inputs=inputs, world=procs.world, where=work)
        state.restore(model=model, optimizer=optimizer, scheduler=scheduler, rank=procs.rank)
        state.config = asdict(cfg)
        log.info(f"resumed from {work} at step {state.step}/{plan.total_steps} "
                 f"(epoch {state.epoch + 1}, batch {state.batch_pos})")
    else:
        state = LoopState.start(owner=owner, world=procs.world, config=asdict(cfg), inputs=inputs)
    prepared, optimizer = procs.accelerator.prepare(model, optimizer)
    if procs.is_main:
        make_state_dir(work)
    if tracking is not None and procs.is_main:  # after the state dir exists: the default log dir is inside it
        from xlt.train.tracking import open_trackers

        run_config = {k: manifest.get(k) for k in ("kind", "base_model", "student", "student_arch", "objective",
                                                   "peft", "robust", "max_length", "seed")}
        directory = _tracking_dir(tracking, work)
        open_trackers(procs.accelerator, tracking, str(manifest.get("kind") or "xlt"), {**run_config, **asdict(cfg)},
                      directory)
        log.info(f"tracking with {tracking.report_to} in {tracking.where(directory)}")
    clipped = [p for p in prepared.parameters() if p.requires_grad]
    return Loop(cfg, plan, procs, prepared, procs.accelerator.unwrap_model(prepared), optimizer, scheduler, work,
                trainable, clipped, tracking), state


# --- the step generator ------------------------------------------------------------------------------


@dataclass
class StepInfo:
    """What `train_steps` yields at the end of each accumulation window (one optimizer step).

    `applied` is False when the loss of a micro-batch of the window was not finite on some rank:
    nothing of the window reached the weights, the state is still the one after the last step,
    and the generator ends. `rng` is the RNG state at the window's start (what a state saved
    then must hold), `stop_signal` the signal any rank received (the same on every rank).
    """

    batch: int  # the window's last micro-batch, counted from 1 in the epoch
    examples: int  # examples in the window, over all ranks
    loss_sum: float  # finite micro-batch losses of the window, summed, and their count
    loss_n: int
    terms: dict[str, float]  # the objective's named terms, summed like the loss
    rng: dict[str, Any]
    stop_signal: int = 0
    applied: bool = True
    bad_loss: float | None = None  # this rank's first non-finite loss of the window


def _device_batch(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _backward(loop: Loop, objective: Objective, batch: dict[str, Any], *, is_update: bool) -> tuple[float, dict[str, Any]]:
    """Forward and backward one micro-batch; its loss as a number, and its terms. Gradients are
    synchronised across ranks only on the window's last micro-batch."""
    acc = loop.procs.accelerator
    sync = contextlib.nullcontext() if is_update or loop.procs.world == 1 else acc.no_sync(loop.model)
    with sync:
        with acc.autocast():
            loss, terms = objective(loop.model, batch)
        acc.backward(loss / loop.cfg.grad_accum)
    return float(loss.detach()), terms


def _apply(loop: Loop) -> None:
    if loop.cfg.max_grad_norm > 0:
        loop.procs.accelerator.clip_grad_norm_(loop.clipped, loop.cfg.max_grad_norm)
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)


def _epoch_steps(loop: Loop, state: LoopState, mine: list[list[int]], *, make_batch: BatchFn, objective: Objective,
                 stopper: _Stopper) -> Iterator[StepInfo]:
    """The optimizer steps of one epoch from `state.batch_pos` on (`mine`: this rank's batches)."""
    world, accum, device = loop.procs.world, loop.cfg.grad_accum, loop.procs.accelerator.device
    window: StepInfo | None = None
    for bi in range(state.batch_pos, len(mine)):
        if window is None:
            # The RNG as the last optimizer step left it: if this accumulation window's loss is
            # not finite, the saved state must not include its draws either.
            window = StepInfo(batch=0, examples=0, loss_sum=0.0, loss_n=0, terms={}, rng=rng_state())
        rows = mine[bi]
        is_update = (bi + 1) % accum == 0 or bi + 1 == len(mine)
        loss_value, terms = _backward(loop, objective, _device_batch(make_batch(rows), device), is_update=is_update)
        if math.isfinite(loss_value):
            window.loss_sum += loss_value
            window.loss_n += 1
            for k, v in terms.items():
                window.terms[k] = window.terms.get(k, 0.0) + float(v)
        elif window.bad_loss is None:
            window.bad_loss = loss_value
        window.examples += len(rows) * world
        window.batch = bi + 1
        # A lone process stops at its first bad micro-batch; under DDP the ranks must first meet
        # at the step (no_sync micro-batches have no collective to agree in).
        if not is_update and not (world == 1 and window.bad_loss is not None):
            continue
        nonfinite, window.stop_signal = loop.procs.agree(int(window.bad_loss is not None), stopper.signum)
        if nonfinite:
            loop.optimizer.zero_grad(set_to_none=True)  # nothing of this window is applied
            window.applied = False
            yield window
            return
        _apply(loop)
        state.step += 1
        state.batch_pos = bi + 1
        state.seen += window.examples
        yield window
        window = None


def train_steps(loop: Loop, state: LoopState, *, lengths: Sequence[int], make_batch: BatchFn, objective: Objective,
                stopper: _Stopper) -> Iterator[StepInfo]:
    """Run optimizer steps from where `state` stands and yield after each one, until the step
    budget or the epochs are used up or the consumer stops asking. Advances the position in
    `state` (step, epoch, batch, examples seen); everything else is the consumer's."""
    cfg, procs = loop.cfg, loop.procs
    while state.step < loop.plan.total_steps and state.epoch < loop.plan.n_epochs:
        batches = length_grouped_batches(lengths, batch_size=cfg.batch_size, seed=cfg.seed + state.epoch)
        if procs.world > 1:
            batches = batches + batches[: (-len(batches)) % procs.world]  # equal count on every rank
        for info in _epoch_steps(loop, state, batches[procs.rank::procs.world], make_batch=make_batch,
                                 objective=objective, stopper=stopper):
            yield info
            if not info.applied:
                return
        state.epoch += 1
        state.batch_pos = 0


def _timed(steps: Iterator[StepInfo], state: LoopState) -> Iterator[StepInfo]:
    """`steps`, adding the time spent inside them to `state.train_time`: the training itself, not
    what the consumer does between steps (dev evaluation, saving state)."""
    clock = time.monotonic()
    for info in steps:
        state.train_time += time.monotonic() - clock
        yield info
        clock = time.monotonic()
    state.train_time += time.monotonic() - clock


# --- the consumer: logging, dev selection, saving, stopping ------------------------------------------


class _Meter:
    """Mean loss and terms and examples/s over the steps since the last log entry."""

    def __init__(self) -> None:
        self._restart()

    def _restart(self) -> None:
        self.loss_sum, self.loss_n, self.terms, self.examples = 0.0, 0, {}, 0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Leave out of the speed the time since the last entry so far (dev evaluation)."""
        self.clock = time.monotonic()

    def add(self, info: StepInfo) -> None:
        self.loss_sum += info.loss_sum
        self.loss_n += info.loss_n
        for k, v in info.terms.items():
            self.terms[k] = self.terms.get(k, 0.0) + v
        self.examples += info.examples

    def entry(self, step: int, lr: float) -> dict[str, Any]:
        n = max(self.loss_n, 1)
        elapsed = time.monotonic() - self.clock
        entry = {"step": step, "loss": round(self.loss_sum / n, 5), "lr": lr,
                 "examples_per_s": round(self.examples / max(elapsed, 1e-9), 2)}
        entry.update({k: round(v / n, 5) for k, v in self.terms.items()})
        self._restart()
        return entry


def _evaluate(loop: Loop, state: LoopState, dev: DevFn | None, dev_metric: str) -> None:
    """Score the model on dev (rank 0) and keep its trainable tensors when it is the best so far."""
    if dev is None:
        return
    if loop.procs.is_main:
        import torch

        model = loop.unwrapped
        model.eval()
        with torch.no_grad():
            metrics = dev(model)
        model.train()
        metrics = {"step": state.step, "epoch": round(state.step / loop.plan.updates_per_epoch, 3), **metrics}
        state.history.append(metrics)
        if loop.tracking is not None:
            from xlt.train.tracking import dev_scalars

            loop.procs.accelerator.log(dev_scalars(metrics), step=state.step)
        score = metrics.get(dev_metric)
        best = state.best
        improved = best is None or (score is not None and score > best.get(dev_metric, -1))
        if improved:
            state.best, state.best_state = metrics, trainable_state(model)
        log.info(f"step {state.step}: dev {dev_metric} {score:.4f}"
                 + (" (best)" if improved else f" (best {best[dev_metric]:.4f} at step {best['step']})"))
    loop.procs.accelerator.wait_for_everyone()


def _refuse_window(loop: Loop, state: LoopState, info: StepInfo) -> NoReturn:
    """A non-finite loss: save the state of the last finite step (unless the weights are already
    broken) and stop."""
    what = (f"the loss is {info.bad_loss}" if info.bad_loss is not None else "the loss is not finite (on another process)")
    what += f" at step {state.step + 1} (epoch {state.epoch + 1}, batch {info.batch})"
    if _nonfinite_parameters(loop.unwrapped):  # identical on every rank under DDP
        raise NonFiniteError(f"{what}, and the weights were already not finite (training diverged: "
                             "lower --lr); no state saved")
    loop.save(state, info.rng)
    raise NonFiniteError(f"{what}: stopped before applying that batch; the state after step {state.step} is "
                         f"saved in {loop.work} (rerun with --resume to continue from it once the cause is "
                         "fixed: a non-finite or huge input value, or a too high --lr)")


def _consume(steps: Iterator[StepInfo], loop: Loop, state: LoopState, *, dev: DevFn | None, dev_metric: str) -> None:
    """Drive `steps` to the step budget: log, select on dev, save state, stop on a signal."""
    cfg, plan = loop.cfg, loop.plan
    meter = _Meter()
    for info in steps:
        if not info.applied:
            _refuse_window(loop, state, info)
        meter.add(info)
        step = state.step
        if step % cfg.log_every == 0 or step == plan.total_steps:
            entry = meter.entry(step, loop.scheduler.get_last_lr()[0])
            state.log.append(entry)
            if loop.tracking is not None:
                loop.procs.accelerator.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=step)
            log.info(f"step {step}/{plan.total_steps} loss {entry['loss']:.4f} lr {entry['lr']:.2e} "
                     f"{entry['examples_per_s']:.1f} ex/s")
        done = step >= plan.total_steps
        if step % plan.eval_every == 0 or done:
            _evaluate(loop, state, dev, dev_metric)
            meter.restart_clock()
        if info.stop_signal or (cfg.save_every and step % cfg.save_every == 0 and not done):
            loop.save(state)
            if info.stop_signal:
                raise Interrupted(f"interrupted by {signal.Signals(info.stop_signal).name} at step {step}; state saved "
                                  f"in {loop.work}: rerun the same command with --resume", signum=info.stop_signal)
        if done:
            return


# --- the end: best weights back, checkpoint out ------------------------------------------------------


def _training_manifest(loop: Loop, state: LoopState, result: TrainResult) -> dict[str, Any]:
    acc, plan = loop.procs.accelerator, loop.plan
    return {
        "config": asdict(loop.cfg), "resolved": {"device": str(acc.device), "mixed_precision": acc.mixed_precision,
                                                 "world_size": loop.procs.world, "total_steps": plan.total_steps,
                                                 "warmup_steps": plan.warmup_steps,
                                                 "updates_per_epoch": plan.updates_per_epoch,
                                                 "trainable_parameters": loop.trainable},
        "steps": state.step, "epochs": result.epochs_done, "examples_seen": state.seen,
        "train_seconds": result.train_seconds, "examples_per_second": result.examples_per_second, "log": state.log,
    }


def _publish(loop: Loop, state: LoopState, result: TrainResult, *, tokenizer: Any, out: str, manifest: dict[str, Any],
             dev_metric: str | None, force: bool) -> None:
    """Load the best dev state, refuse non-finite weights, write the checkpoint `out` (rank 0)
    and remove the state dir."""
    procs, model = loop.procs, loop.unwrapped
    procs.accelerator.wait_for_everyone()
    if procs.is_main and state.best_state is not None:
        model.load_state_dict(state.best_state, strict=False)
    # A checkpoint of NaN weights predicts nothing and would poison what is built on it.
    bad = _nonfinite_parameters(model) if procs.is_main else []
    if procs.agree(int(bool(bad)))[0]:
        detail = f"{len(bad)} weight tensor(s) are not finite (first: {bad[0]})" if bad else "the weights are not finite"
        raise NonFiniteError(f"refusing to write {out}: {detail}; training diverged (lower --lr, or check the inputs)")
    runs = _end_tracking(loop)
    if procs.is_main:
        manifest = {**manifest, "training": _training_manifest(loop, state, result),
                    "dev": {"metric": dev_metric, "history": state.history, "best": state.best} if dev_metric else None}
        with atomic_path(out, force=force, what="checkpoint", is_dir=True) as tmp:
            if runs is not None and os.path.isdir(runs):
                os.replace(runs, os.path.join(tmp, os.path.basename(runs)))  # OUT/runs/
            save_checkpoint(model, tokenizer, tmp, manifest)
        if not remove_state_dir(loop.work):
            log.warn(f"kept {loop.work}: it holds files xlt did not write")
        log.info(f"wrote {out} ({state.step} steps, {result.examples_per_second:.1f} examples/s)")
    procs.accelerator.wait_for_everyone()


def _end_tracking(loop: Loop) -> str | None:
    """Close the trackers (flushing their files); the default log dir (in the state dir) that
    then moves into the checkpoint, or None."""
    if loop.tracking is None:
        return None
    loop.procs.accelerator.end_training()
    runs = None if loop.tracking.directory else _tracking_dir(loop.tracking, loop.work)
    loop.tracking = None
    return runs


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
    tracking: Any = None,
) -> TrainResult:
    """Train `model` on the examples behind `lengths`/`make_batch` and write the checkpoint `out`.

    `manifest` is completed with the run's results and written as `xlt.json`. With `dev`, the
    model is evaluated every `eval_every` optimizer steps (default: each epoch) and the best by
    `dev_metric` is what `out` holds. With `tracking` (an `xlt.train.tracking.Tracking`) loss,
    learning rate, speed and dev metrics also go to its tracker.
    """
    check_run(out, cfg, force=force, resume=resume)  # again: train() is also called from Python
    loop, state = _start(model, cfg=cfg, n_examples=len(lengths), out=out, manifest=manifest, resume=resume,
                         tracking=tracking)
    loop.model.train()
    try:
        with _Stopper() as stopper:
            steps = train_steps(loop, state, lengths=lengths, make_batch=make_batch, objective=objective, stopper=stopper)
            _consume(_timed(steps, state), loop, state, dev=dev, dev_metric=dev_metric)
        result = TrainResult(
            steps=state.step, epochs_done=round(state.step / loop.plan.updates_per_epoch, 3), examples_seen=state.seen,
            train_seconds=round(state.train_time, 2),
            examples_per_second=round(state.seen / max(state.train_time, 1e-9), 2),
            best=state.best, dev_history=state.history, log=state.log, world_size=loop.procs.world,
        )
        _publish(loop, state, result, tokenizer=tokenizer, out=out, manifest=manifest,
                 dev_metric=dev_metric if dev is not None else None, force=force or resume)
    finally:
        _end_tracking(loop)  # flushed either way; an interrupted run's logs stay in the state dir for --resume
    return result
