"""Benchmark `xlt soft-label`: the CTranslate2 engine against torch and transformers' pipeline.

    nice -n 5 .venv/bin/python benchmarks/softlabel.py [--model CKPT] [--records 5000] [--workdir DIR]

Model: `--model` (an xlt checkpoint of me5-small, BERT-shaped: 12 layers, 384 hidden, 250k
vocabulary), or by default one built once into `--workdir` with `xlt teach --model me5-small
--max-steps 1` on samples/nli/en.jsonl (accuracy then means nothing; speed and agreement do).
Input: `--records` XNLI dev records drawn round robin over the 15 ../shared/data/xnli/dev.*.jsonl.

- Throughput (records/s), each side in its own child process, timed around the work only
  (model load and CTranslate2 conversion excluded: the conversions are done once beforehand):
  xlt ct2 as shipped (`soft_label` with the ct2 engine: int8 on CPU, near-ties with a top-2
  margin below 0.03 re-scored on the float32 encoder), xlt ct2 plain int8 (`--rescore-margin 0`),
  xlt torch (float32), and transformers `pipeline("text-classification")` on {"text", "text_pair"}
  dicts, all with `--batch-size`. The xlt sides include tokenization, batching and the JSON
  records they yield.
- Agreement: argmax agreement of each ct2 side vs torch float32 over the same records, the largest
  |probability difference|, and the accuracy of each against the gold labels.
- Memory: peak RSS (GNU time's %M, else the child's rusage) of the real `xlt soft-label --engine
  ct2` on `--memory-records` and 10x as many records (the same records repeated), output
  discarded; the ratio shows that memory does not grow with the input.

Machine, versions and the load average (the machine may be shared) are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "xnli"
XLT = [sys.executable, "-m", "xlt"]
SIDES = ("ct2", "ct2-plain", "torch", "pipeline")


def xnli_records(n: int) -> list[dict]:
    """`n` records round robin over the dev files (en, fr, ..., zh, en, fr, ...)."""
    files = sorted(p for p in DATA.glob("dev.*.jsonl") if not p.name.endswith("meta.jsonl"))
    if not files:
        raise SystemExit(f"no XNLI dev files in {DATA}")
    handles = [open(p, encoding="utf-8") for p in files]
    out: list[dict] = []
    try:
        while len(out) < n:
            before = len(out)
            for fh in handles:
                line = fh.readline()
                if line.strip() and len(out) < n:
                    out.append(json.loads(line))
            if len(out) == before:
                raise SystemExit(f"only {len(out)} XNLI dev records")
    finally:
        for fh in handles:
            fh.close()
    return out


def write_jsonl(path: Path, records: list[dict], *, repeat: int = 1) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(repeat):
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build_model(workdir: Path) -> str:
    out = workdir / "me5-small-1step.ckpt"
    if not (out / "config.json").exists():
        cmd = XLT + ["teach", "--model", "me5-small", "--max-steps", "1", "--batch-size", "8", "--quiet",
                     "--out", str(out), str(ROOT / "samples" / "nli" / "en.jsonl")]
        print(f"building the model: {' '.join(cmd[2:])}", flush=True)
        subprocess.run(cmd, check=True)
    return str(out)


# -- children: one side each, timed around the work ---------------------------------------------


def child_xlt(args: argparse.Namespace) -> dict:
    import numpy as np

    from xlt.distill.softlabel import soft_label
    from xlt.inference.classifier import Classifier

    records = [json.loads(x) for x in open(args.input, encoding="utf-8")]
    engine, margin = ("ct2", 0.0) if args.child == "ct2-plain" else (args.child, None)
    clf = Classifier(args.model, engine=engine, batch_size=args.batch_size, device="cpu", threads=args.threads,
                     rescore_margin=margin)
    t0 = time.perf_counter()
    out = [json.dumps(r) for r in soft_label(((f"in:{i}", r) for i, r in enumerate(records)), clf)]
    seconds = time.perf_counter() - t0
    probs = np.array([json.loads(x)["teacher"]["probs"] for x in out], dtype=np.float32)
    np.save(args.probs, probs)
    return {"n": len(out), "seconds": seconds, "engine": clf.engine_name, "labels": clf.labels.names,
            "note": clf.engine_note()}


def child_pipeline(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from transformers import pipeline

    from xlt.hf import quiet_transformers

    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = [json.loads(x) for x in open(args.input, encoding="utf-8")]
    clf = pipeline("text-classification", model=args.model, device=-1)
    inputs = [{"text": r["premise"], "text_pair": r["hypothesis"]} for r in records]
    t0 = time.perf_counter()
    out = clf(inputs, batch_size=args.batch_size, top_k=None, truncation=True)
    seconds = time.perf_counter() - t0
    names = [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)]
    probs = np.array([[{d["label"]: d["score"] for d in row}[n] for n in names] for row in out], dtype=np.float32)
    np.save(args.probs, probs)
    return {"n": len(out), "seconds": seconds, "engine": "pipeline", "labels": names}


def run_child(side: str, args: argparse.Namespace, data: Path, probs: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--model", args.model, "--input", str(data),
           "--probs", str(probs), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if res.returncode != 0:
        raise SystemExit(f"{side} child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def peak_rss_kib(cmd: list[str], *, stdin: Path) -> int:
    """Peak resident memory (KiB) of `cmd` reading `stdin`, its output discarded."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    with open(stdin, "rb") as fin:
        if gnu_time:
            res = subprocess.run([gnu_time, "-f", "%M", *cmd], stdin=fin, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            if res.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
            return int(res.stderr.strip().splitlines()[-1])
        proc = subprocess.Popen(cmd, stdin=fin, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (status {status})")
        return int(usage.ru_maxrss)


from _machine import machine  # noqa: E402  (benchmarks run as scripts: their folder is on sys.path)


def versions() -> str:
    import ctranslate2
    import torch
    import transformers

    import xlt

    return f"xlt {xlt.__version__}, ctranslate2 {ctranslate2.__version__}, torch {torch.__version__}, transformers {transformers.__version__}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint dir (default: build a 1-step me5-small checkpoint into --workdir)")
    ap.add_argument("--records", type=int, default=5000, help="XNLI dev records for throughput and agreement")
    ap.add_argument("--memory-records", type=int, default=5000, help="the small memory run; the large one is 10x")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="0: every usable core (ct2), torch's default (torch)")
    ap.add_argument("--workdir", default=os.environ.get("XLT_BENCH_DIR", "/tmp/xlt-bench-softlabel"))
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", choices=SIDES)
    ap.add_argument("--input")
    ap.add_argument("--probs")
    args = ap.parse_args()
    if args.child:
        result = child_pipeline(args) if args.child == "pipeline" else child_xlt(args)
        print(json.dumps(result))
        return

    import numpy as np

    started = time.monotonic()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    args.model = args.model or build_model(work)
    print(f"machine: {machine()}", flush=True)
    print(f"versions: {versions()}", flush=True)
    print(f"model: {args.model}; batch size {args.batch_size}; threads {args.threads or 'all'}; {load()}", flush=True)
    records = xnli_records(args.records)
    data = work / f"xnli-{args.records}.jsonl"
    write_jsonl(data, records)

    t0 = time.monotonic()
    from xlt.inference.classifier import Classifier

    clf = Classifier(args.model, engine="ct2", device="cpu")  # converts once into the cache
    clf.runner.exact_encoder  # and the float32 encoder near-ties are re-scored on
    print(f"CTranslate2 conversions (int8 and float32, cached after the first run): {time.monotonic() - t0:.1f} s", flush=True)

    results = {}
    for side in SIDES:
        results[side] = run_child(side, args, data, work / f"probs-{side}.npy")
        r = results[side]
        print(f"{side:9s} ({r['engine']}): {r['n'] / r['seconds']:8.1f} records/s ({r['n']} records in "
              f"{r['seconds']:.1f} s, model load excluded){'; ' + r['note'] if r.get('note') else ''}; {load()}",
              flush=True)
    rate = {k: v["n"] / v["seconds"] for k, v in results.items()}
    for side in ("ct2", "ct2-plain"):
        print(f"ratio {side} / torch:    {rate[side] / rate['torch']:.2f}x (target >= 2x)", flush=True)
        print(f"ratio {side} / pipeline: {rate[side] / rate['pipeline']:.2f}x (target >= 2.5x)", flush=True)

    probs = {k: np.load(work / f"probs-{k}.npy") for k in results}
    labels = results["ct2"]["labels"]
    probs["pipeline"] = probs["pipeline"][:, [results["pipeline"]["labels"].index(n) for n in labels]]
    gold = np.array([labels.index(str(r["label"])) for r in records])
    acc = {k: float((p.argmax(1) == gold).mean()) for k, p in probs.items()}
    for side in ("ct2", "ct2-plain"):
        agree = float((probs[side].argmax(1) == probs["torch"].argmax(1)).mean())
        diff = float(np.abs(probs[side] - probs["torch"]).max())
        print(f"agreement {side} ({results[side]['engine']}) vs torch float32: argmax {100 * agree:.2f}% of "
              f"{len(records)} (target >= 99.5%), max |prob diff| {diff:.4f}; accuracy {100 * acc[side]:.2f}% vs "
              f"torch {100 * acc['torch']:.2f}% ({100 * (acc[side] - acc['torch']):+.2f} points, target within 0.2)",
              flush=True)
    print(f"accuracy of the pipeline: {100 * acc['pipeline']:.2f}%", flush=True)

    if not args.skip_memory:
        mem = xnli_records(args.memory_records)
        small, large = work / "mem-small.jsonl", work / "mem-large.jsonl"
        write_jsonl(small, mem)
        write_jsonl(large, mem, repeat=10)
        cmd = XLT + ["soft-label", "--teacher", args.model, "--engine", "ct2", "--batch-size", str(args.batch_size),
                     "--threads", str(args.threads), "--quiet", "-"]
        rss_small = peak_rss_kib(cmd, stdin=small)
        rss_large = peak_rss_kib(cmd, stdin=large)
        print(f"peak RSS of xlt soft-label --engine ct2: {rss_small / 1024:.0f} MiB for {len(mem):,} records, "
              f"{rss_large / 1024:.0f} MiB for {10 * len(mem):,} (x{rss_large / rss_small:.3f}, target within 10%); {load()}",
              flush=True)
    print(f"benchmark time: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
