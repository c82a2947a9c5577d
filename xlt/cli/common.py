"""Options spelled once for every command, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Annotated, Any, Optional

import typer

from xlt import log
from xlt.errors import XltError
from xlt.io import OutputSet, SkipReport

def _finite(value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """A float option value that is a finite number (click's FLOAT takes `nan` and `inf`, and
    `nan > 0` is False, so range checks alone let them through), optionally within [lo, hi]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    else:
        try:
            x = float(str(value).strip())
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise typer.BadParameter(f"{value!r} is not in the range [{'-inf' if lo is None else f'{lo:g}'}, "
                                 f"{'inf' if hi is None else f'{hi:g}'}]")
    return x


def finite(value: Any) -> float:
    """Parser of every float option of every command (tests/test_contract.py checks that)."""
    return _finite(value)


def probability(value: Any) -> float:
    """Parser of float options that are probabilities: finite and in [0, 1]."""
    return _finite(value, 0.0, 1.0)


Files = Annotated[
    Optional[list[str]],
    typer.Argument(help="JSONL input files (`.gz` ok); `-` or none reads stdin.", show_default=False),
]
Output = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Write here (atomically) instead of stdout; `.gz` compresses."),
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr (warnings and errors stay).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug lines.")]
OnError = Annotated[
    str,
    typer.Option("--on-error", help="Bad input record: `fail` (exit 2) or `skip` it and report at the end."),
]
Fields = Annotated[
    Optional[str],
    typer.Option(
        "--fields",
        help="Text fields, e.g. `premise,hypothesis`, `text`, or a shape: nli, paraphrase, tagging, single. "
        "Default: inferred from the first record.",
    ),
]
Shard = Annotated[
    Optional[str],
    typer.Option("--shard", help="Process only shard K of N (1-based, round robin over input records), e.g. `3/8`."),
]
def _allow_pickle(value: bool) -> bool:
    from xlt.hf import allow_pickle

    allow_pickle(value)
    return value


