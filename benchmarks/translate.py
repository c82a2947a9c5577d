"""Benchmark `xlt translate` against transformers `generate` and raw CTranslate2.

    nice -n 5 .venv/bin/python benchmarks/translate.py [--workdir DIR] [--sentences 2000] [--length 24]

Model: an OPUS-MT-shaped Marian (6+6 layers, d_model 512, 8 heads, FFN 2048, 58,101-entry
vocabulary, 512 positions) with random weights, and a real SentencePiece tokenizer trained on
the text of ../shared/data (see `build_model` for how the vocabulary reaches 58,101). Input:
real English sentences from ../shared/data. Every side decodes greedily, with the same batches
(`xlt.mt.translator.plan_batches`: length-sorted, `--batch-tokens` padded tokens, `--batch-size`
sentences at most) and exactly
`--length` output tokens per sentence (CTranslate2 min/max_decoding_length, transformers
min/max_new_tokens, `xlt translate --min-length/--max-length`), so all do the same work.

- xlt: the real CLI (`xlt translate`, int8) on a JSONL file, wall time of the whole process;
  "steady" subtracts the same command's time on a 1-record file (process start, imports, model
  load), leaving what grows with the input: JSONL, tokenization, batching, translation.
- CTranslate2: `Translator.translate_batch` on pre-tokenized input, int8, timed around the call.
- transformers: `generate` in float32 on the same length-sorted batches, timed around the calls,
  once (it is the slow side; `--hf-sentences` takes fewer sentences on a busy machine).
- Memory: peak RSS (GNU time's %M) of `xlt translate` on 20,000 records and on every 10th of
  them (2,000), output forced to `--memory-length` tokens (short, for time: memory is measured).

The machine may be shared: the CTranslate2 and xlt runs alternate for `--rounds` rounds and the
median of each is kept; the load average is printed with every figure.

Each measurement runs in its own child process. The model and data are built once into
`--workdir` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's tiny-model builder, at full size here

VOCAB = 58_101  # Helsinki-NLP/opus-mt-en-de's vocabulary size
SPM_VOCAB = 58_000


# -- data and model ---------------------------------------------------------------------------


def corpus_sentences() -> list[str]:
    """Every distinct text in ../shared/data (XNLI 15 languages, PAWS-X 7, MNLI, SNLI)."""
    seen: dict[str, None] = {}
    for path in sorted(DATA.glob("*/*.jsonl")):
        if path.name.endswith("meta.jsonl"):
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                for key in ("premise", "hypothesis", "sentence1", "sentence2"):
                    text = rec.get(key)
                    if isinstance(text, str) and text.strip():
                        seen.setdefault(text.strip(), None)
    return list(seen)


def english_sentences(n: int, *, start: list[str]) -> list[str]:
    """`n` distinct English sentences: XNLI dev first (premises and hypotheses), then MNLI, SNLI."""
    seen: dict[str, None] = {}
    for name in start:
        with open(DATA / name, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                for key in ("premise", "hypothesis"):
                    seen.setdefault(rec[key].strip(), None)
                    if len(seen) >= n:
                        return list(seen)
    raise SystemExit(f"only {len(seen)} distinct sentences in {start}")


def write_jsonl(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"s{i}", "lang": "en", "text": t}, ensure_ascii=False) + "\n")


def build_model(workdir: Path) -> tuple[Path, str]:
    """The HF model dir, and a line saying how its vocabulary was made."""
    model_dir = workdir / "opus-mt-shaped"
    note_file = workdir / "vocab-note.txt"
    if (model_dir / "model.safetensors").exists() and note_file.exists():
        return model_dir, note_file.read_text().strip()
    from test_mt_models import make_marian

    corpus = corpus_sentences()
    t0 = time.monotonic()
    make_marian(str(model_dir), source_lang="en", target_lang="de", d_model=512, layers=6, heads=8, ffn=2048,
                vocab_size=SPM_VOCAB, max_positions=512, corpus=corpus, model_vocab_size=VOCAB, init_std=0.02)
    with open(model_dir / "vocab.json", encoding="utf-8") as fh:
        vocab = json.load(fh)
    real = sum(1 for t in vocab if not t.startswith("<madeup"))
    note = (f"SentencePiece unigram trained on {len(corpus):,} distinct sentences of ../shared/data asked for "
            f"{SPM_VOCAB:,} pieces and made {real - 2:,}; the model's vocabulary is padded to {VOCAB:,} with unused "
            f"entries ({VOCAB - real - 1:,}), so embeddings and the output layer have OPUS-MT en-de's size "
            f"(built in {time.monotonic() - t0:.0f} s)")
    note_file.write_text(note + "\n")
    return model_dir, note


# -- children ---------------------------------------------------------------------------------


def child_ct2(args: argparse.Namespace) -> dict:
    import ctranslate2

    from xlt.mt.translator import plan_batches

    from xlt.mt.translator import load_tokenizer

    texts = [json.loads(line)["text"] for line in open(args.input, encoding="utf-8")]
    tok = load_tokenizer(args.ct2_dir)
    tokens = [tok.convert_ids_to_tokens(ids) for ids in tok(texts)["input_ids"]]
    tr = ctranslate2.Translator(args.ct2_dir, device="cpu", compute_type="int8", intra_threads=args.threads, inter_threads=1)
    batches = plan_batches([len(t) for t in tokens], batch_tokens=args.batch_tokens, batch_size=args.batch_size)
    t0 = time.perf_counter()
    pending = [tr.translate_batch([tokens[i] for i in b], asynchronous=True, beam_size=1, min_decoding_length=args.length,
                                  max_decoding_length=args.length, max_input_length=0) for b in batches]
    res = [r.result() for rs in pending for r in rs]
    seconds = time.perf_counter() - t0
    lengths = {len(r.hypotheses[0]) for r in res}
    return {"seconds": seconds, "n": len(texts), "out_lengths": sorted(lengths)}


def child_hf(args: argparse.Namespace) -> dict:
    import torch
    from transformers import MarianMTModel

    from xlt.mt.translator import plan_batches

    from xlt.mt.translator import load_tokenizer

    torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in open(args.input, encoding="utf-8")][: args.n]
    tok = load_tokenizer(args.hf_dir)
    model = MarianMTModel.from_pretrained(args.hf_dir, dtype=torch.float32).eval()
    ids = tok(texts)["input_ids"]
    lengths: set[int] = set()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches([len(x) for x in ids], batch_tokens=args.batch_tokens, batch_size=args.batch_size):
            enc = tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            out = model.generate(**enc, num_beams=1, do_sample=False, min_new_tokens=args.length,
                                 max_new_tokens=args.length)
            lengths.add(out.shape[1] - 1)  # minus the decoder start token
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": len(texts), "out_lengths": sorted(lengths)}


def run_child(mode: str, **kw) -> dict:
    argv = [sys.executable, __file__, "--child", mode]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_xlt(hf_dir: Path, inp: Path, out: Path, *, home: Path, length: int, batch_tokens: int, batch_size: int,
            threads: int) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `xlt translate` process, measured by GNU time (a
    small parent: a child forked from this big Python process would inherit its RSS high-water)."""
    if out.exists():
        out.unlink()
    stats = out.with_suffix(".time")
    argv = ["/usr/bin/time", "-o", str(stats), "-f", "%e %M",
            str(ROOT / ".venv" / "bin" / "xlt"), "translate", "-m", str(hf_dir), "--tgt", "de", "--beam-size", "1",
            "--min-length", str(length), "--max-length", str(length), "--batch-tokens", str(batch_tokens),
            "--batch-size", str(batch_size), "--threads", str(threads), "-q", "-o", str(out), str(inp)]
    proc = subprocess.run(argv, env={**os.environ, "XLT_HOME": str(home)}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"xlt translate failed: {proc.stderr}")
    seconds, rss = stats.read_text().split()[-2:]
    return float(seconds), int(rss)


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


