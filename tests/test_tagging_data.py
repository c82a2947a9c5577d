"""Tagging records through the data stages: perturb (swap/synonym keep each word's tag), translate
(unlabelled target words, tags left in `src`), pair (refused), import (CoNLL-U, CoNLL-2003), split,
the word splitter of translations, and the tagging samples shipped in samples/pos and samples/ner."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATA, run_xlt
from xlt.errors import UsageError
from xlt.records import check_tags
from xlt.tagging.words import join_words, split_words

UPOS = set("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())
NER_TAGS = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
POS = ROOT / "samples" / "pos"
NER = ROOT / "samples" / "ner"


def jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def parse(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode("utf-8").splitlines()]


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def one_error(proc, command: str) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr.decode()
    assert len(lines) == 1, lines
    prefix = f"xlt {command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


def tagged(rid: str, words: str, tags: str, **extra) -> dict:
    return {"id": rid, "lang": "en", "text": words.replace(" .", "."), "tokens": words.split(), "tags": tags.split(), **extra}


RECORDS = [
    tagged("t1", "The big dog runs in the park .", "DET ADJ NOUN VERB ADP DET NOUN PUNCT"),
    tagged("t2", "A happy man sits , the dog sleeps .", "DET ADJ NOUN VERB PUNCT DET NOUN VERB PUNCT"),
    tagged("t3", "Big dogs run fast in big parks .", "ADJ NOUN VERB ADV ADP ADJ NOUN PUNCT"),
]


def with_teacher(rec: dict) -> dict:
    """`rec` with per-word teacher outputs whose rows name their word (row i = [i, i + 0.5])."""
    n = len(rec["tokens"])
    return {**rec, "teacher": {"labels": ["A", "B"], "logits": [[i, i + 0.5] for i in range(n)],
                               "probs": [[0.25, 0.75]] * n, "temperature": 1.0}}


# --- the word splitter ------------------------------------------------------------------------

@pytest.mark.parametrize("text, lang, words", [
    ('The man, who is 25, said: "Hello!" (really...)', "en",
     ["The", "man", ",", "who", "is", "25", ",", "said", ":", '"', "Hello", "!", '"', "(", "really", "...", ")"]),
    ("I don't know O'Brien's well-known dog.", "en", ["I", "don't", "know", "O'Brien's", "well-known", "dog", "."]),
    ("Why?! $5 -- no", "en", ["Why", "?", "!", "$", "5", "--", "no"]),
    # French elision: the elided word keeps its apostrophe, as in UD French; aujourd'hui stays whole
    ("L'homme n'est pas là, dit-il.", "fr", ["L'", "homme", "n'", "est", "pas", "là", ",", "dit-il", "."]),
    ("l’homme d'aujourd'hui", "fr-CA", ["l’", "homme", "d'", "aujourd'hui"]),
    ("dell'anno", "it", ["dell'", "anno"]),
    ("l'homme", "en", ["l'homme"]),  # elision is split only for fr/it/ca
    # numbers: whitespace (NBSP and narrow NBSP too) separates, . and , between digits join
    ("25 000 habitants, 3,5 % et 1.000", "fr", ["25", "000", "habitants", ",", "3,5", "%", "et", "1.000"]),
    ("25\u00a0000 et 25\u202f000", "fr", ["25", "000", "et", "25", "000"]),
    # scripts without spaces: characters; Latin and digit runs inside stay whole
    ("我用iPhone手机拍了2024年的照片。", "zh", ["我", "用", "iPhone", "手", "机", "拍", "了", "2024", "年", "的", "照", "片", "。"]),
    ("東京タワーへ行きました！", "ja", ["東", "京", "タ", "ワ", "ー", "へ", "行", "き", "ま", "し", "た", "！"]),
    # Thai: one word per character, combining vowel and tone marks on their consonant
    ("ภาษาไทยง่าย", "th", ["ภ", "า", "ษ", "า", "ไ", "ท", "ย", "ง่", "า", "ย"]),
    ("हिंदी भाषा", "hi", ["हिंदी", "भाषा"]),  # Devanagari marks stay in their word
    ("U.S. e-mail", "en", ["U", ".", "S", ".", "e-mail"]),  # not a UD tokenizer: abbreviations split
    ("  \t ", "en", []),
])
def test_split_words_golden(text, lang, words):
    assert split_words(text, lang) == words


def test_split_words_are_substrings_without_spaces():
    rng = random.Random(3)
    alphabet = "ab 1,.'-我ภั\u00a0!é"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        for lang in ("en", "fr"):
            words = split_words(text, lang)
            assert all(w.strip() and not any(c.isspace() for c in w) for w in words)
            assert "".join(words) == "".join(c for c in text if not c.isspace())


def test_join_words():
    assert join_words(["The", "dog", ",", "a", "(", "big", ")", "one", "."]) == "The dog, a (big) one."
    assert join_words(["L'", "homme", "dort", "!"]) == "L'homme dort!"
    assert join_words(["我", "用", "iPhone", "手", "机", "。"]) == "我用 iPhone 手机。"
    assert split_words(join_words(["Le", "chien", "dort", "."]), "fr") == ["Le", "chien", "dort", "."]


# --- perturb ----------------------------------------------------------------------------------

def perturb_lib(tmp_path, records, method, **kwargs):
    from xlt.augment.perturb import PerturbReport, perturb_records

    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(records), encoding="utf-8")
    report = PerturbReport()
    return list(perturb_records([str(path)], method, report=report, **kwargs)), report


def test_swap_moves_tags_and_teacher_rows_with_their_words(tmp_path):
    from xlt.augment.perturb import SwapMethod

    records = [with_teacher(r) for r in RECORDS]
    out, report = perturb_lib(tmp_path, records, SwapMethod(p=0.6), copies=4, seed=1)
    assert [r["aug"]["copy"] for r in out] == [0, 1, 2, 3, 4] * 3
    moved = 0
    for r in out:
        src = next(x for x in records if x["id"] == r["id"])
        if r["aug"]["copy"] == 0:
            assert r == {**src, "aug": {"method": "swap", "copy": 0, "swapped": 0}}
            continue
        assert "text" not in r  # the sentence no longer matches the words
        check_tags(r)
        assert Counter(zip(r["tokens"], r["tags"])) == Counter(zip(src["tokens"], src["tags"]))
        # each teacher row followed its word: row [i, i + .5] sits where source word i went
        for word, tag, row in zip(r["tokens"], r["tags"], r["teacher"]["logits"]):
            i = int(row[0])
            assert (src["tokens"][i], src["tags"][i]) == (word, tag)
        assert r["teacher"]["labels"] == ["A", "B"] and len(r["teacher"]["probs"]) == len(r["tokens"])
        # punctuation stays in place
        assert [k for k, t in enumerate(r["tokens"]) if t in ",."] == [k for k, t in enumerate(src["tokens"]) if t in ",."]
        moved += r["tokens"] != src["tokens"]
        assert r["aug"]["swapped"] >= (r["tokens"] != src["tokens"])
    assert moved >= 6
    assert report.teachers_dropped == 0
    again, _ = perturb_lib(tmp_path, records, SwapMethod(p=0.6), copies=4, seed=1)
    assert again == out


def test_swap_drops_a_teacher_that_is_not_per_word(tmp_path):
    from xlt.augment.perturb import SwapMethod

    rec = {**RECORDS[0], "teacher": {"labels": ["A", "B"], "logits": [0.1, 0.9]}}  # a sentence-level output
    out, report = perturb_lib(tmp_path, [rec], SwapMethod(p=1.0), copies=1, original=False)
    assert "teacher" not in out[0] and report.teachers_dropped == 1
    assert any("lost their `teacher`" in w for w in report.warnings())


def test_synonym_keeps_tags_lengths_and_uses_one_word_synonyms(tmp_path):
    from xlt.augment.perturb import SynonymMethod
    from xlt.augment.synonyms import SynonymSet

    synset = SynonymSet({"dog": ("hound", "guard dog"), "big": ("large", "very big"), "park": ("garden",),
                         "happy": ("glad",), "runs": ("sprints",)})
    records = [with_teacher(r) for r in RECORDS]
    out, report = perturb_lib(tmp_path, records, SynonymMethod({"en": synset}), copies=5, seed=2)
    replaced = 0
    for r in out:
        src = next(x for x in records if x["id"] == r["id"])
        assert r["tags"] == src["tags"] and len(r["tokens"]) == len(src["tokens"])
        assert r["teacher"] == src["teacher"]  # the copy keeps the original's labels, like its tags
        if r["aug"]["copy"]:
            assert "text" not in r
            diff = [(a, b) for a, b in zip(src["tokens"], r["tokens"]) if a != b]
            assert r["aug"]["replaced"] == len(diff)
            assert all(" " not in b for _, b in diff)  # never a multiword synonym
            assert all(b.lower() in synset.neighbours(a.lower()) for a, b in diff)
            replaced += len(diff)
        else:
            assert r["text"] == src["text"]
    assert replaced > 5
    assert any(r["tokens"][0] in ("Large",) for r in out if r["id"] == "t3")  # case follows the word
    # left out once per record and word: "very big" (t1, t3 twice), "guard dog" (t1, t2)
    assert report.multiword == 5
    assert any("multiword synonym" in line for line in report.lines())


def test_perturb_cli_on_tagging_samples(tmp_path):
    src = read(POS / "en.jsonl")
    res = run_xlt("perturb", "--method", "swap", "--p", "0.3", "--copies", "2", "--no-original", str(POS / "en.jsonl"))
    assert res.returncode == 0, res.stderr.decode()
    out = parse(res.stdout)
    assert len(out) == 2 * len(src)
    for r in out:
        s = next(x for x in src if x["id"] == r["id"])
        check_tags(r)
        assert Counter(zip(r["tokens"], r["tags"])) == Counter(zip(s["tokens"], s["tags"]))


def test_methods_that_cannot_keep_tags_are_refused(tmp_path):
    from xlt.augment.perturb import Item, PerturbReport, perturb_records

    class Paraphrase:  # stands in for the round-trip method (no MT model needed to refuse)
        name, count_key, batch_size = "paraphrase", "changed", 1

        def variants(self, items: list[Item], copies: int, report: PerturbReport):
            raise AssertionError("never called for tagging records")

    path = tmp_path / "tags.jsonl"
    path.write_text(jsonl(RECORDS), encoding="utf-8")
    with pytest.raises(UsageError, match=rf"^{path}:1: --method paraphrase cannot perturb tagging records"):
        list(perturb_records([str(path)], Paraphrase()))
    with pytest.raises(UsageError, match=r"^--fields tagging: --method paraphrase"):
        list(perturb_records([str(path)], Paraphrase(), fields=("tokens",)))
    # the CLI refuses before loading a model
    err = one_error(run_xlt("perturb", "--method", "paraphrase", "--via", "fr", "--model", "/nonexistent",
                            "--fields", "tagging", str(path)), "perturb")
    assert err.startswith("--fields tagging: --method paraphrase cannot perturb tagging records (tokens + tags)")
    # tags that do not fit the words are a record error, before any swap
    bad = {**RECORDS[0], "tags": ["DET"]}
    err = one_error(run_xlt("perturb", "--method", "swap", input=jsonl([bad])), "perturb")
    assert err == '<stdin>:1: field "tags" has 1 tags for 8 tokens'


# --- translate --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    """A tiny random Marian en->fr model converted to CTranslate2: (ct2 dir, $XLT_HOME, translator)."""
    from test_mt_models import make_marian

    from xlt.mt import load_translator
    from xlt.mt.model import ensure_ct2

    hf = make_marian(str(tmp_path_factory.mktemp("marian-hf")))
    home = str(tmp_path_factory.mktemp("xlt-home"))
    old = os.environ.get("XLT_HOME")
    os.environ["XLT_HOME"] = home
    try:
        path, _ = ensure_ct2(hf, quantization="int8")
    finally:
        if old is None:
            del os.environ["XLT_HOME"]
        else:
            os.environ["XLT_HOME"] = old
    return path, home, load_translator(path, device="cpu", threads=1)


GREEDY = dict(beam_size=1, max_length=12)


def test_translate_tagging_records_gives_unlabelled_target_words(marian):
    from xlt.mt import TranslateReport, translate_records

    _, _, tr = marian
    recs = read(POS / "en.jsonl")[:6]
    recs[1] = {k: v for k, v in recs[1].items() if k != "text"}  # no text: the words are joined
    recs[2] = with_teacher({**recs[2], "meta": {"k": 1}})
    report = TranslateReport()
    out = list(translate_records(recs, tr, tgt="fr", report=report, **GREEDY))
    assert [o["id"] for o in out] == [r["id"] for r in recs] and report.wordless == 0
    for rec, o in zip(recs, out):
        assert o["lang"] == "fr" and "tags" not in o and "teacher" not in o
        assert o["tokens"] == split_words(o["text"], "fr") and o["tokens"]
        assert o["src"] == {"lang": "en", **{k: rec[k] for k in ("text", "tokens", "tags") if k in rec}}
        source = rec.get("text") or join_words(rec["tokens"])
        assert [o["text"]] == tr.translate_texts([source], src="en", tgt="fr", **GREEDY)[0]
    assert list(out[0]) == ["id", "lang", "text", "tokens", "src"]
    assert list(out[1]) == ["id", "lang", "text", "tokens", "src"]  # text put before the words
    assert out[2]["meta"] == {"k": 1}
    marked = list(translate_records(recs[:2], tr, tgt="fr", beam_size=2, num_hypotheses=2, max_length=12))
    assert [(o["id"], o["aug"]) for o in marked] == [(i, {"method": "translate", "hypothesis": h})
                                                     for i in ("pos-000", "pos-001") for h in (0, 1)]
    assert all(o["tokens"] == split_words(o["text"], "fr") for o in marked)


def test_translation_without_words_is_left_out():
    from xlt.mt.records import TranslateReport, tagging_translation

    rec = RECORDS[0]
    assert tagging_translation(rec, " . ", src="en", tgt="fr")["tokens"] == ["."]
    assert tagging_translation(rec, "   ", src="en", tgt="fr") is None
    assert any("had no words" in w for w in TranslateReport(wordless=2).warnings())


def test_translate_cli_tagging(marian):
    path, home, _ = marian
    res = run_xlt("translate", "-m", path, "--tgt", "fr", "--beam-size", "1", "--max-length", "10", "--threads", "1",
                  str(POS / "en.jsonl"), env={"XLT_HOME": home})
    assert res.returncode == 0, res.stderr.decode()
    out = parse(res.stdout)
    src = read(POS / "en.jsonl")
    assert [o["id"] for o in out] == [r["id"] for r in src]
    assert all(o["tokens"] == split_words(o["text"], "fr") and "tags" not in o and o["src"]["tags"] == r["tags"]
               for o, r in zip(out, src))


# --- pair -------------------------------------------------------------------------------------

def test_pair_refuses_tagging_records(tmp_path):
    en, fr = str(POS / "en.jsonl"), str(POS / "fr.jsonl")
    err = one_error(run_xlt("pair", "--src", "en", en, fr), "pair")
    assert err.startswith(f"{en}:1: pair takes sentence records, not tagging records (tokens + tags)")
    err = one_error(run_xlt("pair", "--all", "--fields", "tagging", en, fr), "pair")
    assert err.startswith("--fields tagging: pair takes sentence records")
    err = one_error(run_xlt("pair", "--src", "en", "--on-error", "skip", "-", input=jsonl(RECORDS)), "pair")
    assert err.startswith("<stdin>:1: pair takes sentence records")


# --- import -----------------------------------------------------------------------------------

CONLLU = """\
# newdoc id = d1
# sent_id = en-1
# text = I can't see the U.S. flag.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tsee\tsee\tVERB\tVB\t_\t0\troot\t_\t_
5\tthe\tthe\tDET\tDT\t_\t7\tdet\t_\t_
5.1\tsaw\tsee\tVERB\tVBD\t_\t_\t_\t4:conj\t_
6\tU.S.\tU.S.\tPROPN\tNNP\t_\t7\tcompound\t_\t_
7\tflag\tflag\tNOUN\tNN\t_\t4\tobj\t_\tSpaceAfter=No
8\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = en-2
# text = Dogs run.
1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\trun\trun\tVERB\tVBP\t_\t0\troot\t_\tSpaceAfter=No
3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_
"""

CONLL2003 = """\
-DOCSTART- -X- -X- O

