from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_xlt(*args: str, input: str | bytes | None = None, env: dict | None = None, cwd=None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `xlt` command line in a subprocess (argv, stdin, exit code, stdout/stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    data = input.encode("utf-8") if isinstance(input, str) else input
    return subprocess.run([sys.executable, "-m", "xlt", *args], input=data, capture_output=True,
                          env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def xlt():
    return run_xlt


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "xnli" / "dev.en.jsonl").exists():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny random BERT encoder with its tokenizer (no classification head)."""
    from tinymodels import make_tiny_bert

    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> str:
    """A tiny random BERT 3-way NLI classifier with its tokenizer."""
    from tinymodels import make_tiny_bert

    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny-clf")), classifier=True)
