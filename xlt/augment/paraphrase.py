"""Paraphrases by round-trip translation (`xlt perturb --method paraphrase`).

Each text goes to the pivot language `via` and back with `xlt translate`'s engine
(`xlt.mt.Translator`). The `copies` paraphrases of a text come from `copies` forward
translations: random samples from the K most likely tokens (`sampling_topk`, default 10, the
setting Edunov et al. 2018 found to make the most useful back-translations), or the n best of a
beam of max(beam_size, copies) with `sampling_topk=1`; each is translated back with beam search
(one best). A multilingual model (M2M-100, NLLB, mBART-50) does both directions; for bilingual
OPUS-MT models give the way back as `back`.

`seed` makes sampling reproducible (`ctranslate2.set_random_seed`), but CTranslate2 seeds each
worker thread's generator when that thread first samples: the seed takes effect only on
translators that have not sampled yet in this process (always true for one `xlt perturb` run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xlt.augment.perturb import Item, PerturbReport, Variant
from xlt.errors import UsageError

DEFAULT_SAMPLING_TOPK = 10


def check_decoding(*, sampling_topk: int = DEFAULT_SAMPLING_TOPK, temperature: float = 1.0, beam_size: int = 2,
                   batch_size: int = 64) -> None:
    """Refuse bad decoding options (before any model is loaded)."""
    if sampling_topk < 0:
        raise UsageError(f"--sampling-topk must be >= 0 (0: the whole vocabulary, 1: beam search), not {sampling_topk}")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, not {temperature}")
    if beam_size < 1:
        raise UsageError(f"--beam-size must be >= 1, not {beam_size}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, not {batch_size}")


@dataclass
class ParaphraseMethod:
    """Round trip src -> via -> src. `translator`/`back` are `xlt.mt.Translator`s (`back`
    defaults to `translator`). Fields in the pivot language itself, or in a language the models
    cannot translate, pass unchanged (warned about once and counted). A round trip that comes
    back empty keeps the original text. `aug.changed` counts text fields that differ."""

    translator: Any
    via: str
    back: Any | None = None
    sampling_topk: int = DEFAULT_SAMPLING_TOPK
    temperature: float = 1.0
    beam_size: int = 2
    max_length: int = 256
    seed: int | None = None
    batch_size: int = 64
    name: str = "paraphrase"
    count_key: str = "changed"
    _checked: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.back is None:
            self.back = self.translator
        check_decoding(sampling_topk=self.sampling_topk, temperature=self.temperature, beam_size=self.beam_size,
                       batch_size=self.batch_size)
        problem = (self.translator.language_problem(self.via, side="target")
                   or self.back.language_problem(self.via, side="source"))
        if problem:
            raise UsageError(f"--via {self.via}: {problem}")
        if self.seed is not None:
            import ctranslate2

            ctranslate2.set_random_seed(self.seed)

    def _problem(self, lang: str) -> str | None:
        if lang not in self._checked:
            if lang == self.via:
                self._checked[lang] = f"language {lang} is the pivot language"
            else:
                problem = (self.translator.language_problem(lang, side="source")
                           or self.back.language_problem(lang, side="target"))
                self._checked[lang] = f"no round trip for language {lang} through {self.via} ({problem})" if problem else None
        return self._checked[lang]

    def variants(self, items: Sequence[Item], copies: int, report: PerturbReport) -> list[list[Variant] | None]:
        groups: dict[str, list[tuple[int, int]]] = {}
        for i, item in enumerate(items):
            for j, lang in enumerate(item.langs):
                problem = self._problem(lang)
                if problem:
                    report.pass_field(lang, problem)
                else:
                    groups.setdefault(lang, []).append((i, j))
        # texts[i][j][c]: copy c of field j of item i
        texts = [[[t] * copies for t in item.texts] for item in items]
        sampling = self.sampling_topk != 1
        for lang, slots in groups.items():
            sources = [items[i].texts[j] for i, j in slots]
            forward = self.translator.translate_texts(
                sources, src=lang, tgt=self.via, beam_size=1 if sampling else max(self.beam_size, copies),
                num_hypotheses=copies, sampling_topk=self.sampling_topk, temperature=self.temperature,
                max_length=self.max_length,
            )
            flat = [(k, c, h) for k, hyps in enumerate(forward) for c, h in enumerate(hyps) if h.strip()]
            back = self.back.translate_texts(
                [h for _, _, h in flat], src=self.via, tgt=lang, beam_size=self.beam_size, max_length=self.max_length,
            ) if flat else []
            for (k, c, _), hyps in zip(flat, back):
                text = hyps[0] if hyps else ""
                if text.strip():
                    i, j = slots[k]
                    texts[i][j][c] = text
        out: list[list[Variant] | None] = []
        for i, item in enumerate(items):
            if all(self._problem(lang) for lang in item.langs):
                report.unchanged += 1
                out.append(None)
                continue
            variants = []
            for c in range(copies):
                new = tuple(texts[i][j][c] for j in range(len(item.texts)))
                changed = sum(a != b for a, b in zip(new, item.texts))
                variants.append(Variant(new, changed, {"via": self.via}))
            out.append(variants)
        return out
