"""`xlt import`: every local source kind built at test time, every preset on a local copy shaped
like the hub dataset, the hub path as the same `datasets` call with a name (never the hub
itself), errors with their location, and a round trip import -> teach -> eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_xlt
from xlt.errors import InputError, UsageError

NLI_NAMES = ["entailment", "neutral", "contradiction"]
PREMISES = ["A man plays a guitar.", "Two dogs run in a park.", "A woman is reading.", "Kids swim in a lake."]


# --- local copies, built at test time --------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    from datasets import (ClassLabel, Dataset, DatasetDict, Features, List, Translation,
                          TranslationVariableLanguages, Value, disable_progress_bars)

    disable_progress_bars()
    d = tmp_path_factory.mktemp("import-data")
    out: dict[str, str] = {}

    def parquet(name: str, rows: dict, features: Features) -> None:
        Dataset.from_dict(rows, features=features).to_parquet(str(d / name))
        out[name] = str(d / name)

    nli = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=NLI_NAMES)})
    # xnli per-language config: premise/hypothesis strings, ClassLabel label
    parquet("xnli.parquet", {"premise": PREMISES[:3], "hypothesis": ["Music.", "Cats sleep.", "Nobody reads."],
                             "label": [0, 1, 2]}, nli)
    # xnli all_languages: premise is a Translation, hypothesis a TranslationVariableLanguages
    langs = ["de", "en", "fr"]
    parquet("xnli_all.parquet", {
        "premise": [{"de": "Ein Mann spielt.", "en": "A man plays.", "fr": "Un homme joue."},
                    {"de": "Zwei Hunde.", "en": "Two dogs.", "fr": "Deux chiens."}],
        "hypothesis": [{"language": langs, "translation": ["Musik.", "Music.", "Musique."]},
                       {"language": langs, "translation": ["Katzen.", "Cats.", "Chats."]}],
        "label": [0, 2]}, Features({"premise": Translation(languages=langs),
                                     "hypothesis": TranslationVariableLanguages(languages=langs),
                                     "label": ClassLabel(names=NLI_NAMES)}))
    parquet("pawsx.parquet", {"id": [4, 6], "sentence1": ["Il pleut.", "Le chat dort."],
                              "sentence2": ["Il fait beau.", "Le chat dort bien."], "label": [0, 1]},
            Features({"id": Value("int32"), "sentence1": Value("string"), "sentence2": Value("string"),
                      "label": ClassLabel(names=["0", "1"])}))
    ner = ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])
    parquet("wikiann.parquet", {"tokens": [["Jean Paul", "habite", "à", "Paris"]], "ner_tags": [[1, 0, 0, 5]],
                                "langs": [["fr"] * 4], "spans": [["PER: Jean Paul", "LOC: Paris"]]},
            Features({"tokens": List(Value("string")), "ner_tags": List(ner), "langs": List(Value("string")),
                      "spans": List(Value("string"))}))
    parquet("panx.parquet", {"tokens": [["Angela", "Merkel", "besucht", "Paris"]], "ner_tags": [[1, 2, 0, 5]]},
            Features({"tokens": List(Value("string")), "ner_tags": List(ner)}))
    intents = ClassLabel(names=["alarm_set", "weather_query"])
    parquet("massive.parquet", {
        "id": ["0", "1"], "locale": ["fr-FR", "fr-FR"], "partition": ["test", "test"],
        "intent": [0, 1], "utt": ["réveille-moi à cinq heures", "quel temps demain"],
        "annot_utt": ["réveille-moi à [time : cinq heures]", "quel temps [date : demain]"]},
        Features({"id": Value("string"), "locale": Value("string"), "partition": Value("string"), "intent": intents,
                  "utt": Value("string"), "annot_utt": Value("string")}))
    parquet("sentiment.parquet", {"id": ["fr_1", "fr_2"], "text": ["Très bien !", "Nul."], "label": [4, 0],
                                  "label_text": ["4", "0"]},
            Features({"id": Value("string"), "text": Value("string"), "label": Value("int32"),
                      "label_text": Value("string")}))
    # an empty premise in row 2, for the error cases
    parquet("bad.parquet", {"premise": ["ok", "   "], "hypothesis": ["fine", "also"], "label": [0, 1]}, nli)

    # save_to_disk: a DatasetDict with a ClassLabel feature
    dd = DatasetDict({
        "train": Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]},
                                   features=Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})),
        "test": Dataset.from_dict({"text": ["fine"], "label": [1]},
                                  features=Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})),
    })
    dd.save_to_disk(str(d / "disk"))
    out["disk"] = str(d / "disk")

    (d / "nli.csv").write_text("premise,hypothesis,gold\n"
                               f"{PREMISES[0]},Music.,0\n"
                               '"NA, said the man",null,2\n'
                               f"{PREMISES[2]},Nobody reads.,\n", encoding="utf-8")
    out["nli.csv"] = str(d / "nli.csv")
    # XTREME-style TSV: no header, bare quotes in the text
    (d / "nli.tsv").write_text('He said "hi".\tHe spoke.\tentailment\nNA\t"quoted\tneutral\n', encoding="utf-8")
    out["nli.tsv"] = str(d / "nli.tsv")
    (d / "nli.json").write_text(json.dumps([{"sentence": "Bon film.", "stars": 5}, {"sentence": "Bof.", "stars": 2}]),
                                encoding="utf-8")
    out["nli.json"] = str(d / "nli.json")
    (d / "nli.jsonl").write_text('{"premise": "p", "hypothesis": "h", "label": "neutral", "lang": "de"}\n'
                                 '[1, 2]\n'
                                 '{"premise": "p2", "hypothesis": "h2", "label": "entailment", "lang": "de"}\n',
                                 encoding="utf-8")
    out["nli.jsonl"] = str(d / "nli.jsonl")
    # CoNLL-U: a multiword token (4-5 "au") and an empty node (3.1), comments kept as text/id
    (d / "fr_gsd-ud-test.conllu").write_text(
        "# newdoc id = d1\n"
        "# sent_id = fr-1\n"
        "# text = Je l'ai vu au marché.\n"
        "1\tJe\til\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n"
        "2\tl'\tle\tPRON\tPRP\t_\t3\tobj\t_\t_\n"
        "3\tai\tavoir\tAUX\tVB\t_\t0\troot\t_\t_\n"
        "3.1\tvu\tvoir\tVERB\t_\t_\t_\t_\t3:conj\t_\n"
        "4-5\tau\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "4\tà\tà\tADP\tIN\t_\t6\tcase\t_\t_\n"
        "5\tle\tle\tDET\tDT\t_\t6\tdet\t_\t_\n"
        "6\tmarché\tmarché\tNOUN\tNN\t_\t3\tobl\t_\tSpaceAfter=No\n"
        "7\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n"
        "\n"
        "# sent_id = fr-2\n"
        "1\tNew York\tNew York\tPROPN\tNNP\t_\t0\troot\t_\t_\n"
        "\n", encoding="utf-8")
    out["conllu"] = str(d / "fr_gsd-ud-test.conllu")
    (d / "bad.conllu").write_text("# sent_id = a\n1\tok\tok\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
                                  "# sent_id = b\n1\tbroken\tNOUN\n\n"
                                  "# sent_id = c\n1\tfine\tfine\tADJ\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    out["bad.conllu"] = str(d / "bad.conllu")
    # CoNLL-2003 style: token POS chunk NER, -DOCSTART-, blank lines between sentences
    (d / "ner.conll").write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
                                 "German JJ B-NP B-MISC\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
                                 encoding="utf-8")
    out["ner.conll"] = str(d / "ner.conll")
    # tab-separated BIO: a token with a space in it stays one token
    (d / "ner.bio").write_text("New York\tB-LOC\nis\tO\nbig\tO\n", encoding="utf-8")
    out["ner.bio"] = str(d / "ner.bio")
    return out


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def one_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("xlt import: error: "), lines[0]
    assert proc.stdout == b""
    return lines[0][len("xlt import: error: "):]


def lib(*files: str, **options) -> list[dict]:
    from xlt.ingest.importer import import_records

    return list(import_records(list(files), **options))


# --- every local source kind ------------------------------------------------------------------------

def test_parquet_classlabel_integers_become_names(data):
    recs = records(run_xlt("import", data["xnli.parquet"], "--lang", "fr"))
    assert recs[0] == {"id": f"{data['xnli.parquet']}:1", "lang": "fr", "premise": PREMISES[0],
                       "hypothesis": "Music.", "label": "entailment"}
    assert [r["label"] for r in recs] == NLI_NAMES
    assert [r["id"] for r in recs] == [f"{data['xnli.parquet']}:{i}" for i in (1, 2, 3)]


def test_csv_map_labels_and_words_that_look_missing(data):
    recs = records(run_xlt("import", data["nli.csv"], "--map", "label=gold", "--lang", "en",
                           "--labels", "0=entailment,1=neutral,2=contradiction"))
    assert [r["label"] if "label" in r else None for r in recs] == ["entailment", "contradiction", None]
    assert recs[1]["premise"] == "NA, said the man" and recs[1]["hypothesis"] == "null"  # words, not NaN
    assert "label" not in recs[2]  # an empty cell is no label


def test_tsv_without_header_keeps_bare_quotes(data):
    recs = records(run_xlt("import", data["nli.tsv"], "--columns", "premise,hypothesis,label", "--lang", "hi"))
    assert [(r["premise"], r["hypothesis"], r["label"]) for r in recs] == [
        ('He said "hi".', "He spoke.", "entailment"), ("NA", '"quoted', "neutral")]


def test_json_document_and_jsonl(data):
    recs = records(run_xlt("import", data["nli.json"], "--map", "text=sentence,label=stars", "--lang", "fr"))
    assert recs == [{"id": f"{data['nli.json']}:1", "lang": "fr", "text": "Bon film.", "label": 5},
                    {"id": f"{data['nli.json']}:2", "lang": "fr", "text": "Bof.", "label": 2}]
    # JSONL goes through xlt's own reader: a line that is not a record is FILE:LINE, skippable
    proc = run_xlt("import", data["nli.jsonl"], "--on-error", "skip")
    recs = records(proc)
    assert [(r["id"], r["lang"], r["label"]) for r in recs] == [
        (f"{data['nli.jsonl']}:1", "de", "neutral"), (f"{data['nli.jsonl']}:3", "de", "entailment")]
    assert f"{data['nli.jsonl']}:2: expected a JSON object" in proc.stderr.decode()


def test_save_to_disk_dataset_dict(data):
    msg = one_error(run_xlt("import", data["disk"], "--lang", "en"))
    assert "give --split" in msg and "train, test" in msg
    recs = records(run_xlt("import", data["disk"], "--split", "train", "--lang", "en"))
    assert recs == [{"id": f"{data['disk']}/train:1", "lang": "en", "text": "good", "label": "pos"},
                    {"id": f"{data['disk']}/train:2", "lang": "en", "text": "bad", "label": "neg"}]
    # --labels a,b: ClassLabel index i -> the i-th name (rename by position)
    recs = records(run_xlt("import", data["disk"], "--split", "test", "--lang", "en", "--labels", "negative,positive"))
    assert recs[0]["label"] == "positive"


def test_conllu_skips_multiword_ranges_and_empty_nodes(data):
    recs = records(run_xlt("import", data["conllu"], "--lang", "fr"))
    assert recs[0] == {"id": "fr-1", "lang": "fr", "text": "Je l'ai vu au marché.",
                       "tokens": ["Je", "l'", "ai", "à", "le", "marché", "."],
                       "tags": ["PRON", "PRON", "AUX", "ADP", "DET", "NOUN", "PUNCT"]}
    assert recs[1] == {"id": "fr-2", "lang": "fr", "tokens": ["New York"], "tags": ["PROPN"]}  # a space in a word
    xpos = records(run_xlt("import", data["conllu"], "--lang", "fr", "--column", "xpos"))
    assert xpos[0]["tags"] == ["PRP", "PRP", "VB", "IN", "DT", "NN", "."]


def test_conll2003_and_bio_files(data):
    recs = records(run_xlt("import", data["ner.conll"], "--lang", "en"))
    path = data["ner.conll"]
    assert recs == [{"id": f"{path}:3", "lang": "en", "tokens": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]},
                    {"id": f"{path}:7", "lang": "en", "tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}]
    pos = records(run_xlt("import", data["ner.conll"], "--lang", "en", "--column", "2"))
    assert pos[0]["tags"] == ["NNP", "VBZ", "JJ"]
    bio = records(run_xlt("import", data["ner.bio"], "--lang", "en"))
    assert bio[0]["tokens"] == ["New York", "is", "big"] and bio[0]["tags"] == ["B-LOC", "O", "O"]


def test_stdin_conllu_and_empty_input(data):
    text = Path(data["conllu"]).read_text(encoding="utf-8")
    recs = records(run_xlt("import", "-", "--format", "conllu", "--lang", "fr", input=text))
    assert [r["id"] for r in recs] == ["fr-1", "fr-2"]
    assert records(run_xlt("import", "-", input="")) == []


# --- presets on local copies; the hub path is the same call with a name -----------------------------

@pytest.fixture
def hub(monkeypatch, data):
    """`datasets.load_dataset(NAME, CONFIG, split=..., streaming=...)` answered from a local copy."""
    import datasets

    real = datasets.load_dataset
    calls: list[tuple] = []
    copies: dict[str, str] = {}

    def fake(path, name=None, *args, split=None, streaming=False, **kwargs):
        if path in ("parquet", "csv", "json"):  # local files: the same function, with a builder name
            return real(path, name, *args, split=split, streaming=streaming, **kwargs)
        calls.append((path, name, split, streaming))
        assert path in copies, f"the test did not expect {path}"
        return real("parquet", data_files=copies[path], split="train", streaming=True)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return calls, copies


PRESET_CASES = {
    # preset: (hub dataset, local copy, config, expected first record)
    "xnli": ("facebook/xnli", "xnli.parquet", "fr",
             {"id": "facebook/xnli/test:1", "lang": "fr", "premise": PREMISES[0], "hypothesis": "Music.",
              "label": "entailment"}),
    "paws-x": ("google-research-datasets/paws-x", "pawsx.parquet", "fr",
               {"id": "4", "lang": "fr", "sentence1": "Il pleut.", "sentence2": "Il fait beau.", "label": 0}),
    "wikiann": ("unimelb-nlp/wikiann", "wikiann.parquet", "fr",
                {"id": "unimelb-nlp/wikiann/fr/test:1", "lang": "fr", "tokens": ["Jean Paul", "habite", "à", "Paris"],
                 "tags": ["B-PER", "O", "O", "B-LOC"]}),
    "pan-x": ("google/xtreme", "panx.parquet", "PAN-X.de",
              {"id": "google/xtreme/PAN-X.de/test:1", "lang": "de", "tokens": ["Angela", "Merkel", "besucht", "Paris"],
               "tags": ["B-PER", "I-PER", "O", "B-LOC"]}),
    "massive": ("AmazonScience/massive", "massive.parquet", "fr-FR",
                {"id": "0", "lang": "fr", "text": "réveille-moi à cinq heures",
                 "tokens": ["réveille-moi", "à", "cinq", "heures"], "tags": ["O", "O", "B-time", "I-time"],
                 "label": "alarm_set"}),
    "sentiment": ("mteb/amazon_reviews_multi", "sentiment.parquet", "fr",
                  {"id": "fr_1", "lang": "fr", "text": "Très bien !", "label": 4}),
}


@pytest.mark.parametrize("preset", sorted(PRESET_CASES))
def test_preset_on_a_local_copy_through_the_hub_call(preset, hub, data):
    calls, copies = hub
    dataset, copy, config, first = PRESET_CASES[preset]
    copies[dataset] = data[copy]
    recs = lib(preset=preset, config=config, split="test", streaming=True)
    assert calls == [(dataset, config, "test", True)]  # the same load_dataset call, with the hub name
    assert recs[0] == first
    # and the preset on the local file itself: the same records but for ids and the config's language
    local = lib(data[copy], preset=preset, lang=first["lang"])
    assert [{k: v for k, v in r.items() if k != "id"} for r in local] == [
        {k: v for k, v in r.items() if k != "id"} for r in recs]


def test_preset_xnli_needs_nothing_else_and_all_languages_explodes(hub, data):
    calls, copies = hub
    copies["facebook/xnli"] = data["xnli_all.parquet"]
    recs = lib(preset="xnli", config="all_languages", split="test", streaming=True)
    assert [(r["id"], r["lang"], r["premise"], r["hypothesis"], r["label"]) for r in recs] == [
        ("facebook/xnli/test:1", "de", "Ein Mann spielt.", "Musik.", "entailment"),
        ("facebook/xnli/test:1", "en", "A man plays.", "Music.", "entailment"),
        ("facebook/xnli/test:1", "fr", "Un homme joue.", "Musique.", "entailment"),
        ("facebook/xnli/test:2", "de", "Zwei Hunde.", "Katzen.", "contradiction"),
        ("facebook/xnli/test:2", "en", "Two dogs.", "Cats.", "contradiction"),
        ("facebook/xnli/test:2", "fr", "Deux chiens.", "Chats.", "contradiction")]
    # the ids are those of the per-language configs: xlt pair can join them
    copies["facebook/xnli"] = data["xnli.parquet"]
    assert lib(preset="xnli", config="fr", split="test", streaming=True)[0]["id"] == "facebook/xnli/test:1"
    assert [r["lang"] for r in lib(data["xnli_all.parquet"], preset="xnli", langs="fr")] == ["fr", "fr"]


def test_preset_ud_pos_on_conllu_files(data):
    recs = lib(data["conllu"], preset="ud-pos")  # the language from the UD file name
    assert [(r["id"], r["lang"], r["tags"][0]) for r in recs] == [("fr-1", "fr", "PRON"), ("fr-2", "fr", "PROPN")]
    with pytest.raises(UsageError, match="reads local files"):
        lib(preset="ud-pos")


def test_preset_massive_on_the_original_jsonl(tmp_path):
    # the MASSIVE release's own JSONL (intent as a string, locale per row)
    path = tmp_path / "fr-FR.jsonl"
    path.write_text(json.dumps({"id": "7", "locale": "fr-FR", "intent": "alarm_set", "utt": "réveille-moi",
                                "annot_utt": "réveille-moi [time : demain matin]"}) + "\n", encoding="utf-8")
    assert lib(str(path), preset="massive") == [
        {"id": "7", "lang": "fr", "text": "réveille-moi", "tokens": ["réveille-moi", "demain", "matin"],
         "tags": ["O", "B-time", "I-time"], "label": "alarm_set"}]


def test_hub_streams_large_or_unknown_splits_and_downloads_small_ones(hub, data, monkeypatch):
    import datasets

    calls, copies = hub
    copies["org/set"] = data["sentiment.parquet"]

    class Builder:
        cache_dir = str(Path(data["disk"]).parent / "no-cache-here")

        def __init__(self, size):
            splits = datasets.SplitDict()
            if size:
                splits.add(datasets.SplitInfo(name="test", num_bytes=size))
            self.info = datasets.DatasetInfo(splits=splits)

    for size, streamed in ((10_000, False), (5 << 30, True), (0, True)):
        monkeypatch.setattr(datasets, "load_dataset_builder", lambda name, config, s=size: Builder(s))
        lib(dataset="org/set", config="fr", split="test", lang="fr")
        assert calls[-1] == ("org/set", "fr", "test", streamed)


def test_hub_offline_is_one_line(tmp_path):
    proc = run_xlt("import", "--dataset", "no-such-org/no-such-dataset", "--split", "test",
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    msg = one_error(proc, code=proc.returncode)
    assert proc.returncode in (1, 2)
    assert "no-such-org/no-such-dataset" in msg and "HF_HUB_OFFLINE" in msg


# --- errors follow the contract ------------------------------------------------------------------------

def test_missing_column_names_it_and_the_columns_there_are(data):
    msg = one_error(run_xlt("import", data["nli.csv"], "--map", "label=gold_label", "--lang", "en"))
    assert msg == (f'{data["nli.csv"]}: no column "gold_label" (for --map label=gold_label); '
                   "the columns are: premise, hypothesis, gold")
    msg = one_error(run_xlt("import", data["xnli.parquet"], "--lang", "en", "--id-from", "pairID"))
    assert 'no column "pairID" (for --id-from pairID)' in msg and "premise, hypothesis, label" in msg
    msg = one_error(run_xlt("import", data["nli.json"], "--lang", "en"))
    assert "no column to take the text from" in msg and "sentence, stars" in msg


BAD_ROWS = {
    # name: (argv after `import`, location, message part, records kept under --on-error skip)
    "empty text": (["bad.parquet", "--lang", "en"], "bad.parquet:2", 'field "premise" is empty', 1),
    "label outside the set": (["nli.csv", "--lang", "en", "--map", "label=gold", "--labels", "0=e,1=n"],
                              "nli.csv:2", "label 2 is not one of 0, 1", 2),
    "not a record": (["nli.jsonl"], "nli.jsonl:2", "expected a JSON object, got list", 2),
    "bad CoNLL-U line": (["bad.conllu", "--lang", "en"], "bad.conllu:5", "expected 10 tab-separated", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_exit_2_with_its_location_and_skippable(case, data, tmp_path):
    args, where, what, kept = BAD_ROWS[case]
    argv = [data.get(args[0], args[0]), *args[1:]]
    out = tmp_path / "out.jsonl"
    msg = one_error(run_xlt("import", *argv, "-o", str(out)))
    assert msg.startswith(f"{data[where.split(':')[0]]}:{where.split(':')[1]}: ") and what in msg, msg
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    proc = run_xlt("import", *argv, "--on-error", "skip")
    assert len(records(proc)) == kept
    assert "skipped 1 bad record(s)" in proc.stderr.decode() and what in proc.stderr.decode()


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "x", "FILE"], "not both"),
    ([], "nothing to import"),
    (["--preset", "nope"], "unknown; one of xnli, paws-x"),
    (["FILE", "--lang", "fr", "--lang-from", "l"], "not both"),
    (["FILE", "--map", "premise"], "FIELD=COLUMN"),
    (["FILE", "--lang", "fr", "--split", "test"], "--split picks a split"),
    (["FILE", "--lang", "fr", "--config", "fr"], "--config"),
    (["FILE", "--lang", "fr", "--on-error", "maybe"], "--on-error"),
    (["FILE", "--lang", "fr", "--map", "premise=premise", "--map", "hypothesis=gold", "--map", "premise=gold"], "twice"),
    (["--dataset", "x"], "give --split"),
    (["nowhere.csv"], "no such file"),
    (["notes.txt"], "cannot tell the format"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, data, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    argv = [data["nli.csv"] if a == "FILE" else a for a in argv]
    assert message in one_error(run_xlt("import", *argv, cwd=tmp_path))


def test_a_file_its_reader_cannot_parse_is_one_line_exit_2(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "Expected 2 fields in line 3" in one_error(run_xlt("import", str(tmp_path / "bad.csv"), "--map", "text=a",
                                                              "--lang", "en"))
    assert "cannot read as parquet" in one_error(run_xlt("import", str(tmp_path / "bad.parquet"), "--lang", "en"))


def test_output_is_atomic_and_not_clobbered(data, tmp_path):
    out = tmp_path / "fr.jsonl"
    assert records(run_xlt("import", data["xnli.parquet"], "--lang", "fr", "-o", str(out))) == []
    assert len(out.read_text().splitlines()) == 3
    assert "exists" in one_error(run_xlt("import", data["xnli.parquet"], "--lang", "fr", "-o", str(out)))
    assert run_xlt("import", data["xnli.parquet"], "--lang", "de", "-o", str(out), "--force").returncode == 0
    assert json.loads(out.read_text().splitlines()[0])["lang"] == "de"


def test_output_into_head_is_quiet(data):
    proc = subprocess.run(f"{sys.executable} -m xlt import {data['xnli.parquet']} --lang fr | head -1", shell=True,
                          capture_output=True, executable="/bin/bash")
    assert proc.returncode == 0 and proc.stderr.decode().count("Traceback") == 0
    assert json.loads(proc.stdout)["lang"] == "fr"


def test_help_says_1_to_1_and_shows_a_pipe():
    text = run_xlt("import", "--help").stdout.decode()
    assert "1:1" in text and "1:N" in text and "| xlt eval" in text and "xnli" in text


def test_keep_and_other_columns_take_class_names(data):
    recs = records(run_xlt("import", data["wikiann.parquet"], "--preset", "wikiann", "--keep", "spans",
                           "--map", "bio=ner_tags"))
    assert recs[0]["spans"] == ["PER: Jean Paul", "LOC: Paris"] and recs[0]["bio"] == ["B-PER", "O", "O", "B-LOC"]
    assert "has a label field already" in one_error(run_xlt("import", data["xnli.parquet"], "--lang", "en",
                                                            "--keep", "label"))


# --- the library's pieces -----------------------------------------------------------------------------

def test_bracket_slots_golden():
    from xlt.errors import RecordError
    from xlt.ingest.conll import bracket_slots

    assert bracket_slots("wake me up at [time : five am] [date : this week]") == (
        ["wake", "me", "up", "at", "five", "am", "this", "week"],
        ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"])
    assert bracket_slots("no slots here") == (["no", "slots", "here"], ["O", "O", "O"])
    for bad in ("open [time : five", "[time : ] x", "x ] y"):
        with pytest.raises(RecordError):
            bracket_slots(bad)


def test_label_maps_and_language_codes():
    from xlt.errors import RecordError
    from xlt.ingest.mapping import LabelMap, _lang_code

    positional = LabelMap.parse("0,1")
    assert positional.values == (0, 1) and positional.index(1, ["0", "1"]) == 1 and positional.apply("1") == 1
    rename = LabelMap.parse("0=entailment,1=neutral")
    assert rename.apply(1) == "neutral" and rename.apply("0") == "entailment"
    with pytest.raises(RecordError, match="not one of 0, 1"):
        rename.apply(2)
    for bad in ("a,b=c", "a,a", ""):
        with pytest.raises(UsageError):
            LabelMap.parse(bad)
    assert [_lang_code(c) for c in ("fr", "fr-FR", "zh_CN", "PAN-X.de", "en_ewt", "all_languages", "default")] == [
        "fr", "fr", "zh", "de", "en", "all", None]


def test_library_errors_name_the_row(data):
    with pytest.raises(InputError, match=r"bad\.parquet:2: field \"premise\" is empty"):
        lib(data["bad.parquet"], lang="en")


# --- round trip: import -> teach -> eval --------------------------------------------------------------

def test_round_trip_import_teach_eval(tiny_bert, tmp_path):
    rows = ["premise,hypothesis,gold"]
    for i in range(12):
        rows.append(f"{PREMISES[i % 4]} number {i},It is {['true', 'unclear', 'false'][i % 3]}.,{i % 3}")
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    imported = tmp_path / "train.jsonl"
    proc = run_xlt("import", str(csv), "--map", "label=gold", "--labels", "0=entailment,1=neutral,2=contradiction",
                   "--lang", "en", "-o", str(imported))
    assert proc.returncode == 0, proc.stderr.decode()
    ckpt = tmp_path / "ckpt"
    proc = run_xlt("teach", str(imported), "--model", tiny_bert, "--out", str(ckpt), "--max-steps", "2")
    assert proc.returncode == 0, proc.stderr.decode()
    report = tmp_path / "report.json"
    proc = run_xlt("eval", "--model", str(ckpt), str(imported), "-o", str(report))
    assert proc.returncode == 0, proc.stderr.decode()
    rep = json.loads(report.read_text())
    assert rep["languages"]["en"]["n"] == 12
    assert 0.0 <= rep["languages"]["en"]["accuracy"] <= 1.0
