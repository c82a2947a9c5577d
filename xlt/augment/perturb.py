"""`perturb`: augmented copies of records, for robust training (Huang et al. 2021, "Improving
Zero-Shot Cross-Lingual Transfer Learning via Robust Training", EMNLP).

The paper treats the gap between a sentence's source- and target-language representations as a
perturbation and trains the classifier to tolerate perturbations. Randomized smoothing by data
augmentation needs copies of each training example that a smoothed classifier should label
alike; this module makes them:

- `SynonymMethod` (RS-DA): every word is replaced by a word drawn uniformly from its synonym set
  *including itself* (so with k neighbours a word changes with probability k/(k+1)); the paper
  uses m=3 copies for XNLI and m=10 for PAWS-X.
- `SwapMethod` (RS-syntax): each adjacent pair of words is swapped with probability p.
- `ParaphraseMethod` (`xlt.augment.paraphrase`): round-trip translation through a pivot language.

Output (1:N, streaming, in input order): per input record the original first (`aug.copy` 0,
unless `original=False`), then `copies` augmented records (`aug.copy` 1..m). Every output record
is the input record (all keys, `id`/`label`/`lang` included) with its text fields replaced and
an `aug` object saying what was done, e.g. `{"method": "synonym", "copy": 2, "replaced": 3}`; an
`aug` already on the input is kept under `aug.from`. Randomness comes from one generator per
input record seeded by (`seed`, the record's index in the input), so output is deterministic
for a seed and input order, and `--shard K/N` outputs are exactly the shards of the full output.

Tagging records (`tokens` + `tags`, `xlt.records.TAGGING`) are perturbed word by word, and every
word keeps its tag:

- swap exchanges whole words of `tokens`, each moving with its tag and with its row of the
  per-word teacher outputs (`teacher.logits`, `teacher.probs`, `teacher.hidden`: one list per
  word); punctuation tokens (no letter or digit) stay in place, as in texts. A `teacher` whose
  outputs are not one list per word cannot follow the words: it is dropped from the copy
  (counted and warned about).
- synonym replaces a word by a one-word synonym (a neighbour holding a space is never used), so
  `tokens` and `tags` keep their length and each position its tag; the teacher outputs stay as
  they are, like a text record's label and teacher: the copy is what smoothing says deserves the
  original's labels.
- paraphrase rewrites the words, so the tags would not fit them: refused (`refuse_tagging`).

An augmented copy of a tagging record has no `text`: the sentence no longer matches its words
(`tokens` is the record; `xlt translate` joins the words when it needs a sentence). Copy 0, the
original, keeps its `text`.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from xlt import log
from xlt.augment.synonyms import DEFAULT, SynonymSet, for_lang
from xlt.augment.text import has_letter, match_case, split_units
from xlt.errors import UsageError
from xlt.io import SkipReport, iter_located
from xlt.records import Record, check_tags, check_text, field_langs, infer_fields, is_tagging

METHODS = ("synonym", "swap", "paraphrase")

#: Methods that cannot keep a tagging record's tags, and why (the one table the CLI and the
#: stream both read).
TAGGING_REFUSED: dict[str, str] = {
    "paraphrase": "a round trip through another language rewrites the words, so their tags would not fit "
                  "(use --method swap or synonym; or xlt translate, then soft-label the translation)",
}

#: A tagging record's teacher outputs with one entry per word (moved along with the words by swap).
PER_WORD_TEACHER_KEYS = ("logits", "probs", "hidden")


def refuse_tagging(method: str, *, where: str) -> None:
    """UsageError when `method` cannot perturb tagging records (`where`: FILE:LINE or the option)."""
    why = TAGGING_REFUSED.get(method)
    if why is not None:
        raise UsageError(f"{where}: --method {method} cannot perturb tagging records (tokens + tags): {why}")


@dataclass
class Item:
    """One input record on its way through a method."""

    index: int
    record: Record
    texts: tuple[str, ...]
    langs: tuple[str, ...]
    rng: random.Random
    #: a tagging record's words (its `tokens`; `texts` is then empty and `langs` its one language)
    words: list[str] | None = None


@dataclass
class Variant:
    """One augmented copy: new texts (one per field) and what was done (`changed` units). For a
    tagging record: its new `words`, and `order` when words moved (new position i holds the
    word, tag and teacher row of old position `order[i]`)."""

    texts: tuple[str, ...]
    changed: int
    extra: dict[str, Any] = field(default_factory=dict)
    words: list[str] | None = None
    order: list[int] | None = None


@dataclass
class PerturbReport:
    """Counts for the end-of-run report on stderr."""

    method: str = ""
    count_key: str = "changed"
    records_in: int = 0
    records_out: int = 0
    originals_out: int = 0
    copies_out: int = 0
    changed: int = 0  # replaced or swapped units over all augmented copies
    units_in_copies: int = 0  # words of the augmented copies, for the change rate
    # synonym coverage, counted once per input record and field
    candidates: int = 0
    covered: int = 0
    stopwords: int = 0
    missing: Counter = field(default_factory=Counter)
    by_lang: dict[str, list[int]] = field(default_factory=dict)  # lang -> [candidates, covered]
    passed: Counter = field(default_factory=Counter)  # lang the method cannot perturb -> fields left as they are
    reasons: dict[str, str] = field(default_factory=dict)  # lang -> why
    unchanged: int = 0  # records no field of which could be perturbed (written once, as copy 0)
    multiword: int = 0  # synonyms holding a space, never used for a tagging record's word
    teachers_dropped: int = 0  # tagging copies whose teacher outputs could not follow the words
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = []
        rate = f" in {self.seconds:.1f} s ({self.records_in / self.seconds:,.0f} records/s)" if self.seconds > 0 else ""
        out.append(
            f"read {self.records_in} record(s), wrote {self.records_out} "
            f"({self.originals_out} original, {self.copies_out} augmented){rate}"
        )
        if self.copies_out:
            per = self.changed / self.copies_out
            share = f", {self.changed / self.units_in_copies:.1%} of words" if self.units_in_copies else ""
            out.append(f"{self.method}: {per:.2f} {self.count_key} per augmented copy{share}")
        if self.candidates:
            out.append(
                f"synonym coverage: {self.covered / self.candidates:.1%} of {self.candidates} candidate words have "
                f"synonyms ({self.stopwords} stop word(s) kept as they are)"
            )
        if self.multiword:
            out.append(f"{self.multiword} multiword synonym(s) left out for tagging records "
                       "(a word's replacement is one word)")
        if self.missing:
            top = ", ".join(f"{w} ({n})" for w, n in self.missing.most_common(8))
            out.append(f"words without synonyms: {sum(self.missing.values())} ({len(self.missing)} distinct), most frequent: {top}")
        return out

    def pass_field(self, lang: str, reason: str) -> None:
        """Count a text field of language `lang` left unchanged because of `reason` (which names
        the language); warn the first time the language shows up."""
        if lang not in self.passed:
            log.warn(f"{reason}: its text passes unchanged")
            self.reasons[lang] = reason
        self.passed[lang] += 1

    def warnings(self) -> list[str]:
        out = []
        for lang, n in self.passed.items():
            out.append(f"{n} text field(s) passed unchanged: {self.reasons.get(lang, f'language {lang}')}")
        if self.unchanged:
            out.append(f"{self.unchanged} record(s) could not be perturbed at all: written once, unchanged, as copy 0")
        if self.teachers_dropped:
            out.append(f"{self.teachers_dropped} tagging cop(ies) lost their `teacher`: its outputs are not one list "
                       f"per word ({', '.join(PER_WORD_TEACHER_KEYS)}), so they could not move with the words")
        for lang, (cands, covered) in self.by_lang.items():
            if cands and not covered:
                out.append(f"language {lang}: none of {cands} candidate words has a synonym in its set (a no-op)")
        return out


class Method(Protocol):
    """A perturbation: `count_key` names what `Variant.changed` counts in `aug`. An item with
    `words` (a tagging record) gets variants with `words` of the same length (and an `order` when
    words moved); a method in `TAGGING_REFUSED` never sees one."""

    name: str
    count_key: str
    batch_size: int

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        """`copies` variants per item, or None for an item this method cannot perturb."""
        ...


@dataclass
class SynonymMethod:
    """Randomized smoothing by data augmentation (RS-DA, Huang et al. 2021, after Ye et al.
    2020, SAFER): each word w becomes a word drawn uniformly from S(w) = {w} + neighbours(w).

    `sets` maps a language (or `*` for every other one) to its synonym set; a field whose language
    has none passes unchanged and is reported. `stopwords` maps a language (or `*`) to words kept
    as they are. `max_rate` caps the replaced share of a text's words at floor(max_rate * words):
    when more were drawn, a random subset of that size is kept. The replacement takes the case of
    the word it replaces (Dog -> Hound, DOG -> HOUND); punctuation is not part of a word.
    """

    sets: dict[str, SynonymSet]
    stopwords: dict[str, frozenset[str]] = field(default_factory=dict)
    max_rate: float = 1.0
    name: str = "synonym"
    count_key: str = "replaced"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not self.sets:
            raise UsageError("--method synonym needs a synonym set: --synonyms FILE or --synonyms LANG=FILE")
        if not 0.0 < self.max_rate <= 1.0:
            raise UsageError(f"--max-rate must be in (0, 1], not {self.max_rate}")

    def _stop(self, lang: str) -> frozenset[str]:
        return for_lang(self.stopwords, lang) or frozenset()  # type: ignore[return-value]

    def _candidates(self, words: Sequence[str], lang: str, synset: SynonymSet, report: PerturbReport, *,
                    one_word: bool = False) -> list[tuple[int, tuple[str, ...]]]:
        """(word index, neighbours) of the words that have synonyms, counting coverage; with
        `one_word` (a tagging record's words) neighbours holding a space are left out."""
        stop = self._stop(lang)
        cands = []
        stats = report.by_lang.setdefault(lang, [0, 0])
        for k, word in enumerate(words):
            if not has_letter(word):
                continue
            key = word.lower()
            if key in stop:
                report.stopwords += 1
                continue
            report.candidates += 1
            stats[0] += 1
            neighbours = synset.neighbours(key)
            if one_word and neighbours:
                single = tuple(n for n in neighbours if not any(c.isspace() for c in n))
                report.multiword += len(neighbours) - len(single)
                neighbours = single
            if neighbours:
                report.covered += 1
                stats[1] += 1
                cands.append((k, neighbours))
            else:
                report.missing[key] += 1
        return cands

    def _draw(self, rng: random.Random, cands: list[tuple[int, tuple[str, ...]]], n: int) -> list[tuple[int, str]]:
        """(word index, replacement) for one copy: each candidate draws from {itself} + its
        neighbours; at most floor(max_rate * n) replacements are kept."""
        chosen = []
        for k, neighbours in cands:
            pick = rng.randrange(len(neighbours) + 1)
            if pick:  # 0 draws the word itself
                chosen.append((k, neighbours[pick - 1]))
        limit = int(self.max_rate * n + 1e-9)
        if len(chosen) > limit:
            chosen = sorted(rng.sample(chosen, limit))
        return chosen

    def _word_variants(self, item: Item, copies: int, report: PerturbReport) -> list[Variant] | None:
        assert item.words is not None
        lang = item.langs[0]
        synset = for_lang(self.sets, lang)  # type: ignore[arg-type]
        if synset is None:
            report.pass_field(lang, f"no synonym set for language {lang}")
            report.unchanged += 1
            return None
        cands = self._candidates(item.words, lang, synset, report, one_word=True)
        variants = []
        units = sum(any(c.isalnum() for c in w) for w in item.words)  # as in texts: punctuation is no word
        for _ in range(copies):
            report.units_in_copies += units
            words = list(item.words)
            chosen = self._draw(item.rng, cands, len(words))
            for k, word in chosen:
                words[k] = match_case(words[k], word)
            variants.append(Variant((), len(chosen), words=words))
        return variants

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        out: list[list[Variant] | None] = []
        for item in items:
            if item.words is not None:
                out.append(self._word_variants(item, copies, report))
                continue
            fields = []  # per field: (units, candidates [(unit k, neighbours)]) or None
            for text, lang in zip(item.texts, item.langs):
                synset = for_lang(self.sets, lang)  # type: ignore[arg-type]
                if synset is None:
                    fields.append(None)
                    continue
                units = split_units(text, lexicon=synset)
                fields.append((units, self._candidates(units.words, lang, synset, report)))
            for lang, f in zip(item.langs, fields):
                if f is None:
                    report.pass_field(lang, f"no synonym set for language {lang}")
            if all(f is None for f in fields):
                report.unchanged += 1
                out.append(None)
                continue
            out.append([self._copy(item, fields, report) for _ in range(copies)])
        return out

    def _copy(self, item: Item, fields, report: PerturbReport) -> Variant:
        rng = item.rng
        texts = []
        replaced = 0
        for text, f in zip(item.texts, fields):
            if f is None:
                texts.append(text)
                continue
            units, cands = f
            report.units_in_copies += len(units)
            chosen = self._draw(rng, cands, len(units))
            if not chosen:
                texts.append(text)
                continue
            pieces = list(units.pieces)
            for k, word in chosen:
                i = units.index[k]
                pieces[i] = match_case(pieces[i], word)
            replaced += len(chosen)
            texts.append("".join(pieces))
        return Variant(tuple(texts), replaced)


@dataclass
class SwapMethod:
    """Syntactic perturbation (RS-syntax, Huang et al. 2021): scanning left to right, each of a
    text's n-1 adjacent word pairs is swapped with probability `p` (a swapped word may move on
    at the next pair). Words keep their own case; spaces and punctuation stay where they are. In
    scripts written without spaces the units are characters (see `xlt.augment.text`). A tagging
    record's units are its words (`tokens` with a letter or digit), each moving with its tag."""

    p: float = 0.1
    name: str = "swap"
    count_key: str = "swapped"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise UsageError(f"--p must be in (0, 1], not {self.p}")

    def _swap(self, rng: random.Random, units: list[Any]) -> int:
        """Swap adjacent units in place, each pair with probability `p`; the number swapped."""
        swapped = 0
        for i in range(len(units) - 1):
            if rng.random() < self.p:
                units[i], units[i + 1] = units[i + 1], units[i]
                swapped += 1
        return swapped

    def _word_variants(self, item: Item, copies: int, report: PerturbReport) -> list[Variant]:
        assert item.words is not None
        words = item.words
        slots = [k for k, w in enumerate(words) if any(c.isalnum() for c in w)]  # punctuation stays
        variants = []
        for _ in range(copies):
            report.units_in_copies += len(slots)
            moved = list(slots)
            swapped = self._swap(item.rng, moved)
            order = list(range(len(words)))
            for k, src in zip(slots, moved):
                order[k] = src
            variants.append(Variant((), swapped, words=[words[i] for i in order], order=order))
        return variants

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        out: list[list[Variant] | None] = []
        for item in items:
            if item.words is not None:
                out.append(self._word_variants(item, copies, report))
                continue
            split = [split_units(t) for t in item.texts]
            variants = []
            for _ in range(copies):
                texts, swapped = [], 0
                for units in split:
                    words = units.words
                    report.units_in_copies += len(words)
                    swapped += self._swap(item.rng, words)
                    pieces = list(units.pieces)
                    for k, w in zip(units.index, words):
                        pieces[k] = w
                    texts.append("".join(pieces))
                variants.append(Variant(tuple(texts), swapped))
            out.append(variants)
        return out


def _aug(method: Method, copy: int, changed: int, extra: dict[str, Any], previous: Any) -> dict[str, Any]:
    aug: dict[str, Any] = {"method": method.name, "copy": copy, method.count_key: changed, **extra}
    if previous is not None:
        aug["from"] = previous
    return aug


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def perturb_records(
    sources: Sequence[str] | None,
    method: Method,
    *,
    copies: int = 1,
    original: bool = True,
    seed: int = 0,
    fields: tuple[str, ...] | None = None,
    shard: tuple[int, int] | None = None,
    on_error: str = "fail",
    skipped: SkipReport | None = None,
    report: PerturbReport | None = None,
) -> Iterator[Record]:
    """Stream the records of `sources` with `copies` perturbed copies each (see the module doc).

    A record the method cannot perturb (no synonym set for its language) is written once,
    unchanged, as copy 0 even with ``original=False``, and counted in `report.unchanged`; the first
    time a language without a set shows up it is warned about on stderr. Tagging records (their
    `tags`, when present, checked against their `tokens`): see the module doc; a method that
    cannot keep their tags stops the stage with a UsageError naming the first one's FILE:LINE.
    """
    if copies < 1:
        raise UsageError(f"--copies must be at least 1, not {copies}")
    if is_tagging(fields):
        refuse_tagging(method.name, where="--fields tagging")
    report = report if report is not None else PerturbReport()
    report.method, report.count_key = method.name, method.count_key
    chosen = fields

    def validate(rec: Record) -> None:
        nonlocal chosen
        if chosen is None:
            chosen = infer_fields(rec)
        check_text(rec, chosen)
        if is_tagging(chosen) and rec.get("tags") is not None:
            check_tags(rec)  # a swap moves tags by position: they must be one per word

    def items() -> Iterator[Item]:
        index = -1
        for where, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
            index += 1
            if shard is not None and index % shard[1] != shard[0] - 1:
                continue
            assert chosen is not None
            report.records_in += 1
            rng = random.Random(f"{seed}:{index}")
            if is_tagging(chosen):
                refuse_tagging(method.name, where=where)
                yield Item(index, rec, (), field_langs(rec, chosen), rng, words=list(rec["tokens"]))
            else:
                yield Item(index, rec, tuple(rec[f] for f in chosen), field_langs(rec, chosen), rng)

    start = time.monotonic()
    for batch in _batches(items(), max(1, method.batch_size)):
        assert chosen is not None
        for item, variants in zip(batch, method.variants(batch, copies, report)):
            rec = item.record
            previous = rec.get("aug")
            if variants is None or original:
                out = dict(rec)
                out["aug"] = _aug(method, 0, 0, {}, previous)
                report.records_out += 1
                report.originals_out += 1
                yield out
            for copy, variant in enumerate(variants or (), 1):
                out = dict(rec)
                if variant.words is not None:
                    _tagging_copy(out, variant, report)
                for f, text in zip(chosen, variant.texts):
                    out[f] = text
                out["aug"] = _aug(method, copy, variant.changed, variant.extra, previous)
                report.records_out += 1
                report.copies_out += 1
                report.changed += variant.changed
                yield out
        report.seconds = time.monotonic() - start


def _tagging_copy(out: Record, variant: Variant, report: PerturbReport) -> None:
    """Put a variant's words into the copy `out` of a tagging record: tags and per-word teacher
    outputs follow `variant.order`; the stale `text` goes (see the module doc)."""
    words = variant.words
    assert words is not None
    out["tokens"] = words
    out.pop("text", None)
    order = variant.order
    if order is None or order == list(range(len(words))):
        return
    if isinstance(out.get("tags"), list):
        out["tags"] = [out["tags"][i] for i in order]
    teacher = out.get("teacher")
    if teacher is None:
        return
    moved = dict(teacher) if isinstance(teacher, dict) else None
    for key in PER_WORD_TEACHER_KEYS:
        if moved is None:
            break
        rows = moved.get(key)
        if rows is None:
            continue
        if isinstance(rows, list) and len(rows) == len(words) and all(isinstance(r, list) for r in rows):
            moved[key] = [rows[i] for i in order]
        else:
            moved = None
    if moved is None:
        del out["teacher"]
        report.teachers_dropped += 1
    else:
        out["teacher"] = moved


def log_report(report: PerturbReport) -> None:
    for line in report.warnings():
        log.warn(line)
    for line in report.lines():
        log.info(line)


__all__ = ["DEFAULT", "METHODS", "PER_WORD_TEACHER_KEYS", "TAGGING_REFUSED", "Item", "Method", "PerturbReport",
           "SwapMethod", "SynonymMethod", "Variant", "log_report", "perturb_records", "refuse_tagging"]
