#!/usr/bin/env python3
"""Peak memory of `xlt import` on N and 10N rows: streaming sources must stay flat (< 10 % more).

    benchmarks/import_memory.py [--rows 20000] [--formats parquet,csv,conllu] [--workdir DIR]

For each format, writes an XNLI-shaped source of N rows and of 10N rows (Parquet through
`datasets`' own writer, with a ClassLabel label: one row group per file, as `datasets` writes
files under 100 MB; CSV; CoNLL-U sentences), runs `xlt import` on each in a fresh subprocess with
the output discarded (the files are written by a child process too, so the parent stays small),
and prints both peak RSS figures and their ratio against the N-row run, the
baseline. Machine, versions and the load average are printed with the figures (the machine may
be shared; memory, unlike time, hardly depends on it).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402  (benchmarks run as scripts: their folder is on sys.path)

XLT = [sys.executable, "-m", "xlt"]
WORDS = ("the a man woman child dog cat plays reads runs sleeps in on at park house street music book "
         "guitar quickly slowly never always big small red green old new city river mountain").split()
LABELS = ["entailment", "neutral", "contradiction"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))).capitalize() + "."


def rows(n: int, seed: int = 0) -> dict[str, list]:
    rng = random.Random(seed)
    return {"premise": [sentence(rng) for _ in range(n)], "hypothesis": [sentence(rng) for _ in range(n)],
            "label": [rng.randrange(3) for _ in range(n)]}


def write(fmt: str, n: int, work: Path) -> tuple[Path, list[str]]:
    """The source file of `n` rows and the `xlt import` options it needs."""
    data = rows(n)
    if fmt == "parquet":
        from datasets import ClassLabel, Dataset, Features, Value, disable_progress_bars

        disable_progress_bars()
        path = work / f"xnli-{n}.parquet"
        features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=LABELS)})
        Dataset.from_dict(data, features=features).to_parquet(str(path))
        return path, ["--lang", "en"]
    if fmt == "csv":
        import csv

        path = work / f"xnli-{n}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["premise", "hypothesis", "gold"])
            w.writerows(zip(data["premise"], data["hypothesis"], data["label"]))
        return path, ["--lang", "en", "--map", "label=gold"]
    if fmt == "conllu":
        path = work / f"ud-{n}.conllu"
        with open(path, "w", encoding="utf-8") as fh:
            for i, text in enumerate(data["premise"]):
                fh.write(f"# sent_id = s{i}\n# text = {text}\n")
                for j, word in enumerate(text.split(), 1):
                    fh.write(f"{j}\t{word}\t{word.lower()}\tNOUN\tNN\t_\t0\tdep\t_\t_\n")
                fh.write("\n")
        return path, ["--lang", "en"]
    raise SystemExit(f"unknown format {fmt}")


def write_in_child(fmt: str, n: int, work: Path) -> tuple[Path, list[str]]:
    """`write` in a child process: the parent stays small, because a child's peak RSS counts the
    parent's memory it was forked with (ru_maxrss survives exec)."""
    res = subprocess.run([sys.executable, __file__, "--write", fmt, str(n), "--workdir", str(work)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"writing {fmt} x {n} failed:\n{res.stderr[-3000:]}")
    path, *opts = res.stdout.strip().splitlines()[-1].split("\t")
    return Path(path), opts


def peak_rss_kib(cmd: list[str]) -> int:
    """Peak resident memory (KiB) of `cmd` in a fresh subprocess, its output discarded."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (status {status}):\n{err[-3000:]}")
    return int(usage.ru_maxrss)


def versions() -> str:
    from importlib.metadata import version

    return f"xlt {version('xlt')}, datasets {version('datasets')}, pyarrow {version('pyarrow')}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="N, the baseline run; the large run has 10N rows")
    ap.add_argument("--formats", default="parquet,csv,conllu")
    ap.add_argument("--workdir", default=os.environ.get("XLT_BENCH_DIR", "/tmp/xlt-bench-import"))
    ap.add_argument("--write", nargs=2, metavar=("FORMAT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.write:
        path, opts = write(args.write[0], int(args.write[1]), work)
        print("\t".join([str(path), *opts]))
        return
    print(f"machine: {machine()}", flush=True)
    print(f"versions: {versions()}", flush=True)
    worst = 0.0
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        sizes = {}
        for n in (args.rows, 10 * args.rows):
            path, opts = write_in_child(fmt, n, work)
            t0 = time.monotonic()
            sizes[n] = peak_rss_kib(XLT + ["import", str(path), *opts, "--quiet", "-o", os.devnull])
            print(f"  {fmt}: {n:,} rows ({path.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - t0:.1f} s, "
                  f"peak RSS {sizes[n] / 1024:.0f} MiB; {load()}", flush=True)
        small, large = sizes[args.rows], sizes[10 * args.rows]
        ratio = large / small
        worst = max(worst, ratio)
        print(f"peak RSS of xlt import ({fmt}): {small / 1024:.0f} MiB for {args.rows:,} rows (baseline), "
              f"{large / 1024:.0f} MiB for {10 * args.rows:,} (x{ratio:.3f}, target < 1.10 "
              f"{'✓' if ratio < 1.10 else '✗'})", flush=True)
    sys.exit(0 if worst < 1.10 else 1)


if __name__ == "__main__":
    main()
