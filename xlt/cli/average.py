"""`xlt average`: one checkpoint whose weights are the weighted mean of several (WiSE-FT, model soups)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt.cli import common


def _weights(spec: str | None) -> list[float] | None:
    if spec is None:
        return None
    try:
        return [float(x) for x in spec.split(",")]
    except ValueError:
        from xlt.errors import UsageError

        raise UsageError(f"--weights: expected comma-separated numbers, got {spec!r}") from None


def average_cli(
    models: Annotated[list[str], typer.Argument(help="Two or more checkpoints (xlt, Hugging Face or LoRA adapter dirs) fine-tuned from one starting point: same architecture, labels, fields and vocabulary.", show_default=False)],
    out: Annotated[str, typer.Option("--out", help="Checkpoint directory to write (atomically).")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="One weight per model, >= 0, comma-separated; scaled to sum to 1. Default: equal weights. WiSE-FT's alpha a is `--weights 1-a,a` for BEFORE AFTER.")] = None,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Average the weights of checkpoints: theta = sum_i w_i theta_i (WiSE-FT, Wortsman et al. 2022;
    model soups). Between a model and its distilled or further-trained self it keeps what the first
    was good at (e.g. English) while keeping most of the second's gain.

    The result loads like any checkpoint (eval, soft-label, --student, --model); its xlt.json names
    every member with its content digest and weight.

    Example: xlt average base.ckpt xd.ckpt --weights 0.5,0.5 --out wise.ckpt
    """
    with common.stage("average", main_output=False, quiet=quiet, verbose=verbose):
        from xlt import log
        from xlt.train.average import average_checkpoints

        result = average_checkpoints(models, out=out, weights=_weights(weights), force=force)
        log.info(f"wrote {result.out}: {result.tensors} tensors ({result.parameters / 1e6:.1f} M values), the mean of "
                 + ", ".join(f"{m} (weight {w:.4g})" for m, w in zip(models, result.weights)))


def register(app: typer.Typer) -> None:
    app.command("average")(average_cli)
