"""Machine translation with CTranslate2: the library behind `xlt translate`.

Stable API (other stages, e.g. perturb's paraphrase method, call these; options keyword-only)::

    from xlt.mt import load_translator, translate_records

    tr = load_translator("Helsinki-NLP/opus-mt-en-fr", device="auto", compute_type=None, threads=0, seed=None)
    tr.translate_texts(["The cat sleeps."], src="en", tgt="fr")          # -> [["Le chat dort."]]
    tr.translate_texts(texts, src="en", tgt="fr", beam_size=1, num_hypotheses=4,
                       sampling_topk=10, temperature=0.8)               # 4 samples per text
    for rec in translate_records(records, tr, tgt="fr"):                 # streaming, input order
        ...

- `load_translator(model, *, device="auto", compute_type=None, threads=0, seed=None) -> Translator`:
  `model` is a CTranslate2 model directory (with the Hugging Face tokenizer files in it) or a
  Hugging Face seq2seq model (local dir or hub id: Marian/OPUS-MT, M2M-100, NLLB, mBART),
  converted once by `ctranslate2.converters.TransformersConverter` into `$XLT_HOME/mt/`
  (default `~/.cache/xlt/mt/`). `compute_type` None: int8 on CPU, int8_float16 on GPU.
  `threads` 0: every core this process may use. `seed`: reproducible sampling.
- `Translator.translate_texts(texts, *, src, tgt, beam_size=2, num_hypotheses=1,
  sampling_topk=1, temperature=1.0, max_length=256, min_length=0, batch_tokens=2048,
  batch_size=64) -> list[list[str]]`: `num_hypotheses` translations per text (n-best of beam
  search, or samples when `sampling_topk` != 1, which needs `beam_size=1`). Languages are plain
  ISO 639-1 codes (`fr`); the model's own tokens (`__fr__`, `fra_Latn`, `fr_XX`, `>>fra<<`) are
  derived from them (`xlt.mt.langs`). Texts longer than `Translator.max_input_length` tokens are truncated.
  Batches: sorted by length, at most `batch_tokens` padded tokens and `batch_size` sentences.
- `translate_records(records, translator, *, tgt, src=None, fields=None, beam_size=2,
  num_hypotheses=1, sampling_topk=1, temperature=1.0, max_length=256, min_length=0,
  batch_tokens=2048, batch_size=64, read_ahead=1024, checker=None, report=None) -> Iterator[dict]`:
  record-level translation with the `src` view and `aug` marks (see its docstring); memory is
  bounded by `read_ahead` records. Tagging records (`tokens` + `tags`) come out as unlabelled
  target text: `text`, `tokens` by `xlt.tagging.words.split_words`, no `tags`, the original in `src`.

Errors are `xlt.errors` types: `UsageError` (unknown language for the model, bad options, a
directory that is not a model), `RecordError` (a record without text or source language).
"""

from __future__ import annotations

from xlt.mt.records import RecordChecker, TranslateReport, translate_records
from xlt.mt.translator import Decoding, Translator, load_translator

__all__ = ["Decoding", "RecordChecker", "TranslateReport", "Translator", "load_translator", "translate_records"]
