"""Data augmentation for robust cross-lingual training (`xlt perturb`).

- `text`: losslessly split texts into word units (characters in scripts without spaces).
- `synonyms`: synonym sets (counter-fitted JSON, `word neighbour...` text, PPDB pairs), stop words.
- `perturb`: the streaming 1:N stage and its methods (synonym replacement, adjacent swaps).
"""

from xlt.augment.perturb import (METHODS, PerturbReport, SwapMethod, SynonymMethod, log_report,
                                 perturb_records)
from xlt.augment.synonyms import ENGLISH_STOPWORDS, SynonymSet, load_synonyms, load_wordlist
from xlt.augment.text import match_case, split_units

__all__ = ["ENGLISH_STOPWORDS", "METHODS", "PerturbReport", "SwapMethod", "SynonymMethod", "SynonymSet",
           "load_synonyms", "load_wordlist", "log_report", "match_case", "perturb_records", "split_units"]
