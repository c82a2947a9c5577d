"""Presets: the field mappings of the benchmarks xlt's users run most, as data.

A preset is a row of a table, not code per dataset: which hub dataset it reads by default, which
source column fills which field of the record contract, where the id and the language come from.
Every entry is also an option of `xlt import` (`--dataset`, `--map`, `--id-from`, `--lang-from`,
`--labels`), and options given on the command line win over the preset's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xlt.errors import UsageError


@dataclass(frozen=True)
class Preset:
    name: str
    #: The record shape it produces, in words (README table, --help).
    shape: str
    #: The hub dataset read when no files are given (None: local files only).
    dataset: str | None
    #: Contract field -> source column (`slots`: a `[slot : words]` annotation -> tokens + BIO tags).
    map: dict[str, str] = field(default_factory=dict)
    #: `--labels` spelling: ClassLabel indices -> these values (integers stay integers).
    labels: str | None = None
    #: Record ids from this column when the source has it (else the row's location).
    id_from: str | None = None
    #: The language from this column when the source has it (`fr-FR` -> `fr`).
    lang_from: str | None = None
    #: The language from the hub config (`fr`, `fr-FR`, `PAN-X.fr`, `fr_gsd` -> `fr`).
    lang_from_config: bool = True
    #: The configs are translations of each other, row by row: ids leave the config out, so the
    #: same example has the same id in every language (and in the `all_languages` config).
    parallel: bool = False
    #: A regular expression whose first group takes the language from a file's base name.
    file_lang: str | None = None
    #: Local files of this preset are in this format whatever their suffix.
    format: str | None = None
    #: What the README and --help show.
    example: str = ""
    configs: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("xnli", "NLI: premise, hypothesis, label (entailment/neutral/contradiction)", "facebook/xnli",
           {"premise": "premise", "hypothesis": "hypothesis", "label": "label"}, parallel=True,
           example="--config fr --split test",
           configs="ar bg de el en es fr hi ru sw th tr ur vi zh; all_languages (one record per language, same id)"),
    Preset("paws-x", "paraphrase: sentence1, sentence2, label (0/1)", "google-research-datasets/paws-x",
           {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}, labels="0,1", id_from="id",
           parallel=True, example="--config de --split validation", configs="de en es fr ja ko zh"),
    Preset("wikiann", "NER tagging: tokens, tags (BIO: PER/ORG/LOC)", "unimelb-nlp/wikiann",
           {"tokens": "tokens", "tags": "ner_tags"}, lang_from="langs", example="--config fr --split validation",
           configs="176 languages (fr, de, ...); also CoNLL-2003-style BIO files"),
    Preset("pan-x", "NER tagging (XTREME's WikiANN split): tokens, tags", "google/xtreme",
           {"tokens": "tokens", "tags": "ner_tags"}, lang_from="langs", example="--config PAN-X.fr --split validation",
           configs="PAN-X.<lang>"),
    Preset("ud-pos", "POS tagging: text, tokens, tags (17 UPOS); ids from # sent_id", None,
           {"tokens": "tokens", "tags": "upos", "text": "text"}, id_from="idx", format="conllu",
           file_lang=r"^([a-z]{2,3})_[^-]+-ud-", example="fr_gsd-ud-test.conllu",
           configs="CoNLL-U files (language from the UD file name, or --lang); --column xpos for XPOS"),
    Preset("massive", "intent + slots: text, tokens, tags (BIO slots), label (intent)", "AmazonScience/massive",
           {"text": "utt", "label": "intent", "slots": "annot_utt"}, id_from="id", lang_from="locale",
           parallel=True, example="--config fr-FR --split test", configs="51 locales (fr-FR, de-DE, ...)"),
    Preset("sentiment", "single text: text, label (0-4 stars)", "mteb/amazon_reviews_multi",
           {"text": "text", "label": "label"}, id_from="id", example="--config fr --split test",
           configs="de en es fr ja zh; any {text, label} source with --dataset or files"),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"--preset {name}: unknown; one of {', '.join(PRESETS)}") from None
