"""Word units for perturbation: split a text into units and the text between them, losslessly.

A text becomes a list of pieces whose concatenation is the text again; some pieces are *units*
(the things a perturbation replaces or moves) and the rest (spaces, punctuation) stay in place,
so "Dog, cat." keeps its comma and full stop whatever happens to the words.

- Scripts written with spaces: a unit is a run of letters, digits and combining marks; an
  apostrophe or hyphen between two letters joins (`don't`, `well-known`). With a lexicon (a
  synonym set) a joined word the lexicon does not know is split at the joiners, so `l'homme`
  can still be looked up as `homme`.
- Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar): every
  character (with its combining marks) is a unit, so a swap moves characters, never a no-op.
  With a lexicon, runs are segmented by forward maximum matching against its entries (longest
  known word first, else one character), which is how a Chinese synonym set finds its words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

JOINERS = frozenset("'\u2019-\u2010")

#: Blocks of scripts written without spaces between words: (first, last) code points.
NOSPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B-H
)


def is_nospace(ch: str) -> bool:
    """Whether `ch` belongs to a script written without spaces between words."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in NOSPACE_RANGES)


def has_letter(unit: str) -> bool:
    return any(unicodedata.category(c)[0] == "L" for c in unit)


class Lexicon(Protocol):
    """What the splitter needs from a synonym set: membership (lower-cased) and the length of
    its longest entry in a script without spaces (0: none)."""

    nospace_max_len: int

    def __contains__(self, word: object) -> bool: ...


@dataclass
class Units:
    """A text split into pieces; `index[k]` is the piece that holds unit k."""

    pieces: list[str]
    index: list[int]

    @property
    def words(self) -> list[str]:
        return [self.pieces[i] for i in self.index]

    def text(self) -> str:
        return "".join(self.pieces)

    def __len__(self) -> int:
        return len(self.index)


class _Kinds(dict):
    """Code point -> kind letter, filled on first sight, for `str.translate`: `n` a letter or
    digit of a script without spaces, `w` another letter or digit, `m` a combining mark,
    `j` a joiner, `o` anything else (spaces, punctuation, symbols)."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        cat = unicodedata.category(ch)[0]
        kind = "m" if cat == "M" else ("n" if is_nospace(ch) else "w") if cat in "LN" else "j" if ch in JOINERS else "o"
        self[cp] = kind
        return kind


_KINDS = _Kinds()
_SPANS = re.compile(r"(?P<w>[wm]+(?:j[wm]+)*)|(?P<n>n[nm]*)|(?P<o>[oj]+)")
_GRAPHEME = re.compile(r"nm*")


def _max_match(run: str, kinds: str, lexicon: Lexicon | None) -> list[str]:
    """Units of a run in a script without spaces: characters with their trailing combining
    marks (a Thai vowel sign stays on its consonant), joined by forward maximum matching when
    the lexicon has words in such scripts."""
    graphemes = [run[m.start():m.end()] for m in _GRAPHEME.finditer(kinds)]
    longest = lexicon.nospace_max_len if lexicon is not None else 0
    if longest < 2:
        return graphemes
    out: list[str] = []
    i = 0
    while i < len(graphemes):
        take = 1
        for n in range(min(longest, len(graphemes) - i), 1, -1):
            if "".join(graphemes[i:i + n]).lower() in lexicon:
                take = n
                break
        out.append("".join(graphemes[i:i + take]))
        i += take
    return out


def split_units(text: str, *, lexicon: Lexicon | None = None) -> Units:
    """Split `text` into units and the pieces between them (``units.text() == text``)."""
    pieces: list[str] = []
    index: list[int] = []
    kinds = text.translate(_KINDS)
    for m in _SPANS.finditer(kinds):
        a, b = m.span()
        piece = text[a:b]
        if m.lastgroup == "o":
            pieces.append(piece)
        elif m.lastgroup == "n":
            for g in _max_match(piece, kinds[a:b], lexicon):
                index.append(len(pieces))
                pieces.append(g)
        elif lexicon is not None and "j" in kinds[a:b] and piece.lower() not in lexicon:
            start = 0  # a joined word the lexicon does not know: look its parts up
            for k, c in enumerate(piece):
                if kinds[a + k] == "j":
                    index.append(len(pieces))
                    pieces.append(piece[start:k])
                    pieces.append(c)
                    start = k + 1
            index.append(len(pieces))
            pieces.append(piece[start:])
        else:
            index.append(len(pieces))
            pieces.append(piece)
    return Units(pieces, index)


def match_case(original: str, replacement: str) -> str:
    """`replacement` written in the case pattern of `original`: DOG -> HOUND, Dog -> Hound, dog -> hound."""
    if original.islower() or not original:
        return replacement
    if original.isupper() and sum(c.isupper() for c in original) > 1:
        return replacement.upper()
    for c in original:
        if c.isupper():
            return replacement[:1].upper() + replacement[1:]
        if c.islower():
            break
    return replacement