AllowPickle = Annotated[bool, typer.Option("--allow-pickle", callback=_allow_pickle, help="Also load models whose weights are Python pickles (pytorch_model.bin), which can run code when loaded. Off: safetensors only.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Records per batch.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
# Classifier inference engines (soft-label, eval): xlt.inference
Engine = Annotated[str, typer.Option("--engine", help="torch, ct2 (CTranslate2 encoder + the checkpoint's own head: BERT, XLM-R, RoBERTa, DistilBERT) or auto (ct2 when the model can run there, else torch).")]
EngineComputeType = Annotated[Optional[str], typer.Option("--compute-type", help="CTranslate2 compute type (int8, int8_float32, int8_float16, float16, bfloat16, float32). Default: eval float32 (the model's own outputs; on GPU too until float16's agreement is measured >= 99.9 %); soft-label int8 on CPU (near-ties re-scored, ~98.8 % argmax agreement with float32), float16 on GPU.")]
EngineThreads = Annotated[int, typer.Option("--threads", min=0, help="CPU threads (CTranslate2 intra-op threads, or torch's); 0: every core this process may use for ct2, torch's default for torch.")]
# Experiment tracking (teach, distill, eval): xlt.train.tracking, through accelerate's trackers
ReportTo = Annotated[str, typer.Option("--report-to", help="Experiment tracker: none, tensorboard, wandb or mlflow (through accelerate; `pip install 'xlt[tracking]'`). wandb is online or offline as its settings say (WANDB_MODE=offline); mlflow logs to MLFLOW_TRACKING_URI when set, else to the SQLite store DIR/mlflow.db.")]
TrackingDir = Annotated[Optional[str], typer.Option("--tracking-dir", help="Where the tracker writes (DIR): TensorBoard's event files, wandb's run dir, MLflow's local store (default: OUT/runs/ for teach and distill, ./runs/ for eval).")]
RescoreMargin = Annotated[Optional[float], typer.Option("--rescore-margin", parser=probability, help="ct2 int8/int16 only: re-run records whose top-2 probability margin is below this on the float32 encoder, so near-ties match torch. 0: off. Default 0.03.")]


@contextlib.contextmanager
def command(name: str, *, quiet: bool = False, verbose: bool = False) -> Iterator[None]:
    """Run a command body: configure stderr reporting, turn errors into one line and an exit code.

    XltError -> its exit code (2 for bad input/usage, 1 otherwise); anything else -> 1 with a
    hint to rerun with --verbose; tracebacks only with --verbose.
    """
    # Under torchrun/accelerate launch only rank 0 reports progress (errors still show).
    quiet = quiet or os.environ.get("RANK", "0") != "0"
    log.configure(command=f"xlt {name}", quiet=quiet, verbose=verbose)
    try:
        yield
    except typer.Exit:
        raise
    except XltError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"xlt {name}: error: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
    except Terminated:
        print(f"xlt {name}: terminated (SIGTERM); no output was written", file=sys.stderr)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        print(f"xlt {name}: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug or an environment failure: say so in one line
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (rerun with --verbose for the traceback)"
        print(f"xlt {name}: error: {type(exc).__name__}: {one_line(str(exc))}{hint}", file=sys.stderr)
        raise typer.Exit(1) from None


class Run:
    """What a stage's body gets from `stage`: its outputs (claimed before any work, committed
    together when the body succeeds) and the report of skipped bad records."""

    def __init__(self, outputs: OutputSet, skipped: SkipReport) -> None:
        self.outputs = outputs
        self.skipped = skipped
        self._after: list[Callable[[], None]] = []

    def after(self, report: Callable[[], None]) -> None:
        """Run `report` (a summary for stderr) once the outputs are committed and skips reported."""
        self._after.append(report)

    def claim(self, outputs: Iterable[tuple[str | None, str]]) -> None:
        """Check more outputs (path, what) before the work: those known only once options are parsed."""
        self.outputs.claim_all(outputs)

    def text(self, path: str | None, *, what: str = "output") -> IO[str]:
        """A text stream for `path` (None or `-`: stdout), committed with the others."""
        return self.outputs.text(path, what=what)

    def path(self, path: str, *, what: str = "output", is_dir: bool = False) -> str:
        """A temporary path that becomes `path` when the stage succeeds."""
        return self.outputs.path(path, what=what, is_dir=is_dir)

    def write(self, records: Iterable[dict[str, Any]], path: str | None = None, *,
              progress: str | None = None, total: int | None = None) -> int:
        """Write records as JSONL to `path` (stdout by default), with a progress line when named."""
        from xlt.io import write_records

        if progress:
            records = log.track(records, description=progress, total=total)
        return write_records(records, self.text(path))


@contextlib.contextmanager
def stage(name: str, *, output: str | None = None, main_output: bool = True, force: bool = False,
          quiet: bool = False, verbose: bool = False, outputs: Sequence[tuple[str | None, str]] = ()) -> Iterator[Run]:
    """The one shape of every stage: check the outputs, run, commit the outputs, report skips.

    `output` is the main output (None: stdout; none at all with `main_output=False`, as for a
    stage that writes only named files); `outputs` more of them as (path, what), None left out.
    Every output is checked (exists without --force, two names for one file) before the body
    runs; the body's outputs are committed together when it succeeds and none is left when it
    fails; the skipped records are reported after the commit. Errors become exit codes as in
    `command`.
    """
    with command(name, quiet=quiet, verbose=verbose):
        run = Run(OutputSet(force=force), SkipReport())
        if main_output:
            run.outputs.claim(output)
        run.outputs.claim_all(outputs)
        with run.outputs:
            yield run
        report_skipped(run.skipped)
        for report in run._after:
            report()


def one_line(text: str, limit: int = 300) -> str:
    """A message folded onto one line and cut at `limit` characters (library errors can be pages)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every `finally` and staged output cleans up.

    A KeyboardInterrupt (not an Exception) so no `except Exception` swallows it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def install_sigterm() -> None:
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (xlt called from a library's worker thread)
        pass


#: Exit status of a command whose stdout reader went away: what a shell reports for a process
#: killed by SIGPIPE (128 + 13), so `set -o pipefail` scripts see that the output was cut short.
BROKEN_PIPE_EXIT = 141


def _quiet_broken_pipe() -> None:
    # The reader went away (`xlt ... | head`): exit quietly, and keep Python from complaining
    # while flushing stdout at shutdown.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise typer.Exit(BROKEN_PIPE_EXIT)


def report_skipped(skipped: SkipReport) -> None:
    summary = skipped.summary()
    if summary:
        log.warn(summary)
