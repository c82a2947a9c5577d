"""stderr reporting: logs, warnings and progress. stdout is for data only."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")


class _State:
    quiet: bool = False
    verbose: bool = False
    command: str = "xlt"


state = _State()
_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def configure(*, command: str, quiet: bool = False, verbose: bool = False) -> None:
    state.command = command
    state.quiet = quiet
    state.verbose = verbose


def info(message: str) -> None:
    """An informational line on stderr (silent with --quiet)."""
    if not state.quiet:
        # The message is plain text (paths may hold `[...]`): only the prefix is markup.
        from rich.markup import escape

        console().print(f"[dim]{state.command}:[/dim] {escape(message)}", markup=True, highlight=False)


def block(text: str) -> None:
    """A block of plain text (a markdown table) on stderr, unless quiet."""
    if not state.quiet:
        console().print(text, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr (shown even with --quiet)."""
    console().print(f"{state.command}: warning: {message}", markup=False, highlight=False)


def debug(message: str) -> None:
    if state.verbose:
        console().print(f"{state.command}: {message}", markup=False, highlight=False, style="dim")


def progress_enabled() -> bool:
    return not state.quiet and sys.stderr.isatty()


def track(items: Iterable[T], *, description: str, total: int | None = None, unit: str = "records") -> Iterator[T]:
    """Yield `items`, showing a rich progress bar on stderr when it is a terminal.

    Shows items/s, and an ETA when `total` is known. Silent with --quiet or when stderr is
    redirected, so logs stay clean in batch jobs.
    """
    if not progress_enabled():
        yield from items
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    else:
        columns += [TextColumn("{task.completed} " + unit)]
    columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    start = time.monotonic()
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(description, total=total, rate="")
        n = 0
        for item in items:
            yield item
            n += 1
            if n % 16 == 0 or (total is not None and n == total):
                elapsed = max(time.monotonic() - start, 1e-9)
                bar.update(task, completed=n, rate=f"{n / elapsed:,.1f} {unit}/s")
