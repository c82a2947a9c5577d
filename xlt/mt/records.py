"""Translate records: the streaming pipeline behind `xlt translate`.

Records are read `read_ahead` at a time; each chunk's texts are tokenized in one call per source
language, sorted by length into batches (bounded in tokens and in sentences) and handed to
CTranslate2 asynchronously, and while it translates, the next chunk is read and tokenized. Results come back in
input order. At most two chunks are in memory, whatever the input size.

Tagging records (`tokens` + `tags`, `xlt.records.TAGGING`) cannot carry their tags through MT: the
translation has other words in another order. Their sentence is translated (`text`, else the
words joined by `xlt.tagging.words.join_words`), and the output record is unlabelled target
text for a teacher to soft-label word by word (FreeTransfer-X's route, no label projection):
`text` the translation, `tokens` its words by `xlt.tagging.words.split_words(text, tgt)`, `lang`
the target, no `tags` and no `teacher` (per-word outputs of the source words fit no target
word), and the original in `src` (`{"lang", "text", "tokens", "tags"}`, what it had of them).
A translation with no words at all cannot be a tagging record: it is left out and counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from xlt.errors import UsageError
from xlt.mt.translator import (DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TOKENS, DEFAULT_BEAM_SIZE, DEFAULT_MAX_LENGTH,
                               Decoding, Translator, pad_hypotheses)
from xlt.records import Record, RecordError, check_text, infer_fields, is_tagging

DEFAULT_READ_AHEAD = 1024


@dataclass
class TranslateReport:
    """What a run did, for the summary on stderr."""

    records: int = 0  # input records translated
    written: int = 0  # output records (records * num_hypotheses)
    texts: int = 0
    truncated: int = 0
    max_input_length: int = 0
    seconds: float = 0.0
    langs: dict[str, int] = field(default_factory=dict)  # source language -> texts
    wordless: int = 0  # tagging translations without a word, left out

    def lines(self) -> list[str]:
        rate = f", {self.records / self.seconds:,.1f} records/s" if self.seconds > 0 and self.records else ""
        pairs = ", ".join(f"{k}: {v}" for k, v in self.langs.items())
        out = [f"translated {self.records} record(s) ({self.texts} text(s){'; ' + pairs if pairs else ''}) "
               f"into {self.written} record(s) in {self.seconds:.1f} s{rate}"]
        return out

    def warnings(self) -> list[str]:
        out = []
        if self.truncated:
            out.append(f"{self.truncated} text(s) longer than the model's limit of {self.max_input_length} tokens were truncated")
        if self.wordless:
            out.append(f"{self.wordless} translation(s) of tagging records had no words: left out (a tagging record "
                       "needs at least one word)")
        return out


class RecordChecker:
    """Validates a record for translation (text fields present and not empty, a source language
    the model knows) and says each field's source language. Use it as `validate=` of
    `xlt.io.iter_located` so bad records get their FILE:LINE."""

    def __init__(self, translator: Translator, *, src: str | None = None, fields: Sequence[str] | None = None) -> None:
        self.translator = translator
        self.src = src
        self.fields: tuple[str, ...] | None = tuple(fields) if fields else None
        if src is not None:
            problem = translator.language_problem(src, side="source")
            if problem:
                raise UsageError(problem)

    def __call__(self, record: Record) -> None:
        if self.fields is None:
            self.fields = infer_fields(record)
        check_text(record, self.fields)
        for lang in set(self.source_langs(record)):
            problem = self.translator.language_problem(lang, side="source")
            if problem:
                raise RecordError(problem)

    def source_langs(self, record: Record) -> tuple[str, ...]:
        assert self.fields is not None
        if self.src is not None:
            return (self.src,) * len(self.fields)
        per_field = record.get("langs") if isinstance(record.get("langs"), dict) else {}
        out = []
        for f in self.fields:
            lang = per_field.get(f, record.get("lang"))
            if lang is None:
                raise RecordError('missing field "lang" (the source language; or give --src)')
            if not isinstance(lang, str) or not lang.strip():
                raise RecordError('field "lang" must be a non-empty string (an ISO 639-1 code)')
            out.append(lang)
        return tuple(out)


@dataclass
class _Chunk:
    records: list[Record]
    langs: list[tuple[str, ...]]
    futures: list[Any]


def translate_records(
    records: Iterable[Record],
    translator: Translator,
    *,
    tgt: str,
    src: str | None = None,
    fields: Sequence[str] | None = None,
    beam_size: int = DEFAULT_BEAM_SIZE,
    num_hypotheses: int = 1,
    sampling_topk: int = 1,
    temperature: float = 1.0,
    max_length: int = DEFAULT_MAX_LENGTH,
    min_length: int = 0,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    read_ahead: int = DEFAULT_READ_AHEAD,
    checker: RecordChecker | None = None,
    report: TranslateReport | None = None,
) -> Iterator[Record]:
    """Translate the text fields of `records` into `tgt`, yielding records in input order.

    Each output record is the input record (id, label, unknown keys kept) with its text fields
    translated, `lang` set to `tgt`, and the original as `src` (`{"lang": <source>, <fields>}`;
    an existing `src` is replaced, `langs` moves into it). With `num_hypotheses` N > 1 (or
    sampling) each record gives N records marked `aug: {"method": "translate", "hypothesis": i}`
    (i = 0..N-1), consecutive. The source language is `src` or each record's `lang` (or `langs`
    per field). Raises `RecordError` for a record that cannot be translated. Tagging records: see
    the module doc (their tags stay in `src`; a translation without words is left out).
    """
    decoding = Decoding(beam_size, num_hypotheses, sampling_topk, temperature, max_length, min_length)
    decoding.check()
    if batch_tokens < 1:
        raise UsageError(f"--batch-tokens must be >= 1, not {batch_tokens}")
    if batch_size < 0:
        raise UsageError(f"--batch-size must be >= 0 (0: no limit), not {batch_size}")
    if read_ahead < 1:
        raise UsageError(f"--read-ahead must be >= 1, not {read_ahead}")
    problem = translator.language_problem(tgt, side="target")
    if problem:
        raise UsageError(problem)
    if checker is None:
        checker = RecordChecker(translator, src=src, fields=fields)
    report = report if report is not None else TranslateReport()
    report.max_input_length = translator.max_input_length
    mark = decoding.num_hypotheses > 1 or decoding.sampling
    batching = (batch_tokens, batch_size)
    return _pipeline(iter(records), translator, checker, tgt, decoding, batching, read_ahead, mark, report)


def _pipeline(records: Iterator[Record], translator: Translator, checker: RecordChecker, tgt: str,
              decoding: Decoding, batching: tuple[int, int], read_ahead: int, mark: bool,
              report: TranslateReport) -> Iterator[Record]:
    start: float | None = None
    pending: _Chunk | None = None
    while True:
        chunk = list(islice(records, read_ahead))
        if chunk:
            start = start if start is not None else time.monotonic()
            job = _submit(chunk, translator, checker, tgt, decoding, batching, report)
        else:
            job = None
        if pending is not None:  # translated while `job` was read and tokenized
            yield from _finish(pending, translator, checker, tgt, decoding, mark, report)
        pending = job
        if job is None:
            break
    if start is not None:
        report.seconds = time.monotonic() - start


def _submit(chunk: list[Record], translator: Translator, checker: RecordChecker, tgt: str, decoding: Decoding,
            batching: tuple[int, int], report: TranslateReport) -> _Chunk:
    texts: list[str] = []
    langs: list[str] = []
    rec_langs: list[tuple[str, ...]] = []
    for rec in chunk:
        checker(rec)
        assert checker.fields is not None
        rl = checker.source_langs(rec)
        rec_langs.append(rl)
        for f, lang in zip(checker.fields, rl):
            texts.append(tagging_source(rec) if is_tagging(checker.fields) else rec[f])
            langs.append(lang)
    tokens: list[list[str]] = [[] for _ in texts]
    by_lang: dict[str, list[int]] = {}
    for i, lang in enumerate(langs):
        by_lang.setdefault(lang, []).append(i)
    for lang, idx in by_lang.items():
        toks, cut = translator.encode([texts[i] for i in idx], src=lang, tgt=tgt)
        for i, t in zip(idx, toks):
            tokens[i] = t
        report.truncated += cut
        report.langs[lang] = report.langs.get(lang, 0) + len(idx)
    report.texts += len(texts)
    futures = translator.submit(tokens, tgt=tgt, decoding=decoding, batch_tokens=batching[0], batch_size=batching[1])
    return _Chunk(chunk, rec_langs, futures)


def _finish(chunk: _Chunk, translator: Translator, checker: RecordChecker, tgt: str, decoding: Decoding,
            mark: bool, report: TranslateReport) -> Iterator[Record]:
    n = decoding.num_hypotheses
    flat = [h for fut in chunk.futures for h in pad_hypotheses(fut.result().hypotheses, n)]
    strings = translator.decode(flat, tgt=tgt)
    fields = checker.fields
    assert fields is not None
    nf = len(fields)
    tagging = is_tagging(fields)
    for j, (rec, rl) in enumerate(zip(chunk.records, chunk.langs)):
        report.records += 1
        for h in range(n):
            if tagging:
                out = tagging_translation(rec, strings[j * n + h], src=rl[0], tgt=tgt)
                if out is None:
                    report.wordless += 1
                    continue
                if mark:
                    out["aug"] = {"method": "translate", "hypothesis": h}
                report.written += 1
                yield out
                continue
            out = dict(rec)
            for k, f in enumerate(fields):
                out[f] = strings[(j * nf + k) * n + h]
            out["lang"] = tgt
            langs = out.pop("langs", None)
            view: dict[str, Any] = {"lang": rl[0] if len(set(rl)) == 1 else rec.get("lang", "-".join(rl))}
            if len(set(rl)) > 1:
                view["langs"] = dict(zip(fields, rl)) if not isinstance(langs, dict) else langs
            view.update({f: rec[f] for f in fields})
            out["src"] = view
            if mark:
                out["aug"] = {"method": "translate", "hypothesis": h}
            report.written += 1
            yield out


def tagging_source(record: Record) -> str:
    """The sentence of a tagging record to translate: its `text`, else its words joined."""
    from xlt.tagging.words import join_words

    text = record.get("text")
    return text if isinstance(text, str) and text.strip() else join_words(record["tokens"])


def tagging_translation(record: Record, translation: str, *, src: str, tgt: str) -> Record | None:
    """The output record of a tagging record translated into `tgt` (see the module doc), in the
    key order of the input with `text` before `tokens`; None when the translation has no words."""
    from xlt.tagging.words import split_words

    words = split_words(translation, tgt)
    if not words:
        return None
    out: Record = {}
    for key, value in record.items():
        if key == "tokens":
            out["text"] = translation
            out["tokens"] = words
        elif key in ("text", "tags", "teacher", "src", "langs"):
            continue
        else:
            out[key] = value
    out["lang"] = tgt
    view: Record = {"lang": src}
    view.update({k: record[k] for k in ("text", "tokens", "tags") if record.get(k) is not None})
    out["src"] = view
    return out
