"""Benchmark `xlt teach` training throughput against transformers' Trainer.

    nice -n 5 .venv/bin/python benchmarks/train.py [--records 2000] [--workdir DIR]

Data: `--records` English NLI records from ../shared/data/nli-en, the first half from MNLI
dev-matched and the rest from SNLI dev. Model: me5-small (the directory `xlt.models.resolve_model`
gives, so every side loads the same weights), word embeddings frozen on every side, AdamW lr 5e-5,
weight decay 0.01, 10% linear warm-up then linear decay, gradient clipping 1.0, batch size 32,
max length 128, one epoch, seed 42, float32 on CPU. Each side runs in its own child process:

- xlt: the real CLI, `xlt teach --freeze-embeddings ...`; examples/s is the checkpoint manifest's
  `training.examples_per_second` (the training loop only: model load, tokenization and checkpoint
  writing excluded). The tokenization cache is used as in normal runs.
- Trainer max-length: `Trainer` as transformers' XNLI example (run_xnli.py, pad_to_max_length)
  configures it: every input padded to 128 tokens, random sampling, `default_data_collator`.
- Trainer grouped: `Trainer` with `train_sampling_strategy="group_by_length"` and
  `DataCollatorWithPadding` (dynamic padding).
  Both Trainer sides are timed around `trainer.train()` (tokenization and model load excluded);
  the optimizer is Trainer's default (`adamw_torch_fused`), with weight decay on every parameter
  but biases and LayerNorms, as in xlt.

Printed: examples/s per side, ratios xlt / Trainer max-length (target >= 2x) and xlt / Trainer
grouped (target >= 1.1x), the peak RSS of each child (its rusage), machine, versions and the load
average (the machine may be shared: the figure is only as quiet as the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "nli-en"
SOURCES = ("mnli.dev_matched.en.jsonl", "snli.dev.en.jsonl")
SIDES = ("xlt", "trainer-maxlen", "trainer-grouped")


def nli_records(n: int) -> list[dict]:
    """The first n//2 MNLI dev-matched records and the first n - n//2 SNLI dev records."""
    out: list[dict] = []
    for path, k in zip(SOURCES, (n // 2, n - n // 2)):
        with open(DATA / path, encoding="utf-8") as fh:
            taken = [json.loads(line) for _, line in zip(range(k), fh)]
        if len(taken) < k:
            raise SystemExit(f"{DATA / path}: only {len(taken)} records, {k} wanted")
        out.extend(taken)
    return out


# -- Trainer child ------------------------------------------------------------------------------


def child_trainer(args: argparse.Namespace) -> dict:
    import datasets
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator, set_seed)

    from xlt.hf import quiet_transformers

    quiet_transformers()
    grouped = args.child == "trainer-grouped"
    records = [json.loads(x) for x in open(args.input, encoding="utf-8")]
    names = sorted({str(r["label"]) for r in records})
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model.get_input_embeddings().weight.requires_grad_(False)
    enc = tokenizer([r["premise"] for r in records], [r["hypothesis"] for r in records], truncation=True,
                    max_length=args.max_length, padding=False if grouped else "max_length")
    columns = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    columns["label"] = [names.index(str(r["label"])) for r in records]
    if grouped:
        columns["length"] = [len(x) for x in enc["input_ids"]]
    train_set = datasets.Dataset.from_dict(columns)
    targs = TrainingArguments(
        output_dir=args.workdir, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0, num_train_epochs=1,
        seed=args.seed, use_cpu=True, save_strategy="no", report_to="none", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, train_sampling_strategy="group_by_length" if grouped else "random",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_set, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer) if grouped else default_data_collator)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    return {"n": len(records), "seconds": seconds, "trainer_samples_per_second": out.metrics.get("train_samples_per_second"),
            "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__
            + f" ({targs.optim})", "threads": torch.get_num_threads(), "loss": out.training_loss}


# -- parent -------------------------------------------------------------------------------------


