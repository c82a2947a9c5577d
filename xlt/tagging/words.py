"""Words of a sentence, for tagging records made from raw text (`xlt translate` of a tagging record).

`split_words(text, lang)` is a rough, rule-based word splitter in the spirit of Universal
Dependencies tokenization, written so a teacher can soft-label machine-translated text word by
word (FreeTransfer-X: no label projection, the target words only need to be words). Rules:

1. Whitespace (any Unicode space, NBSP and the narrow NBSP included) separates words and is never
   part of one, so a number written with spaces (`25 000`) is two words, `25` and `000`.
2. A word is a run of letters, digits and combining marks (`\\w`-like, by Unicode category, so
   Devanagari vowel signs and other marks stay in their word; `_` joins like a letter).
   Inside a word these join: an apostrophe (`'` or `’`) or hyphen between two letters or digits
   (`don't`, `well-known`, `peut-être`), and `.` or `,` between two digits (`3.5`, `1,000`).
3. Elision in French, Italian and Catalan (`lang` fr/it/ca): an apostrophe after a letter and
   before a letter ends a word and stays with it, as the UD treebanks of these languages do
   (`l'homme` -> `l'` `homme`, `dell'anno` -> `dell'` `anno`), except in the few words UD keeps
   whole (`ELISION_WHOLE`: `aujourd'hui`, `quelqu'un`, ...); elsewhere the word stays whole
   (`don't`, `O'Brien`).
4. Punctuation and symbols (Unicode P* and S*: `.`, `,`, `«`, `$`, `%`, `。`, emoji) are words of
   their own; a run of one repeated character is one word (`...`, `!!`, `--`), different ones
   are separate (`?!` -> `?` `!`).
5. Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, as in
   `xlt.augment.text.NOSPACE_RANGES`) are split into characters, each with its combining marks
   (a Thai vowel or tone mark stays on its consonant); runs of Latin letters or digits among them
   stay together by rule 2 (`我用iPhone` -> `我` `用` `iPhone`). This is the fallback the language
   does not change: no dictionary, no segmenter.

What it is not: not a UD tokenizer. It does not split English clitics (`don't` stays, UD has `do`
`n't`), German or Spanish contractions (`zum`, `del`), or multiword tokens into syntactic words;
it splits abbreviations, URLs and e-mail addresses at their dots (`U.S.` -> `U` `.` `S` `.`);
Chinese, Japanese and Thai words are characters, not dictionary words. Every word is a non-blank
substring of `text`, in order; the words never hold spaces.
"""

from __future__ import annotations

import re
import unicodedata

from xlt.augment.text import is_nospace

#: Languages whose elided articles and prepositions are words of their own in UD (`l'`, `dell'`).
ELISION_LANGS = frozenset({"fr", "it", "ca"})
#: Words with an inner apostrophe that those treebanks keep whole (lower case, `'` apostrophe).
ELISION_WHOLE = frozenset({"aujourd'hui", "quelqu'un", "quelqu'une", "presqu'île", "prud'homme", "prud'hommes"})

APOSTROPHES = frozenset("'\u2019")
HYPHENS = frozenset("-\u2010\u2011")
DIGIT_JOINERS = frozenset(".,")


def _kind(ch: str) -> str:
    """`s` space, `n` letter/digit of a script without spaces, `w` other letter/digit (or `_`),
    `m` combining mark (or a format character such as ZWJ/ZWNJ, which belongs to its word),
    `p` anything else (punctuation, symbols)."""
    if ch.isspace() or ch in "\u200b\ufeff":  # zero-width space: a word boundary in Thai, Khmer
        return "s"
    cat = unicodedata.category(ch)
    if cat[0] in "LN" or cat == "Pc":
        return "n" if is_nospace(ch) else "w"
    if cat[0] == "M" or cat == "Cf":
        return "m"
    return "p"


def _base_lang(lang: str | None) -> str:
    return re.split(r"[-_]", lang or "", maxsplit=1)[0].lower()


def _whole(text: str, start: int, i: int, kinds: list[str]) -> bool:
    """Whether the letters from `start` through the run that begins at `i` make an `ELISION_WHOLE` word."""
    j = i
    while j < len(text) and kinds[j] in "wm":
        j += 1
    return text[start:j].lower().replace("\u2019", "'") in ELISION_WHOLE


def split_words(text: str, lang: str | None = None) -> list[str]:
    """The words of `text` by the rules of the module docstring (`lang`: ISO 639-1, for elision)."""
    elision = _base_lang(lang) in ELISION_LANGS
    kinds = [_kind(c) for c in text]
    n = len(text)
    words: list[str] = []
    i = 0
    while i < n:
        k = kinds[i]
        if k == "s":
            i += 1
            continue
        start = i
        if k == "n":
            i += 1
        elif k == "w":
            i += 1
            while i < n:
                if kinds[i] in "wm":
                    i += 1
                    continue
                c = text[i]
                after = kinds[i + 1] if i + 1 < n else "s"
                before = text[i - 1]
                if c in APOSTROPHES and after == "w" and kinds[i - 1] in "wm":
                    if elision and before.isalpha() and text[i + 1].isalpha() and not _whole(text, start, i + 1, kinds):
                        i += 1  # `l'` ends here, with its apostrophe; `homme` starts the next word
                        break
                    i += 1
                elif c in HYPHENS and after == "w" and kinds[i - 1] in "wm":
                    i += 1
                elif c in DIGIT_JOINERS and before.isdigit() and i + 1 < n and text[i + 1].isdigit():
                    i += 1
                else:
                    break
        elif k == "m":  # a mark with no letter before it (after a space or punctuation)
            i += 1
        else:
            c = text[i]
            i += 1
            while i < n and text[i] == c:
                i += 1
        while i < n and kinds[i] == "m":  # marks stay on what they follow
            i += 1
        words.append(text[start:i])
    return words


def join_words(words: list[str]) -> str:
    """A sentence from words, for a tagging record without `text`: one space between words, none
    between two characters of scripts written without spaces, none before closing punctuation
    (`.,;:!?%` and closing brackets) nor after opening brackets or an elided word (`l'`). Not a
    detokenizer: it makes a readable input for MT, not the original sentence."""
    out: list[str] = []
    for word in words:
        if out:
            prev = out[-1]
            glue = ((is_nospace(prev[-1]) and is_nospace(word[0]))
                    or (word[0] in ".,;:!?%)]}\u3001\u3002\uff0c\uff01\uff1f" and all(_kind(c) == "p" for c in word))
                    or unicodedata.category(prev[-1]) == "Ps"
                    or (len(prev) > 1 and prev[-1] in APOSTROPHES and prev[-2].isalpha()))  # l' homme
            if not glue:
                out.append(" ")
        out.append(word)
    return "".join(out)


__all__ = ["ELISION_LANGS", "ELISION_WHOLE", "join_words", "split_words"]
