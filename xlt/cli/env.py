"""`xlt env`: versions for bug reports."""

from __future__ import annotations

import typer

from xlt.envinfo import environment


def env_cli() -> None:
    """Print the versions of python, xlt, torch (+ CUDA), transformers, ctranslate2, datasets."""
    for key, value in environment().items():
        typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    app.command("env")(env_cli)
