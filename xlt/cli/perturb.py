"""`xlt perturb`: augmented copies of records for robust training (1:N, streaming)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from xlt.cli import common
from xlt.errors import UsageError
from xlt.io import parse_shard
from xlt.records import is_tagging, parse_fields

Method = Annotated[str, typer.Option("--method", help="synonym (RS-DA: synonym replacement), swap (RS-syntax: adjacent word swaps) or paraphrase (round-trip translation).")]


def perturb_cli(
    files: common.Files = None,
    method: Method = "synonym",
    copies: Annotated[int, typer.Option("--copies", help="Augmented copies per record (the paper: 3 for XNLI, 10 for PAWS-X).")] = 1,
    no_original: Annotated[bool, typer.Option("--no-original", help="Write only the augmented copies, not the original record (copy 0).")] = False,
    synonyms: Annotated[Optional[list[str]], typer.Option("--synonyms", help="synonym: a synonym set, FILE (every language) or LANG=FILE; repeatable. A JSON object (word -> list of neighbours) or text lines `word neighbour...` (PPDB pair files too).")] = None,
    max_rate: Annotated[Optional[float], typer.Option("--max-rate", parser=common.finite, help="synonym: replace at most this share of a text's words (floor(rate * words)). Default 1: no cap.")] = None,
    keep_stopwords: Annotated[Optional[bool], typer.Option("--keep-stopwords/--replace-stopwords", help="synonym: keep stop words as they are (default; a built-in English list, --stopwords for others) or replace them too (the paper's setting).")] = None,
    stopwords: Annotated[Optional[list[str]], typer.Option("--stopwords", help="synonym: a stop word list, FILE (every language) or LANG=FILE, one word a line; repeatable. Replaces the built-in list for that language.")] = None,
    p: Annotated[Optional[float], typer.Option("--p", parser=common.finite, help="swap: probability of swapping each adjacent word pair. Default 0.1.")] = None,
    via: Annotated[Optional[str], typer.Option("--via", help="paraphrase: the pivot language of the round trip (ISO 639-1).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="paraphrase: the MT model, as for `xlt translate` (a multilingual one does both directions).")] = None,
    back_model: Annotated[Optional[str], typer.Option("--back-model", help="paraphrase: a second MT model for the way back (pivot -> source), e.g. the reverse OPUS-MT pair. Default: --model.")] = None,
    sampling_topk: Annotated[Optional[int], typer.Option("--sampling-topk", help="paraphrase: sample the forward translations from the K most likely tokens (0: all; 1: the n best of beam search instead). Default 10.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", parser=common.finite, help="paraphrase: sampling temperature. Default 1.")] = None,
    beam_size: Annotated[Optional[int], typer.Option("--beam-size", help="paraphrase: beam of the way back (and of the forward n best with --sampling-topk 1). Default 2.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="paraphrase: records per translation call. Default 64.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="paraphrase: auto, cpu, cuda or cuda:N. Default auto.")] = None,
    compute_type: Annotated[Optional[str], typer.Option("--compute-type", help="paraphrase: CTranslate2 compute type. Default: int8 on CPU, int8_float16 on GPU.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=0, help="paraphrase: CPU threads for CTranslate2 (0: all cores). Default 0.")] = None,
    seed: common.Seed = 0,
    fields: common.Fields = None,
    shard: common.Shard = None,
    output: common.Output = None,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Write each record followed by COPIES perturbed copies of it (1:N, streaming).

    Output per input record: the original (`aug.copy` 0; left out with --no-original), then
    copies 1..m, each the input record (id, label, lang and other keys kept) with its text fields
    perturbed and `aug` saying what was done, e.g. {"method": "synonym", "copy": 1, "replaced": 3}.
    Deterministic for a --seed and input order.

    synonym: every word becomes a random member of {word} + its synonyms (case and punctuation
    kept; stop words kept unless --replace-stopwords). A record whose language has no synonym set
    is written once, unchanged (warned about and counted). swap: each adjacent word pair is
    swapped with probability --p. Scripts without spaces (zh, ja, th, ...) use characters as words.
    paraphrase: each copy is a sampled translation into --via translated back with --model.

    Tagging records (tokens + tags): swap moves whole words with their tags (and per-word teacher
    outputs), synonym replaces words by one-word synonyms keeping each position's tag; copies
    drop the sentence `text`, which no longer matches. paraphrase refuses them (exit 2).

    Example: xlt perturb --method synonym --copies 3 --synonyms en=counterfitted_neighbors.json mnli.en.jsonl | xlt teach - --model me5-small --out en-rs.ckpt
    """
    with common.stage("perturb", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        from xlt.augment.perturb import PerturbReport, log_report, perturb_records, refuse_tagging

        chosen = parse_fields(fields)
        if is_tagging(chosen):
            refuse_tagging(method, where="--fields tagging")  # before a model loads
        perturber = _method(method, synonyms=synonyms, max_rate=max_rate, keep_stopwords=keep_stopwords,
                            stopwords=stopwords, p=p, via=via, model=model, back_model=back_model,
                            sampling_topk=sampling_topk, temperature=temperature, beam_size=beam_size,
                            batch_size=batch_size, device=device, compute_type=compute_type, threads=threads, seed=seed)
        report = PerturbReport()
        records = perturb_records(
            files, perturber, copies=copies, original=not no_original, seed=seed, fields=chosen,
            shard=parse_shard(shard), on_error=on_error, skipped=run.skipped, report=report,
        )
        run.write(records, output)
        run.after(lambda: log_report(report))


def _method(method: str, *, synonyms: list[str] | None, max_rate: float | None, keep_stopwords: bool | None,
            stopwords: list[str] | None, p: float | None, via: str | None, model: str | None,
            back_model: str | None, sampling_topk: int | None, temperature: float | None, beam_size: int | None,
            batch_size: int | None, device: str | None, compute_type: str | None, threads: int | None,
            seed: int) -> Any:
    """The perturbation method of `--method` from its options; another method's option is an error."""
    from xlt.augment.perturb import METHODS, SwapMethod, SynonymMethod
    from xlt.augment.synonyms import BUILTIN_STOPWORDS, DEFAULT, load_synonyms, load_wordlist, parse_lang_specs

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    only = {
        "synonym": {"--synonyms": synonyms, "--max-rate": max_rate, "--stopwords": stopwords,
                    "--keep-stopwords/--replace-stopwords": keep_stopwords},
        "swap": {"--p": p},
        "paraphrase": {"--via": via, "--model": model, "--back-model": back_model, "--sampling-topk": sampling_topk,
                       "--temperature": temperature, "--beam-size": beam_size, "--batch-size": batch_size,
                       "--device": device, "--compute-type": compute_type, "--threads": threads},
    }
    for other, opts in only.items():
        given = [name for name, value in opts.items() if value is not None]
        if other != method and given:
            raise UsageError(f"{', '.join(given)}: only for --method {other}")
    if method == "swap":
        return SwapMethod(p=0.1 if p is None else p)
    if method == "paraphrase":
        return _paraphraser(via, model, back_model, sampling_topk=sampling_topk, temperature=temperature,
                            beam_size=beam_size, batch_size=batch_size, device=device,
                            compute_type=compute_type, threads=threads, seed=seed)
    sets = {lang: load_synonyms(path) for lang, path in parse_lang_specs(synonyms or [], "--synonyms").items()}
    stop: dict[str, frozenset[str]] = {}
    if keep_stopwords is False:
        if stopwords:
            raise UsageError("--stopwords and --replace-stopwords contradict each other")
    else:
        lists = {lang: load_wordlist(path) for lang, path in parse_lang_specs(stopwords or [], "--stopwords").items()}
        stop = {} if DEFAULT in lists else dict(BUILTIN_STOPWORDS)  # a list for every language replaces the built-in ones
        stop.update(lists)
    return SynonymMethod(sets, stop, max_rate=1.0 if max_rate is None else max_rate)


def _paraphraser(via: str | None, model: str | None, back_model: str | None, *, device: str | None,
                 compute_type: str | None, threads: int | None, seed: int, **decoding: object):
    from xlt.augment.paraphrase import ParaphraseMethod, check_decoding
    from xlt.mt import load_translator

    if not via or not model:
        raise UsageError("--method paraphrase needs --via LANG and --model MT")
    decoding = {k: v for k, v in decoding.items() if v is not None}
    check_decoding(**decoding)  # before loading (maybe converting) the models
    load = {"device": device or "auto", "compute_type": compute_type, "threads": threads or 0}
    translator = load_translator(model, **load)
    back = load_translator(back_model, **load) if back_model else None
    return ParaphraseMethod(translator, via, back=back, seed=seed, **decoding)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command("perturb")(perturb_cli)