# -- main -------------------------------------------------------------------------------------


def machine() -> list[str]:
    import ctranslate2
    import sentencepiece
    import torch
    import transformers

    import xlt

    from _machine import cpu_model, usable_cores

    model, usable = cpu_model(), usable_cores()
    return [
        f"machine: {model}; {os.cpu_count()} CPUs ({usable} usable); load average {os.getloadavg()[0]:.2f}; {platform.platform()}",
        f"versions: python {platform.python_version()}, xlt {xlt.__version__}, ctranslate2 {ctranslate2.__version__}, "
        f"transformers {transformers.__version__}, torch {torch.__version__}, sentencepiece {sentencepiece.__version__}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.environ.get("XLT_BENCH_DIR", "/tmp/xlt-bench-translate"))
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--hf-sentences", type=int, default=0,
                    help="sentences for the transformers side (0: all); fewer keeps a run on a busy machine short")
    ap.add_argument("--memory-records", type=int, default=20000)
    ap.add_argument("--length", type=int, default=16, help="output tokens per sentence, forced on every side")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two CTranslate2 sides (median kept)")
    ap.add_argument("--memory-length", type=int, default=2, help="forced output length in the memory runs (short: time)")
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="0: every usable core")
    ap.add_argument("--child", choices=["ct2", "hf"])
    ap.add_argument("--input")
    ap.add_argument("--ct2-dir")
    ap.add_argument("--hf-dir")
    ap.add_argument("--n", type=int, default=0)
    args = ap.parse_args()
    if args.child:
        result = child_ct2(args) if args.child == "ct2" else child_hf(args)
        print(json.dumps(result))
        return

    if not (DATA / "xnli" / "dev.en.jsonl").exists():
        raise SystemExit(f"{DATA} is absent")
    started = time.monotonic()
    threads = args.threads or len(os.sched_getaffinity(0))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    for line in machine():
        print(line, flush=True)

    hf_dir, note = build_model(work)
    print(f"model: Marian 6+6 layers, d_model 512, 8 heads, FFN 2048, vocab {VOCAB:,}, random weights; {note}", flush=True)
    from xlt.mt.model import ensure_ct2

    os.environ["XLT_HOME"] = str(home)
    t0 = time.monotonic()
    ct2_dir, _ = ensure_ct2(str(hf_dir), quantization="int8")
    print(f"conversion to CTranslate2 int8 (cached after the first run): {time.monotonic() - t0:.1f} s -> {ct2_dir}", flush=True)

    texts = english_sentences(max(args.sentences, args.memory_records), start=["xnli/dev.en.jsonl", "nli-en/mnli.dev_matched.en.jsonl", "nli-en/snli.dev.en.jsonl"])
    bench = work / f"bench-{args.sentences}.jsonl"
    one = work / "bench-1.jsonl"
    write_jsonl(bench, texts[: args.sentences])
    write_jsonl(one, texts[:1])
    print(f"input: {args.sentences:,} distinct English sentences from ../shared/data (XNLI dev first); output forced to "
          f"{args.length} tokens; greedy; the same batches on every side ({args.batch_tokens} padded tokens, "
          f"{args.batch_size} sentences at most, by xlt.mt.translator.plan_batches); {threads} threads", flush=True)

    common = dict(length=args.length, batch_tokens=args.batch_tokens, batch_size=args.batch_size, threads=threads)
    # The machine is shared and noisy (+-15 % between identical runs): alternate the two
    # CTranslate2 sides for a few rounds and take each one's median.
    raws, fulls, fixeds = [], [], []
    for _ in range(args.rounds):
        raws.append(run_child("ct2", input=bench, ct2_dir=ct2_dir, **common))
        fulls.append(run_xlt(hf_dir, bench, work / "out.jsonl", home=home, **common)[0])
        fixeds.append(run_xlt(hf_dir, one, work / "out-1.jsonl", home=home, **common)[0])
    raw = sorted(raws, key=lambda r: r["seconds"])[len(raws) // 2]
    full, fixed = statistics.median(fulls), statistics.median(fixeds)
    steady = full - fixed
    rounds = f"median of {args.rounds}: " if args.rounds > 1 else ""
    raw_times = ", ".join(f"{r['seconds']:.1f}" for r in raws)
    xlt_times = ", ".join(f"{t:.1f}" for t in fulls)
    print(f"ctranslate2 translate_batch (int8, pre-tokenized): {raw['n'] / raw['seconds']:.1f} sentences/s "
          f"({rounds}{raw_times} s; output lengths {raw['out_lengths']}; {load()})", flush=True)
    n_out = sum(1 for _ in open(work / "out.jsonl", encoding="utf-8"))
    assert n_out == args.sentences, n_out
    print(f"xlt translate (int8, CLI on JSONL): {args.sentences / steady:.1f} sentences/s steady "
          f"({full:.1f} s for the file - {fixed:.1f} s for a 1-record file; {rounds}{xlt_times} s); "
          f"{args.sentences / full:.1f} sentences/s end to end; {load()}", flush=True)

    hf = run_child("hf", input=bench, hf_dir=hf_dir, n=min(args.hf_sentences or args.sentences, args.sentences), **common)
    subset = "" if hf["n"] == args.sentences else f" on the first {hf['n']} sentences"
    print(f"transformers generate (float32){subset}: {hf['n'] / hf['seconds']:.1f} sentences/s ({hf['seconds']:.1f} s; "
          f"output lengths {hf['out_lengths']}; {load()})", flush=True)

    xlt_rate, raw_rate, hf_rate = args.sentences / steady, raw["n"] / raw["seconds"], hf["n"] / hf["seconds"]
    print(f"ratio xlt / transformers: {xlt_rate / hf_rate:.2f}x (target >= 4x); end to end {args.sentences / full / hf_rate:.2f}x", flush=True)
    print(f"ratio xlt / raw ctranslate2: {xlt_rate / raw_rate:.2f}x (target >= 0.9x); end to end {args.sentences / full / raw_rate:.2f}x", flush=True)

    # The small input is every 10th record of the big one: the same sentences' distribution.
    small, big = work / "mem-small.jsonl", work / "mem-big.jsonl"
    step = max(1, args.memory_records // args.sentences)
    write_jsonl(small, texts[: args.memory_records][::step][: args.sentences])
    write_jsonl(big, texts[: args.memory_records])
    mem = dict(length=args.memory_length, batch_tokens=args.batch_tokens, batch_size=args.batch_size, threads=threads)
    t_small, rss_small = run_xlt(hf_dir, small, work / "mem-out-small.jsonl", home=home, **mem)
    t_big, rss_big = run_xlt(hf_dir, big, work / "mem-out-big.jsonl", home=home, **mem)
    print(f"peak RSS of xlt translate (output forced to {args.memory_length} tokens): {rss_small / 1024:.0f} MiB for "
          f"{args.sentences:,} records ({t_small:.0f} s), {rss_big / 1024:.0f} MiB for {args.memory_records:,} records "
          f"({t_big:.0f} s): ratio {rss_big / rss_small:.3f} (target <= 1.10); {load()}", flush=True)
    print(f"benchmark time: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
