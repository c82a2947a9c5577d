"""Rebuild samples/xnli-demo/ from ../shared/data (what was taken, deterministically).

English training pairs: MNLI dev-matched, 1,000 per label (3,000). Target languages: XNLI dev,
the same 150 premise groups (450 ids) in en, fr, de, ru, zh, ar, sw, with their premise groups
(`meta.jsonl`), so `xlt split --meta meta.jsonl --by premise_group` never lets a premise straddle
the unlabelled and the test half. Groups and pairs are chosen by a salted SHA-256 of their key.

    python samples/xnli-demo/make.py ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

LANGS = ("en", "fr", "de", "ru", "zh", "ar", "sw")
GROUPS = 150
PER_LABEL = 1000


def rank(key: str) -> str:
    # salted so the choice is independent of `xlt split`'s own hash of the same keys
    return hashlib.sha256(f"xlt-demo-sample\0{key}".encode()).hexdigest()


def read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write(path: str, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(data: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    mnli = read(os.path.join(data, "nli-en", "mnli.dev_matched.en.jsonl"))
    train = []
    for label in ("entailment", "neutral", "contradiction"):
        rows = sorted((r for r in mnli if r["label"] == label), key=lambda r: rank(r["id"]))
        train += rows[:PER_LABEL]
    train.sort(key=lambda r: r["id"])
    write(os.path.join(here, "train.en.jsonl"), train)

    meta = read(os.path.join(data, "xnli", "dev.meta.jsonl"))
    groups = sorted({m["premise_group"] for m in meta}, key=lambda g: rank(str(g)))[:GROUPS]
    chosen = {m["id"] for m in meta if m["premise_group"] in set(groups)}
    write(os.path.join(here, "meta.jsonl"), [m for m in meta if m["id"] in chosen])
    for lang in LANGS:
        rows = [r for r in read(os.path.join(data, "xnli", f"dev.{lang}.jsonl")) if r["id"] in chosen]
        write(os.path.join(here, f"xnli.{lang}.jsonl"), rows)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "data"))
