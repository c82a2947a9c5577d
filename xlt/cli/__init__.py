"""The `xlt` command line: one thin module per command over the library."""

from __future__ import annotations

import importlib
import keyword
from typing import Annotated, Optional

import typer

from xlt import __version__

app = typer.Typer(
    name="xlt",
    help="Cross-lingual transfer of text classifiers: composable JSONL stages.\n\n"
    "Every stage reads and writes JSONL records (stdin/stdout or files) or checkpoint "
    "directories, so pipelines are shell pipes:\n\n"
    "  xlt pair --src en xnli/dev.*.jsonl | xlt soft-label --teacher en.ckpt | xlt distill --out fr.ckpt -",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Command modules in help order; each has `register(app)`. Only commands that work are listed.
COMMANDS = ["import", "pair", "split", "translate", "perturb", "teach", "soft-label", "distill", "average", "eval", "analyze", "report", "models", "env"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xlt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Cross-lingual transfer of text classifiers."""


for _name in COMMANDS:
    # a command named like a Python keyword lives in `<name>_.py` (import_.py)
    _module = _name.replace("-", "_")
    importlib.import_module(f"xlt.cli.{_module}{'_' if keyword.iskeyword(_module) else ''}").register(app)


def main() -> None:
    # `xlt ... | head -1`: SIGPIPE stays ignored (Python's default), so a closed pipe is a
    # BrokenPipeError that unwinds like any error: staged outputs are removed, then the command
    # exits quietly (common.command). Dying by the signal would leave temporaries behind.
    # SIGTERM (what SLURM and `timeout` send) unwinds the same way (exit 143); training catches it
    # itself to save resumable state first.
    from xlt.cli.common import install_sigterm

    install_sigterm()
    app(prog_name="xlt")


if __name__ == "__main__":
    main()
