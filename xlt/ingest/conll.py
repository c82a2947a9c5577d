"""Tagging formats: CoNLL-U treebanks, CoNLL-2003-style column files, `[slot : words]` annotations.

The readers stream one sentence at a time and yield ``(LINE, row)`` where LINE is the sentence's
first line (or, for a bad sentence, the offending line and a `RecordError`), so a broken
sentence is one bad record with its `FILE:LINE`, skippable like any other. Rows are named the
way the hub's datasets name them (`universal_dependencies`: `tokens`, `upos`, `xpos`, ...;
`conll2003`/`wikiann`: `tokens`, `ner_tags`), so one preset serves the files and the hub alike.

`datasets`' own `conll` builder pads or cuts lines that have the wrong number of columns without
a word, keeps multiword-token ranges and empty nodes as words, and drops `# sent_id`/`# text`;
these readers refuse the first and skip the second as the CoNLL-U specification says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from xlt.errors import RecordError, UsageError

Row = dict[str, Any]

#: CoNLL-U's ten columns and the names the hub's `universal_dependencies` rows give them.
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
CONLLU_ROW_NAMES = {"form": "tokens", "lemma": "lemmas", "upos": "upos", "xpos": "xpos", "feats": "feats",
                    "head": "head", "deprel": "deprel", "deps": "deps", "misc": "misc"}
CONLLU_ROW_COLUMNS = ["idx", "text", *CONLLU_ROW_NAMES.values()]
COLUMN_FILE_COLUMNS = ["tokens", "ner_tags"]

_SENT_ID = re.compile(r"^#\s*sent_id\s*=\s*(.*?)\s*$")
_TEXT = re.compile(r"^#\s*text\s*=\s*(.*?)\s*$")
_RANGE = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_EMPTY_NODE = re.compile(r"^[0-9]+\.[1-9][0-9]*$")


def conllu_row_name(column: str) -> str:
    """`--column xpos` -> the row key holding that column (`form` -> `tokens`)."""
    key = column.strip().lower()
    if key not in CONLLU_ROW_NAMES:
        raise UsageError(f"--column {column}: not a CoNLL-U column; one of {', '.join(CONLLU_ROW_NAMES)}")
    return CONLLU_ROW_NAMES[key]


def _lines(path: str) -> Iterator[tuple[int, str | RecordError]]:
    """(line number, text without its line end) of `path` (`-`: stdin; gzip sniffed), or a
    RecordError for a line that is not UTF-8."""
    from xlt.io import _open_binary  # the one opener (stdin, transparent .gz) every reader uses

    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, RecordError(f"invalid UTF-8 at byte {exc.start}")
                continue
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text.rstrip("\r\n")


def _blocks(path: str, *, boundary: Callable[[str], bool]) -> Iterator[tuple[int, list[tuple[int, str]] | RecordError]]:
    """The blank-line separated blocks of `path` (a `boundary` line ends one too): (first line
    number, the block's (line number, text) lines), or (line number, error) for a block holding a
    line that is not UTF-8."""
    start: int | None = None
    error: tuple[int, RecordError] | None = None
    lines: list[tuple[int, str]] = []
    for lineno, line in _lines(path):
        if isinstance(line, RecordError):
            start = lineno if start is None else start
            error = error or (lineno, line)
        elif not line.strip() or boundary(line):
            if start is not None:
                yield error or (start, lines)
            start, error, lines = None, None, []
        else:
            start = lineno if start is None else start
            lines.append((lineno, line))
    if start is not None:
        yield error or (start, lines)


def read_conllu(path: str) -> Iterator[tuple[int, Row | RecordError]]:
    """Sentences of a CoNLL-U file as rows: `idx` (# sent_id), `text` (# text), and one list per
    column for the syntactic words (integer IDs). Multiword-token ranges (`1-2`) and empty nodes
    (`8.1`) are skipped; FORM keeps its spaces; `_` in the other columns is None (unspecified)."""
    for start, block in _blocks(path, boundary=lambda line: False):
        row = block if isinstance(block, RecordError) else _conllu_sentence(block)
        if isinstance(row, tuple):
            yield row  # (line, error) of the sentence's first bad line
        elif row is not None:
            yield start, row


def _conllu_sentence(lines: list[tuple[int, str]]) -> Row | tuple[int, RecordError] | None:
    words: list[list[str]] = []
    meta: dict[str, str] = {}
    for lineno, line in lines:
        if line.startswith("#"):
            for key, pattern in (("sent_id", _SENT_ID), ("text", _TEXT)):
                m = pattern.match(line)
                if m and key not in meta:
                    meta[key] = m.group(1)
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            return lineno, RecordError(f"expected 10 tab-separated CoNLL-U columns, got {len(cols)}")
        wid = cols[0]
        if _RANGE.match(wid) or _EMPTY_NODE.match(wid):
            continue
        if not wid.isdigit() or int(wid) != len(words) + 1:
            return lineno, RecordError(f"word ID {wid!r} where {len(words) + 1} was expected")
        if not cols[1]:
            return lineno, RecordError(f"word {wid} has an empty FORM")
        words.append(cols)
    if not words:
        return None  # a block of comments only (`# newdoc`, `# global.columns`)
    row: Row = {"idx": meta.get("sent_id"), "text": meta.get("text")}
    for i, name in enumerate(CONLLU_COLUMNS[1:], 1):
        keep_underscore = name in ("form", "lemma")  # `_` is the word itself there
        row[CONLLU_ROW_NAMES[name]] = [w[i] if keep_underscore or w[i] != "_" else None for w in words]
    return row


def read_columns(path: str, *, tag_column: int | None = None) -> Iterator[tuple[int, Row | RecordError]]:
    """Sentences of a CoNLL-2003-style column file (one token a line, blank lines between
    sentences, `-DOCSTART-` lines skipped) as `{"tokens", "ner_tags"}` rows: the first column and
    the tag column (1-based `tag_column`, default the last). A line with a tab is split on tabs
    (tokens may hold spaces), otherwise on whitespace."""
    if tag_column is not None and tag_column < 2:
        raise UsageError(f"--column {tag_column}: the tag column of a column file is 2 or more (1 holds the tokens)")
    for start, block in _blocks(path, boundary=lambda line: line.startswith("-DOCSTART-")):
        row = block if isinstance(block, RecordError) else _column_sentence(block, path, tag_column)
        yield row if isinstance(row, tuple) else (start, row)


def _column_sentence(lines: list[tuple[int, str]], path: str, tag_column: int | None) -> Row | tuple[int, RecordError]:
    tokens: list[str] = []
    tags: list[str] = []
    width = 0
    for lineno, line in lines:
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2:
            return lineno, RecordError("expected a token and a tag (two or more columns), got one column")
        if width and len(cols) != width:
            return lineno, RecordError(f"{len(cols)} columns where the sentence's first line has {width}")
        width = len(cols)
        if tag_column is not None and tag_column > width:
            raise UsageError(f"--column {tag_column}: {path}:{lineno} has only {width} columns")
        tag = cols[(tag_column or width) - 1].strip()
        if not cols[0] or not tag:
            return lineno, RecordError("empty token or tag")
        tokens.append(cols[0])
        tags.append(tag)
    return {"tokens": tokens, "ner_tags": tags}


_SLOT = re.compile(r"\[\s*([^\[\]:\s]+)\s*:\s*([^\[\]]*)\]")


def bracket_slots(annotated: str) -> tuple[list[str], list[str]]:
    """`wake me up at [time : five am]` -> whitespace tokens and BIO tags
    (`O O O O B-time I-time`): the slot annotation of MASSIVE and SLURP."""
    tokens: list[str] = []
    tags: list[str] = []
    pos = 0

    def outside(text: str) -> None:
        if "[" in text or "]" in text:
            raise RecordError(f"unbalanced [ ] in slot annotation {annotated!r}")
        for word in text.split():
            tokens.append(word)
            tags.append("O")

    for m in _SLOT.finditer(annotated):
        outside(annotated[pos:m.start()])
        words = m.group(2).split()
        if not words:
            raise RecordError(f"slot {m.group(1)!r} has no words in {annotated!r}")
        for i, word in enumerate(words):
            tokens.append(word)
            tags.append(("B-" if i == 0 else "I-") + m.group(1))
        pos = m.end()
    outside(annotated[pos:])
    return tokens, tags
