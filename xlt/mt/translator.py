"""A CTranslate2 translator with its Hugging Face tokenizer and the model's language tokens."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import xlt.mt.langs as L
from xlt import log
from xlt.ct2 import check_threads, choose_compute_type, intra_threads, resolve_device
from xlt.errors import UsageError, XltError
from xlt.mt.model import ModelSource, ensure_ct2, read_meta

#: Tokenizer class name (prefix) -> model family; the family decides the language tokens.
FAMILIES = (("Marian", "marian"), ("M2M100", "m2m100"), ("Nllb", "nllb"), ("MBart", "mbart"))

#: Decoding defaults shared by the library and the CLI.
DEFAULT_BEAM_SIZE = 2
DEFAULT_MAX_LENGTH = 256
DEFAULT_BATCH_TOKENS = 2048
DEFAULT_BATCH_SIZE = 64
#: The compute types on GPU when none is given, best first: int8 weights with float16 math.
FAST_ON_GPU = ("int8_float16", "float16", "float32")
#: Without a limit in the model's metadata (a CTranslate2 dir not converted by xlt).
FALLBACK_INPUT_LIMIT = 1024


@dataclass(frozen=True)
class Decoding:
    """How to search: beam search (`beam_size`, `num_hypotheses` best) or random sampling
    (`sampling_topk` != 1 with `beam_size` 1, `num_hypotheses` samples). Lengths count the
    translation's tokens (not the target-language token a multilingual model starts with)."""

    beam_size: int = DEFAULT_BEAM_SIZE
    num_hypotheses: int = 1
    sampling_topk: int = 1
    temperature: float = 1.0
    max_length: int = DEFAULT_MAX_LENGTH
    min_length: int = 0

    @property
    def sampling(self) -> bool:
        return self.sampling_topk != 1

    def check(self) -> None:
        if self.beam_size < 1:
            raise UsageError(f"--beam-size must be >= 1, not {self.beam_size}")
        if self.num_hypotheses < 1:
            raise UsageError(f"--num-hypotheses must be >= 1, not {self.num_hypotheses}")
        if self.sampling_topk < 0:
            raise UsageError(f"--sampling-topk must be >= 0 (0: sample from the whole vocabulary), not {self.sampling_topk}")
        if not self.temperature > 0:
            raise UsageError(f"--temperature must be > 0, not {self.temperature}")
        if self.max_length < 1:
            raise UsageError(f"--max-length must be >= 1, not {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise UsageError(f"--min-length must be between 0 and --max-length ({self.max_length}), not {self.min_length}")
        if self.sampling and self.beam_size != 1:
            raise UsageError("--sampling-topk samples one token at a time: use it with --beam-size 1")
        if not self.sampling and self.num_hypotheses > self.beam_size:
            raise UsageError(
                f"--num-hypotheses {self.num_hypotheses} needs --beam-size >= {self.num_hypotheses} "
                "(the n best of beam search) or sampling (--sampling-topk K)"
            )


def load_tokenizer(path: str) -> Any:
    """The tokenizer saved in `path`: the class its tokenizer_config.json names (imported alone,
    which keeps torch out of translation runs), else AutoTokenizer."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_warning() if log.state.verbose else transformers.utils.logging.set_verbosity_error()
    name = None
    config = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as fh:
                name = json.load(fh).get("tokenizer_class")
        except (OSError, ValueError, AttributeError):
            name = None
    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer: "Recommended: pip install sacremoses"
        try:
            if cls is not None and hasattr(cls, "from_pretrained"):
                return cls.from_pretrained(path)
            return transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise XltError(f"cannot load the tokenizer in {path}: {exc}") from None


class Translator:
    """A loaded model: CTranslate2 for the network, the Hugging Face tokenizer for the text.

    Use `load_translator` to make one. `translate_texts` is the simple entry point; the record
    pipeline (`xlt.mt.translate_records`) uses `encode` / `submit` / `decode` to overlap
    tokenization with translation.
    """

    def __init__(self, ct2_dir: str, *, source: ModelSource | None = None, device: str = "cpu",
                 device_index: int = 0, compute_type: str = "int8", threads: int = 0, seed: int | None = None) -> None:
        import ctranslate2

        if seed is not None:
            # CTranslate2's worker thread keeps its own sampling generator, seeded from this global
            # seed when it first samples; a later set_random_seed does not reset it.
            ctranslate2.set_random_seed(seed)

        self.path = ct2_dir
        self.name = source.spec if source else ct2_dir
        self.device = device
        self.compute_type = compute_type
        self.threads = intra_threads(threads)
        try:
            self.ct2 = ctranslate2.Translator(ct2_dir, device=device, device_index=device_index,
                                              compute_type=compute_type, intra_threads=self.threads, inter_threads=1)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"--model {self.name}: CTranslate2 cannot load it as a translation model: {exc}") from None
        self.tokenizer = load_tokenizer(ct2_dir)
        cls = type(self.tokenizer).__name__
        self.family = next((fam for prefix, fam in FAMILIES if cls.startswith(prefix)), "plain")
        meta = read_meta(ct2_dir)
        limit = meta.get("max_input_length")
        if not isinstance(limit, int) or limit <= 0:
            limit = getattr(self.tokenizer, "model_max_length", 0)
            limit = limit if isinstance(limit, int) and 0 < limit < 100_000 else FALLBACK_INPUT_LIMIT
        #: Longest source (in tokens, special tokens included) the model takes; longer ones are truncated.
        self.max_input_length: int = limit
        self._known: list[str] | None = None
        self._codes: dict[str, str | None] = {}

    # -- languages ---------------------------------------------------------------------------

    def known_codes(self) -> list[str]:
        """The language codes/tokens the model itself knows (empty for bilingual models)."""
        if self._known is None:
            tok = self.tokenizer
            if self.family == "m2m100":
                self._known = list(getattr(tok, "lang_code_to_token", {}))
            elif self.family == "marian":
                self._known = list(getattr(tok, "supported_language_codes", []) or [])
            elif self.family in ("nllb", "mbart"):
                check = L.is_nllb_code if self.family == "nllb" else L.is_mbart_code
                self._known = sorted(t for t in tok.get_vocab() if check(t))
            else:
                self._known = []
        return self._known

    def model_code(self, lang: str) -> str | None:
        """The model's code for `lang` (ISO 639-1 or the model's own form), None if unknown."""
        if lang not in self._codes:
            known = self.known_codes()
            if self.family == "m2m100":
                code = lang if lang in known else None
            elif self.family == "nllb":
                code = L.nllb_code(lang)
                code = code if code in known else None
            elif self.family == "mbart":
                code = L.mbart_code(lang, known)
            elif self.family == "marian" and known:
                code = L.marian_code(lang, known)
            else:
                code = lang
            self._codes[lang] = code
        return self._codes[lang]

    def _pair(self) -> tuple[str | None, str | None]:
        # A bilingual OPUS-MT model's tokenizer_config.json says its pair (source_lang/target_lang).
        def plain(value: Any) -> str | None:
            return value if isinstance(value, str) and len(value) == 2 and value.isalpha() else None

        if self.family != "marian":
            return None, None
        return plain(getattr(self.tokenizer, "source_lang", None)), plain(getattr(self.tokenizer, "target_lang", None))

    def language_problem(self, lang: str, *, side: str) -> str | None:
        """Why the model cannot take `lang` as its `side` ("source"/"target") language, or None."""
        if self.family == "marian":
            if side == "target" and self.known_codes():  # multi-target OPUS-MT: a >>xx<< token picks it
                return None if self.model_code(lang) else self._unknown(lang, side)
            src, tgt = self._pair()
            fixed = src if side == "source" else tgt
            if fixed and lang != fixed:
                return f"{side} language {lang!r}: model {self.name} translates {src or '?'} -> {tgt or '?'}"
            return None
        if self.family in ("m2m100", "nllb", "mbart") and self.model_code(lang) is None:
            return self._unknown(lang, side)
        return None

    def _unknown(self, lang: str, side: str) -> str:
        known = self.known_codes()
        shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30 else "")
        hint = " (ISO 639-1 codes are mapped to NLLB codes, e.g. fr -> fra_Latn)" if self.family == "nllb" else ""
        return f"{side} language {lang!r}: model {self.name} ({self.family}) has no such language{hint}; it knows: {shown}"

    def target_prefix(self, tgt: str) -> list[str]:
        """The tokens the decoder is forced to start with (the target-language token)."""
        if self.family in ("m2m100", "nllb", "mbart"):
            code = self.model_code(tgt)
            if code is None:
                raise UsageError(self._unknown(tgt, "target"))
            return [self.tokenizer.lang_code_to_token[code]] if self.family == "m2m100" else [code]
        return []

    # -- text <-> tokens ---------------------------------------------------------------------

    def encode(self, texts: list[str], *, src: str, tgt: str) -> tuple[list[list[str]], int]:
        """Source tokens for `texts` (one tokenizer call for the list), with the model's language
        tokens; texts over `max_input_length` tokens are truncated. Returns (tokens, truncated)."""
        tok = self.tokenizer
        if self.family in ("m2m100", "nllb", "mbart"):
            code = self.model_code(src)
            if code is None:
                raise UsageError(self._unknown(src, "source"))
            if getattr(tok, "src_lang", None) != code:
                tok.src_lang = code  # the tokenizer adds the source-language token(s) itself
        elif self.family == "marian" and self.known_codes():
            prefix = self.model_code(tgt)
            if prefix is None:
                raise UsageError(self._unknown(tgt, "target"))
            texts = [f"{prefix} {t}" for t in texts]
        ids = tok(texts, add_special_tokens=True)["input_ids"]
        limit = self.max_input_length
        over = [i for i, x in enumerate(ids) if len(x) > limit]
        if over:
            cut = tok([texts[i] for i in over], add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
            for i, x in zip(over, cut):
                ids[i] = x
        return [tok.convert_ids_to_tokens(x) for x in ids], len(over)

    def submit(self, tokens: list[list[str]], *, tgt: str, decoding: Decoding, batch_tokens: int = DEFAULT_BATCH_TOKENS,
               batch_size: int = DEFAULT_BATCH_SIZE) -> list[Any]:
        """Start translating `tokens` (asynchronously): sorted by length into batches of at most
        `batch_tokens` padded tokens and `batch_size` sentences (`plan_batches`). Returns one
        CTranslate2 async result per input, in input order."""
        if not tokens:
            return []
        prefix = self.target_prefix(tgt)
        extra = len(prefix)
        # The decoder has as many positions as the encoder: cap the lengths there, never crash.
        longest = min(decoding.max_length + extra, self.max_input_length)
        shortest = min(decoding.min_length + extra, longest) if decoding.min_length else 0
        futures: list[Any] = [None] * len(tokens)
        for batch in plan_batches([len(t) for t in tokens], batch_tokens=batch_tokens, batch_size=batch_size):
            results = self.ct2.translate_batch(
                [tokens[i] for i in batch],
                target_prefix=[prefix] * len(batch) if prefix else None,
                asynchronous=True,
                beam_size=decoding.beam_size,
                num_hypotheses=decoding.num_hypotheses,
                sampling_topk=decoding.sampling_topk,
                sampling_temperature=decoding.temperature,
                max_decoding_length=longest,
                min_decoding_length=shortest,
                max_input_length=0,  # already truncated by `encode`, and counted
            )
            for i, result in zip(batch, results):
                futures[i] = result
        return futures

    def decode(self, hypotheses: list[list[str]], *, tgt: str) -> list[str]:
        """Target texts for CTranslate2's token lists (one batch_decode call)."""
        tok = self.tokenizer
        skip = len(self.target_prefix(tgt))
        if self.family == "m2m100":
            # transformers 5 no longer marks M2M-100's language tokens as special; drop them as
            # skip_special_tokens did before.
            langs = set(getattr(tok, "lang_token_to_id", {}))
            hypotheses = [[t for t in h[skip:] if t not in langs] for h in hypotheses]
        elif skip:
            hypotheses = [h[skip:] for h in hypotheses]
        ids = [tok.convert_tokens_to_ids(h) for h in hypotheses]
        return tok.batch_decode(ids, skip_special_tokens=True)

    # -- simple API ----------------------------------------------------------------------------

    def translate_texts(self, texts: list[str], *, src: str, tgt: str, beam_size: int = DEFAULT_BEAM_SIZE,
                        num_hypotheses: int = 1, sampling_topk: int = 1, temperature: float = 1.0,
                        max_length: int = DEFAULT_MAX_LENGTH, min_length: int = 0,
                        batch_tokens: int = DEFAULT_BATCH_TOKENS, batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[str]]:
        """Translate `texts` from `src` to `tgt`: for each text, `num_hypotheses` translations.

        Texts must not be empty; overlong ones are truncated to `max_input_length` tokens.
        """
        decoding = Decoding(beam_size, num_hypotheses, sampling_topk, temperature, max_length, min_length)
        decoding.check()
        for side, lang in (("source", src), ("target", tgt)):
            problem = self.language_problem(lang, side=side)
            if problem:
                raise UsageError(problem)
        tokens, _ = self.encode(list(texts), src=src, tgt=tgt)
        futures = self.submit(tokens, tgt=tgt, decoding=decoding, batch_tokens=batch_tokens, batch_size=batch_size)
        results = [r.result() for r in futures]
        flat = [h for r in results for h in pad_hypotheses(r.hypotheses, num_hypotheses)]
        strings = self.decode(flat, tgt=tgt)
        n = num_hypotheses
        return [strings[i * n:(i + 1) * n] for i in range(len(texts))]


