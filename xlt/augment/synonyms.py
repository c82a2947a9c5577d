"""Synonym sets and stop word lists for `xlt perturb --method synonym`.

Formats (chosen by content: a file whose first non-blank character is `{` is JSON):
- JSON `{"word": ["neighbour", ...]}`: the counter-fitted GloVe neighbours of Alzantot et al.
  (2018), the set Robust-XLT's synonym augmentation uses.
- Text, one line per word: `word neighbour neighbour ...` (whitespace separated). Lines with the
  same head word merge, so a PPDB pair file (`word other`, one pair a line, both directions
  listed) reads as this format. Blank lines and lines starting with `#` are skipped.

Words are matched lower-cased; a word is never its own neighbour. `.gz` files are read too.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from xlt.augment.text import is_nospace
from xlt.errors import InputError, UsageError

DEFAULT = "*"  # the language key of a set or list given without `LANG=`

_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")

#: English function words kept as they are by default (negations and quantifiers included:
#: replacing them is what flips an NLI label), and the pieces of clitics (`s` of `nation's`).
ENGLISH_STOPWORDS: frozenset[str] = frozenset("""
s t d ll re ve m
a about above after again against ain't all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each either else ever every few for from further had hadn't has hasn't
have haven't having he he'd he'll he's her here here's hers herself him himself his how how's i
i'd i'll i'm i've if in into is isn't it it's its itself just let's may me might more most much
must mustn't my myself neither never no nobody none nor not nothing now of off on once one only or
other ought our ours ourselves out over own same shall shan't she she'd she'll she's should
shouldn't so some such than that that's the their theirs them themselves then there there's these
they they'd they'll they're they've this those though through to too under until up upon us very
was wasn't we we'd we'll we're we've were weren't what what's when when's where where's whether
which while who who's whom whose why why's will with without won't would wouldn't yet you you'd
you'll you're you've your yours yourself yourselves
""".split())

BUILTIN_STOPWORDS: dict[str, frozenset[str]] = {"en": ENGLISH_STOPWORDS}


@dataclass
class SynonymSet:
    """Neighbours by lower-cased word; `nospace_max_len` serves word matching in scripts written
    without spaces (see `xlt.augment.text.split_units`)."""

    table: dict[str, tuple[str, ...]]
    name: str = ""
    nospace_max_len: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.nospace_max_len = max((len(w) for w in self.table if any(is_nospace(c) for c in w)), default=0)

    def __contains__(self, word: object) -> bool:
        return word in self.table

    def __len__(self) -> int:
        return len(self.table)

    def neighbours(self, word: str) -> tuple[str, ...]:
        """The neighbours of lower-cased `word` (empty when it has none or is unknown)."""
        return self.table.get(word, ())


def _open_text(path: str):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, expected a file")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _merge(entries: Iterable[tuple[str, Iterable[str]]]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, dict[str, None]] = {}
    for word, neighbours in entries:
        key = word.lower()
        slot = merged.setdefault(key, {})
        for n in neighbours:
            n = n.lower()
            if n != key:
                slot[n] = None
    return {k: tuple(v) for k, v in merged.items()}


def load_synonyms(path: str) -> SynonymSet:
    """Read a synonym set (JSON or text format, see the module docstring)."""
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: expected a JSON object of word -> list of neighbours")
        for word, neighbours in obj.items():
            if not isinstance(neighbours, list) or not all(isinstance(n, str) for n in neighbours):
                raise InputError(f'{path}: "{word}": expected a list of strings')
        table = _merge(obj.items())
    else:
        entries = []
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            entries.append((parts[0], parts[1:]))
        table = _merge(entries)
    if not table:
        raise InputError(f"{path}: no words in this synonym set")
    return SynonymSet(table, name=path)


def load_wordlist(path: str) -> frozenset[str]:
    """A stop word list: one word a line (more per line are fine), `#` comments; lower-cased."""
    try:
        with _open_text(path) as fh:
            words = [w.lower() for line in fh if not line.lstrip().startswith("#") for w in line.split()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    return frozenset(words)


def parse_lang_specs(specs: Sequence[str], option: str) -> dict[str, str]:
    """`["fr=a.txt", "b.json"]` -> `{"fr": "a.txt", "*": "b.json"}` (`*`: every other language)."""
    out: dict[str, str] = {}
    for spec in specs:
        lang, sep, path = spec.partition("=")
        if sep and _LANG_RE.match(lang) and path:
            key = lang
        elif sep and not path:
            raise UsageError(f"{option} {spec}: give LANG=FILE or FILE")
        else:
            key, path = DEFAULT, spec
        if key in out:
            which = "the default" if key == DEFAULT else f"language {key}"
            raise UsageError(f"{option}: {which} is given twice")
        out[key] = path
    return out


def for_lang(table: dict[str, object], lang: str):
    """The entry for `lang`: its own, else the one for its base language (`en` for `en-GB`),
    else the default (`*`), else None."""
    if lang in table:
        return table[lang]
    base = re.split(r"[-_]", lang, maxsplit=1)[0]
    if base in table:
        return table[base]
    return table.get(DEFAULT)
