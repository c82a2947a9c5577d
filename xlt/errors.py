"""Errors written for users. The CLI turns them into one line on stderr and an exit code."""

from __future__ import annotations


class XltError(Exception):
    """A failure the user can act on. Exit code 1 (runtime failure) unless a subclass says otherwise."""

    exit_code = 1


class UsageError(XltError):
    """Bad options or arguments (exit 2)."""

    exit_code = 2


class InputError(XltError):
    """Bad input data; the message names file, line and field (exit 2)."""

    exit_code = 2


class RecordError(ValueError):
    """What is wrong with one record, without its location; the reader adds `FILE:LINE:`."""


class NonFiniteError(XltError):
    """Training (or averaging) produced a non-finite loss or non-finite weights (exit 1)."""


class OutputExistsError(UsageError):
    """An output file or directory exists and --force was not given."""

    def __init__(self, path: str, what: str = "output") -> None:
        super().__init__(f"{what} {path} exists; pass --force to overwrite it")


class Interrupted(XltError):
    """Stopped by a signal (training saves resumable state first). The exit code is what a shell
    reports for that signal (128 + its number): 130 for SIGINT (Ctrl-C), 143 for SIGTERM (SLURM, kill)."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
