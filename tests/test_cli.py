"""The `xlt` command line as a whole: help, version, env, exit codes, stderr reporting."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from xlt import __version__, log
from xlt.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [str(ROOT / "samples" / "nli" / f"{lang}.jsonl") for lang in ("en", "fr")]


def test_help_lists_every_command(xlt):
    for flag in ("--help", "-h"):
        proc = xlt(flag)
        assert proc.returncode == 0
        text = proc.stdout.decode()
        assert "Usage: xlt" in text
        for name in COMMANDS:
            assert f" {name} " in text, name
    assert "pair" in COMMANDS and "env" in COMMANDS


def test_no_arguments_shows_help(xlt):
    proc = xlt()
    assert proc.returncode in (0, 2)  # click exits 2 when no_args_is_help, newer ones 0
    assert "Usage: xlt" in (proc.stdout + proc.stderr).decode()


def test_command_help_shows_output_size_and_example(xlt):
    text = xlt("pair", "--help").stdout.decode()
    assert "(1:N)" in text and "N*N" in text and "Example: xlt pair" in text


def test_version(xlt):
    proc = xlt("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"xlt {__version__}"


def test_env_prints_versions(xlt):
    proc = xlt("env")
    assert proc.returncode == 0
    info = dict(line.split(": ", 1) for line in proc.stdout.decode().splitlines())
    assert info["xlt"] == __version__
    assert info["torch"] == metadata.version("torch")
    assert info["transformers"] == metadata.version("transformers")
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "cuda" in info


def test_unknown_command_is_a_usage_error(xlt):
    proc = xlt("no-such-command")
    assert proc.returncode == 2
    assert proc.stdout == b""


def test_unknown_option_is_a_usage_error(xlt):
    proc = xlt("pair", "--no-such-option")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr.decode()


def test_cli_import_stays_light():
    # `xlt --help` and the data stages must not pay for torch/transformers at start-up.
    code = "import sys, xlt.cli; print(sorted(m for m in ('torch', 'transformers', 'ctranslate2') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_help_into_head_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m xlt pair --help | head -1", shell=True, capture_output=True,
                          executable="/bin/bash")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr.decode()


# --- stderr reporting: progress only on a terminal ----------------------------------------------

def run_with_tty_stderr(*args: str) -> tuple[int, bytes, bytes]:
    """Run xlt with stderr on a pseudo-terminal (stdout stays a pipe); return rc, stdout, stderr."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "xlt", *args], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = proc.stdout.read()
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the child has closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=120), out, b"".join(chunks)


def test_progress_on_a_terminal():
    rc, out, err = run_with_tty_stderr("pair", "--all", *SAMPLES)
    assert rc == 0
    assert len(out.splitlines()) == 120  # stdout is data only
    text = err.decode("utf-8", "replace")
    assert "records/s" in text and "120/120" in text


def test_no_progress_with_quiet_even_on_a_terminal():
    rc, out, err = run_with_tty_stderr("pair", "--all", "--quiet", *SAMPLES)
    assert rc == 0 and len(out.splitlines()) == 120
    assert "records/s" not in err.decode("utf-8", "replace")


def test_no_progress_when_stderr_is_not_a_terminal(xlt):
    proc = xlt("pair", "--all", *SAMPLES)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 120
    err = proc.stderr.decode()
    assert err == "xlt pair: wrote 120 record(s)\n"  # no bar, no rate, no escape codes
    assert all(json.loads(line)["id"].startswith("s-") for line in proc.stdout.splitlines())


def test_log_lines_are_plain_text(capsys, monkeypatch):
    # Messages may hold paths with [brackets]: rich must not eat `[bold]` nor fail on `[/x]`.
    monkeypatch.setattr(log.state, "quiet", False)
    monkeypatch.setattr(log.state, "command", "xlt test")
    log.info("read data/[bold]x[/bold].jsonl and [/oops]")
    log.warn("skipped [red]1[/red]")
    assert capsys.readouterr().err.splitlines() == [
        "xlt test: read data/[bold]x[/bold].jsonl and [/oops]",
        "xlt test: warning: skipped [red]1[/red]",
    ]
    monkeypatch.setattr(log.state, "quiet", True)
    log.info("hidden")
    log.warn("shown")
    assert capsys.readouterr().err == "xlt test: warning: shown\n"
