"""`xlt models`: the built-in offline models (list them, build them into the xlt cache)."""

from __future__ import annotations

from typing import Annotated

import typer

from xlt.cli import common

models_app = typer.Typer(
    help="Built-in offline models: real pretrained encoders shipped by Python packages, built once into "
    "the xlt cache ($XLT_HOME, default ~/.cache/xlt) and usable as `--model NAME` by every stage.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_COLUMNS = ("name", "languages", "size", "licence", "installed", "path")


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"


@models_app.command("list")
def list_cli(
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per model instead of a table.")] = False,
    verbose: common.Verbose = False,
) -> None:
    """List the built-in models: name, languages, size, licence, installed or not, and where.

    Writes a table, or one JSON object per model with --json, to stdout.
    SIZE is the size on disk once installed, an estimate (~) before.

    Example: xlt models list --json | jq -r 'select(.installed) | .path'
    """
    from xlt.io import dumps
    from xlt.models import BUILTIN, describe

    with common.command("models list", verbose=verbose):
        rows = [describe(name) for name in BUILTIN]
        if json_lines:
            for row in rows:
                typer.echo(dumps(row))
            return
        table = [[c.upper() for c in _COLUMNS]]
        for r in rows:
            size = _human(r["size_bytes"]) if r["installed"] else "~" + _human(r["size_bytes"])
            table.append([r["name"], r["languages"], size, r["licence"], "yes" if r["installed"] else "no", r["path"]])
        widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS) - 1)]
        for row in table:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


@models_app.command("install")
def install_cli(
    names: Annotated[list[str], typer.Argument(help="Built-in model names (see `xlt models list`).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if already installed.")] = False,
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Build built-in models into the xlt cache now (otherwise the first use builds them).

    Prints each model's directory on stdout, progress on stderr.
    An installed model is kept unless --force; a stale one (older builder, other package version) is rebuilt.
    Builds are atomic (temporary directory, then rename) and locked: safe from several processes.

    Example: MODEL_DIR=$(xlt models install me5-small)
    """
    from xlt.models import build_builtin
    from xlt.models.builtin import get_spec

    with common.command("models install", quiet=quiet, verbose=verbose):
        for name in names:  # all names checked before anything is built
            get_spec(name)
        for name in dict.fromkeys(names):
            typer.echo(build_builtin(name, force=force))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