def run_measured(cmd: list[str]) -> tuple[int, int, str, str, float]:
    """Run `cmd`; its exit status, peak RSS (KiB, from its own rusage), stdout, stderr and wall time."""
    t0 = time.monotonic()
    with open(os.devnull, "rb") as null_in:
        proc = subprocess.Popen(cmd, stdin=null_in, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        # communicate() reaps the child with waitpid; wait4 first would deadlock on full pipes, so
        # read the pipes in threads and reap with wait4 to get this child's own rusage.
        import threading

        bufs: dict[str, bytes] = {}
        readers = [threading.Thread(target=lambda s=s, n=n: bufs.__setitem__(n, s.read()))
                   for s, n in ((proc.stdout, "out"), (proc.stderr, "err"))]
        for t in readers:
            t.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join()
    return (proc.returncode, int(usage.ru_maxrss), bufs["out"].decode(), bufs["err"].decode(), time.monotonic() - t0)


def run_xlt(args: argparse.Namespace, data: Path, work: Path) -> dict:
    out = work / "xlt.ckpt"
    cmd = [sys.executable, "-m", "xlt", "teach", str(data), "--model", args.model_name, "--freeze-embeddings",
           "--epochs", "1", "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--lr", str(args.lr), "--warmup", "0.1", "--weight-decay", "0.01", "--seed", str(args.seed),
           "--device", "cpu", "--save-every", "0", "--log-every", "1000000", "--out", str(out), "--force", "--quiet"]
    rc, rss, _, err, wall = run_measured(cmd)
    if rc != 0:
        raise SystemExit(f"xlt teach failed:\n{err[-3000:]}")
    training = json.loads((out / "xlt.json").read_text(encoding="utf-8"))["training"]
    return {"n": training["examples_seen"], "seconds": training["train_seconds"], "rss_kib": rss, "wall": wall,
            "rate": training["examples_per_second"]}


def run_trainer(side: str, args: argparse.Namespace, data: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--input", str(data), "--model", args.model,
           "--workdir", str(work / side), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--lr", str(args.lr), "--seed", str(args.seed)]
    rc, rss, out, err, wall = run_measured(cmd)
    if rc != 0:
        raise SystemExit(f"{side} child failed:\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "rss_kib": rss, "wall": wall, "rate": res["n"] / res["seconds"]}


from _machine import machine  # noqa: E402  (benchmarks run as scripts: their folder is on sys.path)


def versions() -> str:
    import accelerate
    import datasets
    import torch
    import transformers

    import xlt

    return (f"xlt {xlt.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"accelerate {accelerate.__version__}, datasets {datasets.__version__}")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000, help="English NLI records (half MNLI, half SNLI)")
    ap.add_argument("--model-name", default="me5-small", help="the xlt model name; the Trainer sides load its resolved dir")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {', '.join(SIDES)}")
    ap.add_argument("--workdir", default=os.environ.get("XLT_BENCH_DIR", "/tmp/xlt-bench-train"))
    ap.add_argument("--child", choices=SIDES[1:])
    ap.add_argument("--input")
    ap.add_argument("--model")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_trainer(args)))
        return

    from xlt.models import resolve_model

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := set(sides) - set(SIDES):
        raise SystemExit(f"--sides: unknown {', '.join(sorted(unknown))} (choose from {', '.join(SIDES)})")
    started = time.monotonic()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    args.model = resolve_model(args.model_name)
    data = work / f"nli-en-{args.records}.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for rec in nli_records(args.records):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"machine: {machine()}", flush=True)
    print(f"versions: {versions()}", flush=True)
    print(f"model: {args.model_name} ({args.model}), word embeddings frozen; {args.records} records "
          f"(MNLI dev-matched + SNLI dev); batch {args.batch_size}, max length {args.max_length}, AdamW lr {args.lr}, "
          f"1 epoch, seed {args.seed}; {load()}", flush=True)

    labels = {"xlt": "xlt teach", "trainer-maxlen": "Trainer max-length", "trainer-grouped": "Trainer grouped"}
    results: dict[str, dict] = {}
    for side in sides:
        results[side] = run_xlt(args, data, work) if side == "xlt" else run_trainer(side, args, data, work)
        r = results[side]
        extra = f", {r['optimizer']}" if "optimizer" in r else ""
        print(f"{labels[side]:19s}: {r['rate']:7.2f} examples/s ({r['n']} examples in {r['seconds']:.1f} s of training, "
              f"{r['wall']:.0f} s wall{extra}); peak RSS {r['rss_kib'] / 1024:.0f} MiB; {load()}", flush=True)
    if "xlt" in results:
        for side, target in (("trainer-maxlen", 2.0), ("trainer-grouped", 1.1)):
            if side in results:
                ratio = results["xlt"]["rate"] / results[side]["rate"]
                print(f"ratio xlt / {labels[side]}: {ratio:.2f}x (target >= {target}x)", flush=True)
    print(f"benchmark time: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
