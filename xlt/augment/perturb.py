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
from xlt.records import Record, check_text, field_langs, infer_fields

METHODS = ("synonym", "swap", "paraphrase")


@dataclass
class Item:
    """One input record on its way through a method."""

    index: int
    record: Record
    texts: tuple[str, ...]
    langs: tuple[str, ...]
    rng: random.Random


@dataclass
class Variant:
    """One augmented copy: new texts (one per field) and what was done (`changed` units)."""

    texts: tuple[str, ...]
    changed: int
    extra: dict[str, Any] = field(default_factory=dict)


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
        for lang, (cands, covered) in self.by_lang.items():
            if cands and not covered:
                out.append(f"language {lang}: none of {cands} candidate words has a synonym in its set (a no-op)")
        return out


class Method(Protocol):
    """A perturbation: `count_key` names what `Variant.changed` counts in `aug`."""

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

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        out: list[list[Variant] | None] = []
        for item in items:
            fields = []  # per field: (units, candidates [(unit k, neighbours)]) or None
            for text, lang in zip(item.texts, item.langs):
                synset = for_lang(self.sets, lang)  # type: ignore[arg-type]
                if synset is None:
                    fields.append(None)
                    continue
                units = split_units(text, lexicon=synset)
                stop = self._stop(lang)
                cands = []
                stats = report.by_lang.setdefault(lang, [0, 0])
                for k, word in enumerate(units.words):
                    if not has_letter(word):
                        continue
                    key = word.lower()
                    if key in stop:
                        report.stopwords += 1
                        continue
                    report.candidates += 1
                    stats[0] += 1
                    neighbours = synset.neighbours(key)
                    if neighbours:
                        report.covered += 1
                        stats[1] += 1
                        cands.append((k, neighbours))
                    else:
                        report.missing[key] += 1
                fields.append((units, cands))
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
            chosen = []
            for k, neighbours in cands:
                pick = rng.randrange(len(neighbours) + 1)
                if pick:  # 0 draws the word itself
                    chosen.append((k, neighbours[pick - 1]))
            limit = int(self.max_rate * len(units) + 1e-9)
            if len(chosen) > limit:
                chosen = sorted(rng.sample(chosen, limit))
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
    scripts written without spaces the units are characters (see `xlt.augment.text`)."""

    p: float = 0.1
    name: str = "swap"
    count_key: str = "swapped"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise UsageError(f"--p must be in (0, 1], not {self.p}")

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        out: list[list[Variant] | None] = []
        for item in items:
            split = [split_units(t) for t in item.texts]
            variants = []
            for _ in range(copies):
                texts, swapped = [], 0
                for units in split:
                    words = units.words
                    report.units_in_copies += len(words)
                    for i in range(len(words) - 1):
                        if item.rng.random() < self.p:
                            words[i], words[i + 1] = words[i + 1], words[i]
                            swapped += 1
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
    time a language without a set shows up it is warned about on stderr.
    """
    if copies < 1:
        raise UsageError(f"--copies must be at least 1, not {copies}")
    report = report if report is not None else PerturbReport()
    report.method, report.count_key = method.name, method.count_key
    chosen = fields

    def validate(rec: Record) -> None:
        nonlocal chosen
        if chosen is None:
            chosen = infer_fields(rec)
        check_text(rec, chosen)

    def items() -> Iterator[Item]:
        index = -1
        for _, rec in iter_located(sources, validate=validate, on_error=on_error, skipped=skipped):
            index += 1
            if shard is not None and index % shard[1] != shard[0] - 1:
                continue
            assert chosen is not None
            report.records_in += 1
            yield Item(index, rec, tuple(rec[f] for f in chosen), field_langs(rec, chosen),
                       random.Random(f"{seed}:{index}"))

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
                for f, text in zip(chosen, variant.texts):
                    out[f] = text
                out["aug"] = _aug(method, copy, variant.changed, variant.extra, previous)
                report.records_out += 1
                report.copies_out += 1
                report.changed += variant.changed
                yield out
        report.seconds = time.monotonic() - start


def log_report(report: PerturbReport) -> None:
    for line in report.warnings():
        log.warn(line)
    for line in report.lines():
        log.info(line)


__all__ = ["DEFAULT", "METHODS", "Item", "Method", "PerturbReport", "SwapMethod", "SynonymMethod", "Variant",
           "log_report", "perturb_records"]