def plan_batches(lengths: list[int], *, batch_tokens: int, batch_size: int = 0) -> list[list[int]]:
    """Indices of `lengths` sorted by length and cut into batches: at most `batch_tokens` padded
    tokens (sentences x longest, CTranslate2's rule) and, unless 0, `batch_size` sentences. The
    sentence cap bounds memory: the decoder's output layer holds sentences x vocabulary scores,
    so a token budget spent on many very short sentences would otherwise set the peak."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i])
        if current and ((len(current) + 1) * grown > batch_tokens or (batch_size and len(current) >= batch_size)):
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


def pad_hypotheses(hyps: list[list[str]], n: int) -> list[list[str]]:
    """Exactly `n` hypotheses (CTranslate2 returns n; keep the output strictly 1:n regardless)."""
    if len(hyps) >= n:
        return hyps[:n]
    return list(hyps) + [hyps[-1] if hyps else []] * (n - len(hyps))


def load_translator(model: str, *, device: str = "auto", compute_type: str | None = None, threads: int = 0,
                    seed: int | None = None) -> Translator:
    """Load `model` (a CTranslate2 dir, or a Hugging Face seq2seq model converted once into the
    cache) on `device`, with `compute_type` (default: int8 on CPU, int8_float16 on GPU) and
    `threads` CPU threads (0: all cores). `seed` makes sampling reproducible: the same calls on
    a translator loaded with the same seed give the same samples."""
    check_threads(threads)  # a bad --threads fails before the conversion
    dev, index = resolve_device(device)
    ctype = choose_compute_type(compute_type, dev, fast_on_gpu=FAST_ON_GPU)
    ct2_dir, source = ensure_ct2(model, quantization=ctype)
    return Translator(ct2_dir, source=source, device=dev, device_index=index, compute_type=ctype, threads=threads, seed=seed)
