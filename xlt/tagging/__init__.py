"""Sequence tagging: one tag per word (`tokens` + `tags` records, e.g. UD part-of-speech).

Every model, teacher or student, is read at the **first subword of each word** (FreeTransfer-X's
word-level alignment): a word's label, logits and hidden vector are those of its first subword,
the other subwords are ignored. So teacher outputs are per word and independent of any tokenizer,
and a small student with its own vocabulary learns from a multilingual teacher word by word.

- `xlt.tagging.encode`: words -> subword ids and the position of each word's first subword.
- `xlt.tagging.model`: per-word logits of a token classifier, the training objective, dev scoring.
- `xlt.tagging.metrics`: token accuracy, entity spans (seqeval), per-tag report.
"""
