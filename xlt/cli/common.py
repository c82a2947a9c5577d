"""Options spelled once for every command, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Annotated, Optional

import typer

from xlt import log
from xlt.errors import XltError
from xlt.io import SkipReport

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
        help="Text fields, e.g. `premise,hypothesis`, `text`, or a shape: nli, paraphrase, single. "
        "Default: inferred from the first record.",
    ),
]
Shard = Annotated[
    Optional[str],
    typer.Option("--shard", help="Process only shard K of N (1-based, round robin over input records), e.g. `3/8`."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Records per batch.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
# Classifier inference engines (soft-label, eval): xlt.engines
Engine = Annotated[str, typer.Option("--engine", help="torch, ct2 (CTranslate2 encoder + the checkpoint's own head: BERT, XLM-R, RoBERTa, DistilBERT) or auto (ct2 when the model can run there, else torch).")]
EngineComputeType = Annotated[Optional[str], typer.Option("--compute-type", help="CTranslate2 compute type (int8, int8_float32, int8_float16, float16, bfloat16, float32). Default: int8 on CPU, float16 on GPU.")]
EngineThreads = Annotated[int, typer.Option("--threads", min=0, help="CPU threads (CTranslate2 intra-op threads, or torch's); 0: every core this process may use for ct2, torch's default for torch.")]
RescoreMargin = Annotated[Optional[float], typer.Option("--rescore-margin", min=0.0, max=1.0, help="ct2 int8: re-run records whose top-2 probability margin is below this on the float32 encoder (float16 on GPU), so near-ties match torch. 0: off. Default 0.03.")]


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
    except KeyboardInterrupt:
        print(f"xlt {name}: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug or an environment failure: say so in one line
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (rerun with --verbose for the traceback)"
        print(f"xlt {name}: error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        raise typer.Exit(1) from None


def _quiet_broken_pipe() -> None:
    # The reader went away (`xlt ... | head`): exit quietly, and keep Python from complaining
    # while flushing stdout at shutdown.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise typer.Exit(0)


def report_skipped(skipped: SkipReport) -> None:
    summary = skipped.summary()
    if summary:
        log.warn(summary)
