"""`xlt translate`: machine-translate records' text fields with CTranslate2 (1:1, or 1:N)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from xlt import log
from xlt.cli import common
from xlt.io import iter_located, parse_shard, take_shard
from xlt.mt.records import DEFAULT_READ_AHEAD, RecordChecker, TranslateReport, translate_records
from xlt.mt.translator import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TOKENS, DEFAULT_BEAM_SIZE, DEFAULT_MAX_LENGTH, Decoding, load_translator
from xlt.records import parse_fields


def translate_cli(
    model: Annotated[str, typer.Option("--model", "-m", help="A CTranslate2 model dir (with its tokenizer files), or a Hugging Face seq2seq model dir or hub id (Marian/OPUS-MT, M2M-100, NLLB, mBART), converted once into $XLT_HOME/mt (default ~/.cache/xlt/mt).", show_default=False)],
    tgt: Annotated[str, typer.Option("--tgt", help="Target language (ISO 639-1, e.g. fr; mapped to the model's token: __fr__, fra_Latn, fr_XX, >>fra<<).", show_default=False)],
    files: common.Files = None,
    src: Annotated[Optional[str], typer.Option("--src", help="Source language of every record. Default: each record's `lang` (or `langs` per field).")] = None,
    fields: common.Fields = None,
    output: common.Output = None,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    shard: common.Shard = None,
    device: common.Device = "auto",
    compute_type: Annotated[Optional[str], typer.Option("--compute-type", help="CTranslate2 compute type (int8, int8_float32, int8_float16, float16, bfloat16, float32). Default: int8 on CPU, int8_float16 on GPU.")] = None,
    threads: Annotated[int, typer.Option("--threads", min=0, help="CPU threads for CTranslate2 (0: every core this process may use).")] = 0,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", min=1, help="Batch size in tokens (longest source x sentences, padding included).")] = DEFAULT_BATCH_TOKENS,
    batch_size: Annotated[int, typer.Option("--batch-size", min=0, help="Most sentences in a batch, with --batch-tokens (0: no limit). Bounds memory: the decoder scores sentences x vocabulary at each step, so very short sentences would otherwise pack into huge batches.")] = DEFAULT_BATCH_SIZE,
    read_ahead: Annotated[int, typer.Option("--read-ahead", min=1, help="Records read at a time, sorted by length into batches and restored to input order; bounds memory.")] = DEFAULT_READ_AHEAD,
    beam_size: Annotated[Optional[int], typer.Option("--beam-size", min=1, help=f"Beam size. Default {DEFAULT_BEAM_SIZE}: a narrow beam keeps most of beam search's quality gain over greedy decoding (1, the fastest) at a fraction of the cost of the usual 4-5; 1 when sampling.", show_default=False)] = None,
    num_hypotheses: Annotated[int, typer.Option("--num-hypotheses", min=1, help="Translations per record (1:N output, marked in `aug`): the n best of the beam (needs --beam-size >= N), or N samples with --sampling-topk.")] = 1,
    sampling_topk: Annotated[int, typer.Option("--sampling-topk", min=0, help="Sample each token from the K most likely (0: from all; 1: no sampling). For paraphrases by round trip.")] = 1,
    temperature: Annotated[float, typer.Option("--temperature", parser=common.finite, help="Sampling temperature (with --sampling-topk).")] = 1.0,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Longest translation, in tokens.")] = DEFAULT_MAX_LENGTH,
    min_length: Annotated[int, typer.Option("--min-length", min=0, help="Shortest translation, in tokens (the end token is not allowed before).")] = 0,
    seed: common.Seed = 0,
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Translate each record's text fields into --tgt (1:1; 1:N with --num-hypotheses N).

    The translation replaces the text fields and `lang`; the original goes to the `src` view
    (`"src": {"lang": "en", "premise": ..., "hypothesis": ...}`); `id`, `label` and other keys are
    kept; records come out in input order, streaming (memory does not grow with the input).
    Texts longer than the model's limit are truncated (counted in a warning).

    Tagging records (tokens + tags) lose their tags: the sentence (`text`, else the joined words)
    is translated, `tokens` become the translation's words (a rough UD-like splitter; characters
    for zh/ja/th), `tags` and `teacher` go, the original stays in `src`: unlabelled target text
    for a tagger teacher to soft-label (FreeTransfer-X). A translation without words is left out.

    Examples:

      xlt translate -m Helsinki-NLP/opus-mt-en-fr --tgt fr ../shared/data/xnli/dev.en.jsonl > dev.fr-mt.jsonl

      xlt translate -m nllb-200-distilled-600M --tgt de --shard 3/8 train.jsonl -o train.de.3-of-8.jsonl

      xlt translate -m m2m100_418M --tgt fr train.en.jsonl | xlt translate -m m2m100_418M --tgt en --beam-size 1 --sampling-topk 10 --num-hypotheses 4 -
    """
    with common.stage("translate", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        chosen = parse_fields(fields)
        shard_spec = parse_shard(shard)
        sampling = sampling_topk != 1
        beam = beam_size if beam_size is not None else (1 if sampling else DEFAULT_BEAM_SIZE)
        Decoding(beam, num_hypotheses, sampling_topk, temperature, max_length, min_length).check()
        translator = load_translator(model, device=device, compute_type=compute_type, threads=threads, seed=seed)
        checker = RecordChecker(translator, src=src, fields=chosen)
        located = iter_located(files, validate=checker, on_error=on_error, skipped=run.skipped)
        records = take_shard((rec for _, rec in located), shard_spec)
        report = TranslateReport()
        translated = translate_records(
            records, translator, tgt=tgt, src=src, beam_size=beam, num_hypotheses=num_hypotheses,
            sampling_topk=sampling_topk, temperature=temperature, max_length=max_length, min_length=min_length,
            batch_tokens=batch_tokens, batch_size=batch_size, read_ahead=read_ahead, checker=checker, report=report,
        )
        run.write(translated, output, progress="translate")
        run.after(lambda: _log_report(report))


def _log_report(report: TranslateReport) -> None:
    for line in report.warnings():
        log.warn(line)
    for line in report.lines():
        log.info(line)


def register(app: typer.Typer) -> None:
    app.command("translate")(translate_cli)