Anna NNP B-NP B-PER
works VBZ B-VP O
in IN B-PP O
New NNP B-NP B-LOC
York NNP I-NP I-LOC
. . O O

-DOCSTART- -X- -X- O

Green NNP B-NP B-ORG
Bank NNP I-NP I-ORG
grows VBZ B-VP O
"""


def test_import_conllu_gives_the_udpos_shape(tmp_path):
    path = tmp_path / "en_test-ud-dev.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    res = run_xlt("import", str(path), "--lang", "en")
    assert res.returncode == 0, res.stderr.decode()
    recs = parse(res.stdout)
    assert recs == [
        {"id": "en-1", "lang": "en", "text": "I can't see the U.S. flag.",
         "tokens": ["I", "ca", "n't", "see", "the", "U.S.", "flag", "."],
         "tags": ["PRON", "AUX", "PART", "VERB", "DET", "PROPN", "NOUN", "PUNCT"]},
        {"id": "en-2", "lang": "en", "text": "Dogs run.", "tokens": ["Dogs", "run", "."], "tags": ["NOUN", "VERB", "PUNCT"]},
    ]
    for rec in recs:
        assert list(rec) == ["id", "lang", "text", "tokens", "tags"]  # the key order of ../shared/data/udpos
        check_tags(rec, has=UPOS.__contains__)
    assert parse(run_xlt("import", "--preset", "ud-pos", str(path)).stdout) == recs  # language from the file name
    udpos = SHARED_DATA / "udpos" / "ewt.dev.en.jsonl"
    if udpos.exists():
        with open(udpos, encoding="utf-8") as fh:
            assert list(json.loads(fh.readline())) == list(recs[0])


def test_import_conll2003_gives_tokens_and_bio_tags(tmp_path):
    path = tmp_path / "eng.testa"
    path.write_text(CONLL2003, encoding="utf-8")
    res = run_xlt("import", str(path), "--format", "conll", "--lang", "en")
    assert res.returncode == 0, res.stderr.decode()
    recs = parse(res.stdout)
    assert [(r["lang"], r["tokens"], r["tags"]) for r in recs] == [
        ("en", ["Anna", "works", "in", "New", "York", "."], ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
        ("en", ["Green", "Bank", "grows"], ["B-ORG", "I-ORG", "O"]),
    ]
    assert [r["id"] for r in recs] == [f"{path}:3", f"{path}:12"] and all("text" not in r for r in recs)


# --- split ------------------------------------------------------------------------------------

def test_split_partitions_tagging_records_by_id(tmp_path):
    parts = {}
    for lang in ("en", "fr"):
        a, b = tmp_path / f"{lang}.a.jsonl", tmp_path / f"{lang}.b.jsonl"
        res = run_xlt("split", str(POS / f"{lang}.jsonl"), "--into", f"{a}:0.5", "--into", f"{b}:0.5", "--seed", "3")
        assert res.returncode == 0, res.stderr.decode()
        parts[lang] = (read(a), read(b))
        whole = read(POS / f"{lang}.jsonl")
        assert sorted(parts[lang][0] + parts[lang][1], key=lambda r: r["id"]) == whole  # records unchanged
        assert parts[lang][0] and parts[lang][1]
    for k in (0, 1):  # parallel files split alike
        assert [r["id"] for r in parts["en"][k]] == [r["id"] for r in parts["fr"][k]]


# --- the samples --------------------------------------------------------------------------------

def test_pos_samples_are_parallel_upos_records():
    ids = None
    for lang in ("en", "fr", "de"):
        recs = read(POS / f"{lang}.jsonl")
        assert len(recs) == 24
        for r in recs:
            assert list(r) == ["id", "lang", "text", "tokens", "tags"] and r["lang"] == lang
            check_tags(r, has=UPOS.__contains__)
            assert not any(" " in w for w in r["tokens"])
        lang_ids = [r["id"] for r in recs]
        assert len(set(lang_ids)) == len(lang_ids)
        ids = ids or lang_ids
        assert lang_ids == ids
    tags = Counter(t for lang in ("en", "fr", "de") for r in read(POS / f"{lang}.jsonl") for t in r["tags"])
    assert len(tags) >= 14


def test_ner_sample_is_valid_bio():
    recs = read(NER / "en.jsonl")
    assert len(recs) == 12
    types = Counter()
    for r in recs:
        assert list(r) == ["id", "lang", "text", "tokens", "tags"] and r["lang"] == "en"
        check_tags(r, has=NER_TAGS.__contains__)
        prev = "O"
        for tag in r["tags"]:
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], r  # I- continues an entity of its type
            if tag.startswith("B-"):
                types[tag[2:]] += 1
            prev = tag
    assert set(types) == {"PER", "LOC", "ORG"}
