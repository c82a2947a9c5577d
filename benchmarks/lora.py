"""Benchmark LoRA (`--peft lora`) against full fine-tuning: cost and zero-shot transfer.

    nice -n 5 .venv/bin/python benchmarks/lora.py [--records 8000] [--test-ids 300] [--seeds 1 2]

Both sides run the real CLI, `xlt teach --model me5-small --freeze-embeddings` on the same
English NLI records (../shared/data/nli-en: the first half from MNLI dev-matched, the rest from
SNLI dev), one epoch, batch 32, max length 128, the same steps and seeds:

- full: every weight but the word embeddings, lr 5e-5 (the papers' and `teach`'s setting);
- lora: `--peft lora` (r 8, alpha 16, dropout 0.1, attention query/value; the classification
  head and pooler trained fully), lr 5e-4 (LoRA's usual 10x; a LoRA update is small).

English dev (`--dev-ids` XNLI dev ids, disjoint from the test ids) is scored every `--eval-every`
steps, so the printed curve shows whether a side is still improving at the end of the budget.
Zero-shot test: the first `--test-ids` ids of XNLI dev in 15 languages (no one tuned on them);
`xlt eval` (its exact default: CTranslate2 float32) and `xlt eval --compare` (paired bootstrap,
1,000 samples) per seed. Runs alternate full/lora/lora/full... so drift of a shared machine hits
both sides alike.

Printed per run: trainable parameters, training examples/s (the checkpoint manifest's, the loop
only), peak RSS of the teach process (its own rusage), checkpoint size, English dev curve, test
accuracy in English and averaged over the 14 other languages; then means over seeds and the
ratios lora/full (examples/s, peak RSS, trainable parameters, stored size). The baseline is the
full side measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
SIDES = {"full": ["--lr", "5e-5"], "lora": ["--peft", "lora", "--lr", "5e-4"]}


def xlt(*args: str) -> list[str]:
    return [sys.executable, "-m", "xlt", *args]


def run(cmd: list[str], *, log: Path) -> dict:
    """Run `cmd` to completion; its own peak RSS (wait4 rusage) and wall time."""
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed (exit {code}); see {log}:\n{log.read_text()[-2000:]}")
    return {"peak_rss_gib": usage.ru_maxrss / 2**20, "wall_s": wall}


def prepare(work: Path, *, records: int, test_ids: int, dev_ids: int) -> None:
    sources = (DATA / "nli-en" / "mnli.dev_matched.en.jsonl", DATA / "nli-en" / "snli.dev.en.jsonl")
    out = []
    for path, k in zip(sources, (records // 2, records - records // 2)):
        with open(path, encoding="utf-8") as fh:
            taken = [line for _, line in zip(range(k), fh)]
        if len(taken) < k:
            raise SystemExit(f"{path}: only {len(taken)} records, {k} wanted")
        out.extend(taken)
    (work / "train.en.jsonl").write_text("".join(out), encoding="utf-8")
    ids: list[str] = []
    with open(DATA / "xnli" / "dev.en.jsonl", encoding="utf-8") as fh:
        for line in fh:
            ids.append(json.loads(line)["id"])
    if len(ids) < test_ids + dev_ids:
        raise SystemExit(f"XNLI dev has {len(ids)} ids, {test_ids + dev_ids} wanted")
    test, dev = set(ids[:test_ids]), set(ids[test_ids:test_ids + dev_ids])
    with open(work / "test.jsonl", "w", encoding="utf-8") as t, open(work / "dev.en.jsonl", "w", encoding="utf-8") as d:
        for lang in LANGS:
            with open(DATA / "xnli" / f"dev.{lang}.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    rid = json.loads(line)["id"]
                    if rid in test:
                        t.write(line)
                    elif lang == "en" and rid in dev:
                        d.write(line)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def teach(work: Path, side: str, seed: int, args: argparse.Namespace) -> dict:
    ck = work / f"{side}.s{seed}"
    cmd = xlt("teach", str(work / "train.en.jsonl"), "--model", args.model, "--out", str(ck), "--force",
              "--epochs", "1", "--batch-size", "32", "--max-length", "128", "--freeze-embeddings",
              "--seed", str(seed), "--dev", str(work / "dev.en.jsonl"), "--eval-every", str(args.eval_every),
              "--save-every", "100000", *SIDES[side])
    got = run(cmd, log=work / f"{side}.s{seed}.teach.log")
    manifest = json.loads((ck / "xlt.json").read_text())
    training = manifest["training"]
    dev = manifest.get("dev") or {}
    curve = [(h["step"], h["accuracy"]) for h in dev.get("history", []) if "accuracy" in h]
    adapter = ck / "adapter"
    return {**got, "ckpt": str(ck), "steps": training["steps"], "examples_per_s": training["examples_per_second"],
            "trainable": training["resolved"]["trainable_parameters"], "curve": curve,
            "stored_mib": (dir_size(adapter) if adapter.is_dir() else dir_size(ck)) / 2**20}


def evaluate(work: Path, side: str, seed: int) -> dict:
    ck = work / f"{side}.s{seed}"
    report = work / f"{side}.s{seed}.eval.json"
    cmd = xlt("eval", "--model", str(ck), str(work / "test.jsonl"), "-o", str(report), "--force", "-q")
    if side == "lora":
        cmd += ["--compare", str(work / f"full.s{seed}"), "--bootstrap", "1000"]
    run(cmd, log=work / f"{side}.s{seed}.eval.log")
    rep = json.loads(report.read_text())
    return {"report": rep, "path": str(report)}


def lang_acc(rep: dict) -> dict[str, float]:
    """Per-language accuracy (percent) of the evaluated model (model A) from an eval report."""
    return {lang: 100 * row["accuracy"] for lang, row in rep["languages"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=8000)
    ap.add_argument("--test-ids", type=int, default=300)
    ap.add_argument("--dev-ids", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--workdir", default="/tmp/xlt-bench-lora")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    prepare(work, records=args.records, test_ids=args.test_ids, dev_ids=args.dev_ids)
    rows: dict[tuple[str, int], dict] = {}
    order: list[str] = []
    for i, seed in enumerate(args.seeds):  # ABBA: full lora, lora full, ...
        order = ["full", "lora"] if i % 2 == 0 else ["lora", "full"]
        for side in order:
            rows[(side, seed)] = teach(work, side, seed, args)
            r = rows[(side, seed)]
            print(f"{side} seed {seed}: {r['steps']} steps, {r['trainable']:,} trainable, {r['examples_per_s']:.1f} ex/s, "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB, stored {r['stored_mib']:.1f} MiB, wall {r['wall_s']:.0f} s; "
                  f"en dev curve " + " ".join(f"{s}:{100 * a:.1f}" for s, a in r["curve"]), flush=True)
    for seed in args.seeds:
        for side in ("full", "lora"):  # lora compares against full: full first
            rows[(side, seed)].update(evaluate(work, side, seed))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    print("| side | seed | trainable | ex/s | peak RSS GiB | stored MiB | en dev last (best) | test en | avg 14 | "
          "delta avg 14 vs full (p) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, dict[str, list[float]]] = {s: {} for s in SIDES}
    for seed in args.seeds:
        for side in ("full", "lora"):
            r = rows[(side, seed)]
            acc = lang_acc(r["report"])
            avg = sum(v for k, v in acc.items() if k != "en") / (len(acc) - 1)
            delta = ""
            if side == "lora":
                full_acc = lang_acc(rows[("full", seed)]["report"])
                d = avg - sum(v for k, v in full_acc.items() if k != "en") / (len(full_acc) - 1)
                p = _paired_p(r["report"])
                delta = f"{d:+.1f}" + (f" (p {p:.3f})" if p is not None else "")
            curve = r["curve"]
            dev = f"{100 * curve[-1][1]:.1f} ({100 * max(a for _, a in curve):.1f})" if curve else "-"
            print(f"| {side} | {seed} | {r['trainable']:,} | {r['examples_per_s']:.1f} | {r['peak_rss_gib']:.2f} | "
                  f"{r['stored_mib']:.1f} | {dev} | {acc['en']:.1f} | {avg:.1f} | {delta} |")
            for k, v in (("ex_s", r["examples_per_s"]), ("rss", r["peak_rss_gib"]), ("en", acc["en"]), ("avg", avg),
                         ("trainable", r["trainable"]), ("stored", r["stored_mib"])):
                summary[side].setdefault(k, []).append(v)

    def mean(side: str, k: str) -> float:
        return sum(summary[side][k]) / len(summary[side][k])

    print()
    for k, what in (("en", "test en"), ("avg", "avg 14 non-en")):
        print(f"{what}: full {mean('full', k):.1f}, lora {mean('lora', k):.1f} (mean of {len(args.seeds)} seeds; "
              f"delta {mean('lora', k) - mean('full', k):+.1f})")
    for k, what in (("ex_s", "examples/s"), ("rss", "peak RSS"), ("trainable", "trainable parameters"),
                    ("stored", "stored size (LoRA: its adapter dir)")):
        print(f"ratio lora/full, {what}: {mean('lora', k) / mean('full', k):.3f}")


def _paired_p(report: dict) -> float | None:
    """The paired bootstrap's p-value of the non-English average in an `eval --compare` report."""
    cell = (report.get("compare") or {}).get("average_non_source") or {}
    return cell.get("p_value")


if __name__ == "__main__":
    main()
