"""`xlt perturb` and xlt.augment: synonym replacement and adjacent swaps for robust training."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlt.augment.perturb import PerturbReport, SwapMethod, SynonymMethod, perturb_records
from xlt.augment.synonyms import ENGLISH_STOPWORDS, SynonymSet, load_synonyms, parse_lang_specs
from xlt.augment.text import match_case, split_units
from xlt.errors import InputError, UsageError

SYNONYMS = """\
dog hound pooch
happy glad cheerful
runs sprints jogs
big large huge
park garden
not never
man guy
"""

RECORDS = [
    {"id": "a1", "lang": "en", "premise": "The big dog runs in the park.", "hypothesis": "A happy man is not sad.", "label": "neutral"},
    {"id": "a2", "lang": "en", "premise": "Dog, DOG and dog!", "hypothesis": "The man runs.", "label": "entailment", "genre": "x"},
    {"id": "a3", "lang": "en", "premise": "Big happy dogs.", "hypothesis": "The park is big.", "label": "contradiction"},
]


def jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def parse(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode("utf-8").splitlines()]


@pytest.fixture
def synfile(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text(SYNONYMS, encoding="utf-8")
    return str(path)


@pytest.fixture
def infile(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(RECORDS), encoding="utf-8")
    return str(path)


def run_lib(tmp_path, records, method, **kwargs):
    path = tmp_path / "lib.jsonl"
    path.write_text(jsonl(records), encoding="utf-8")
    report = PerturbReport()
    return list(perturb_records([str(path)], method, report=report, **kwargs)), report


# ---------------------------------------------------------------- word units


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_split_units_is_lossless(text):
    units = split_units(text)
    assert units.text() == text
    for word in units.words:
        assert word and not any(c.isspace() for c in word)


def test_split_units_words_punctuation_and_scripts():
    assert split_units("Dog, cat's well-known.").words == ["Dog", "cat's", "well-known"]
    assert split_units("他说，妈妈").words == ["他", "说", "妈", "妈"]
    assert split_units("我用iPhone拍").words == ["我", "用", "iPhone", "拍"]
    assert split_units("ผมอยู่").words == ["ผ", "ม", "อ", "ยู่"]  # vowel and tone marks stay on their consonant
    assert split_units("フォー・リ").words == ["フ", "ォ", "ー", "リ"]  # the middle dot is punctuation
    syn = load_synonyms_from(["妈妈 母亲", "homme type"])
    assert split_units("他说妈妈", lexicon=syn).words == ["他", "说", "妈妈"]  # longest known word first
    assert split_units("l'homme", lexicon=syn).words == ["l", "homme"]  # unknown joined word split


def load_synonyms_from(lines):
    return SynonymSet({line.split()[0]: tuple(line.split()[1:]) for line in lines})


def test_match_case():
    assert match_case("Dog", "hound") == "Hound"
    assert match_case("DOG", "hound") == "HOUND"
    assert match_case("dog", "hound") == "hound"
    assert match_case("I", "we") == "We"


# ---------------------------------------------------------------- synonym sets


def test_synonym_formats_merge_and_lowercase(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a b\na c\nb a\n# comment\n\nA a\nD e\n", encoding="utf-8")
    syn = load_synonyms(str(pairs))
    assert syn.neighbours("a") == ("b", "c")  # merged lines, never itself
    assert syn.neighbours("b") == ("a",)
    assert syn.neighbours("d") == ("e",)
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"Movie": ["film", "FILMS"], "br": []}), encoding="utf-8")
    syn = load_synonyms(str(js))
    assert syn.neighbours("movie") == ("film", "films") and syn.neighbours("br") == ()
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ["b"],\n "c": }', encoding="utf-8")
    with pytest.raises(InputError, match="bad.json:2: invalid JSON"):
        load_synonyms(str(bad))
    bad.write_text('{"a": "b"}', encoding="utf-8")
    with pytest.raises(InputError, match='"a": expected a list'):
        load_synonyms(str(bad))
    with pytest.raises(UsageError, match="no such file"):
        load_synonyms(str(tmp_path / "missing.json"))


def test_lang_specs():
    assert parse_lang_specs(["fr=a.txt", "b.json", "pt-BR=c"], "--synonyms") == {"fr": "a.txt", "*": "b.json", "pt-BR": "c"}
    assert parse_lang_specs(["dir/x=y.txt"], "--synonyms") == {"*": "dir/x=y.txt"}
    with pytest.raises(UsageError, match="given twice"):
        parse_lang_specs(["a.txt", "b.txt"], "--synonyms")


def test_counterfitted_and_ppdb_sets_load(shared_data):
    syn = load_synonyms(str(shared_data / "synonyms" / "counterfitted_neighbors.json"))
    assert len(syn) > 40000
    assert "hound" in syn.neighbours("dog")
    ppdb = load_synonyms(str(shared_data / "synonyms" / "ppdb_synonyms.txt"))
    assert "medieval" in ppdb.neighbours("mediaeval") and "modeling" in ppdb.neighbours("modelling")


# ---------------------------------------------------------------- synonym replacement (library)


def test_synonym_uses_only_listed_synonyms_and_keeps_case_and_punctuation(tmp_path, synfile):
    syn = load_synonyms(synfile)
    method = SynonymMethod({"*": syn}, {}, max_rate=1.0)
    out, report = run_lib(tmp_path, RECORDS, method, copies=20, seed=1)
    assert report.copies_out == 60 and report.records_out == 63
    by_id = {r["id"]: r for r in RECORDS}
    changed = 0
    for rec in out:
        src = by_id[rec["id"]]
        for f in ("premise", "hypothesis"):
            a, b = split_units(src[f], lexicon=syn), split_units(rec[f], lexicon=syn)
            # punctuation and spaces are where they were
            assert [p for i, p in enumerate(a.pieces) if i not in a.index] == [p for i, p in enumerate(b.pieces) if i not in b.index]
            for old, new in zip(a.words, b.words):
                if new != old:
                    changed += 1
                    assert new.lower() in syn.neighbours(old.lower())
                    assert new == match_case(old, new.lower())
    assert changed == report.changed > 0
    # "Dog, DOG and dog!" -> every copy keeps each case pattern and the comma and the bang
    for rec in out:
        if rec["id"] == "a2":
            w = rec["premise"].replace(",", "").replace("!", "").split()
            assert w[0][0].isupper() and w[0][1:].islower() and w[1].isupper() and w[3].islower()
            assert rec["premise"].count(",") == 1 and rec["premise"].endswith("!")


def test_dog_comma_becomes_hound_comma(tmp_path):
    syn = load_synonyms_from(["dog hound"])
    out, _ = run_lib(tmp_path, [{"id": "1", "lang": "en", "text": "Dog, he said."}], SynonymMethod({"en": syn}, {}),
                     copies=30, original=False)
    assert {r["text"] for r in out} == {"Dog, he said.", "Hound, he said."}


def test_max_rate_bound_holds(tmp_path, synfile):
    syn = load_synonyms(synfile)
    text = "dog happy runs big park man dog happy runs big"  # 10 words, all with synonyms
    recs = [{"id": str(i), "lang": "en", "text": text} for i in range(30)]
    out, report = run_lib(tmp_path, recs, SynonymMethod({"en": syn}, {}, max_rate=0.3), copies=5, original=False)
    counts = [r["aug"]["replaced"] for r in out]
    assert max(counts) == 3  # floor(0.3 * 10), reached
    for r in out:
        assert sum(a != b for a, b in zip(text.split(), r["text"].split())) == r["aug"]["replaced"] <= 3
    out, _ = run_lib(tmp_path, recs, SynonymMethod({"en": syn}, {}), copies=5, original=False)
    assert max(r["aug"]["replaced"] for r in out) > 3  # without the cap more are replaced


def test_stopwords_kept_by_default(tmp_path, synfile):
    syn = load_synonyms(synfile)
    recs = [{"id": "1", "lang": "en", "text": "not not not not not not not not"}]
    out, report = run_lib(tmp_path, recs, SynonymMethod({"*": syn}, {"en": ENGLISH_STOPWORDS}), copies=5, original=False)
    assert all(r["text"] == recs[0]["text"] for r in out) and report.stopwords == 8
    out, _ = run_lib(tmp_path, recs, SynonymMethod({"*": syn}, {}), copies=5, original=False)
    assert any("never" in r["text"] for r in out)


def test_language_without_synonym_set_passes_once_and_is_reported(tmp_path, synfile):
    syn = load_synonyms(synfile)
    recs = [{"id": "1", "lang": "de", "text": "Der Hund läuft."}, {"id": "2", "lang": "en", "text": "The dog runs."},
            {"id": "3", "lang": "en", "langs": {"premise": "en", "hypothesis": "de"}, "premise": "dog dog dog",
             "hypothesis": "Hund Hund"}]
    out, report = run_lib(tmp_path, recs[:2], SynonymMethod({"en": syn}, {}), copies=3, original=False)
    assert [(r["id"], r["aug"]["copy"]) for r in out] == [("1", 0), ("2", 1), ("2", 2), ("2", 3)]
    assert out[0]["text"] == "Der Hund läuft."
    assert report.passed == {"de": 1} and report.unchanged == 1
    assert any("language de" in w for w in report.warnings())
    out, report = run_lib(tmp_path, recs[2:], SynonymMethod({"en": syn}, {}), copies=10, original=False, fields=("premise", "hypothesis"))
    assert all(r["hypothesis"] == "Hund Hund" for r in out) and any(r["premise"] != "dog dog dog" for r in out)
    assert report.passed == {"de": 1} and report.unchanged == 0


def test_zero_coverage_language_is_reported_as_noop(tmp_path, synfile):
    syn = load_synonyms(synfile)
    _, report = run_lib(tmp_path, [{"id": "1", "lang": "zh", "text": "他说妈妈回来了"}], SynonymMethod({"*": syn}, {}), copies=2)
    assert any("language zh" in w and "no-op" in w for w in report.warnings())


def test_chinese_synonym_set_matches_words(tmp_path):
    syn = load_synonyms_from(["妈妈 母亲"])
    out, report = run_lib(tmp_path, [{"id": "1", "lang": "zh", "text": "他说，妈妈，我回来了。"}], SynonymMethod({"zh": syn}, {}),
                          copies=20, original=False)
    assert {r["text"] for r in out} == {"他说，妈妈，我回来了。", "他说，母亲，我回来了。"}
    assert report.covered == 1 and report.candidates == 7  # 他 说 妈妈 我 回 来 了


# ---------------------------------------------------------------- swap (library)


def test_swap_rate_near_p(tmp_path):
    n_words, n_recs, p = 50, 400, 0.1
    recs = [{"id": str(i), "lang": "en", "text": " ".join(f"w{j}" for j in range(n_words))} for i in range(n_recs)]
    out, report = run_lib(tmp_path, recs, SwapMethod(p=p), copies=1, original=False, seed=7)
    words = [f"w{j}" for j in range(n_words)]
    swaps = 0
    for r in out:
        final = r["text"].split()
        assert sorted(final) == sorted(words)
        # pair i is the last to touch position i, and word i+1 is still in place then
        seen = sum(final[i] == words[i + 1] for i in range(n_words - 1))
        assert seen == r["aug"]["swapped"]
        swaps += seen
    pairs = n_recs * (n_words - 1)
    sd = math.sqrt(pairs * p * (1 - p))
    assert abs(swaps - p * pairs) < 5 * sd


def test_swap_on_chinese_swaps_characters_and_keeps_punctuation(tmp_path):
    text = "他说，妈妈，我回来了。"
    out, _ = run_lib(tmp_path, [{"id": "1", "lang": "zh", "text": text}], SwapMethod(p=0.5), copies=10, original=False)
    changed = [r["text"] for r in out if r["text"] != text]
    assert changed, "swap on Chinese must not be a no-op"
    for t in changed:
        assert sorted(t) == sorted(text)
        assert [i for i, c in enumerate(t) if c in "，。"] == [i for i, c in enumerate(text) if c in "，。"]


def test_swap_keeps_punctuation_in_place(tmp_path):
    out, _ = run_lib(tmp_path, [{"id": "1", "text": "One, two; three."}], SwapMethod(p=1.0), copies=1, original=False)
    assert out[0]["text"] == "two, three; One."  # each pair swapped in turn: "One" travels to the end, with its case


# ---------------------------------------------------------------- the command


def test_cli_copies_original_and_preserved_fields(xlt, infile, synfile):
    res = xlt("perturb", "--copies", "3", "--synonyms", synfile, infile)
    assert res.returncode == 0, res.stderr
    out = parse(res.stdout)
    assert len(out) == 12
    for i, src in enumerate(RECORDS):
        group = out[4 * i:4 * i + 4]
        assert [r["aug"]["copy"] for r in group] == [0, 1, 2, 3]
        assert group[0] == {**src, "aug": {"method": "synonym", "copy": 0, "replaced": 0}}
        for r in group:
            assert (r["id"], r["label"], r["lang"], r.get("genre")) == (src["id"], src["label"], src["lang"], src.get("genre"))
            assert r["aug"]["method"] == "synonym"
    err = res.stderr.decode()
    assert "read 3 record(s), wrote 12" in err and "coverage" in err and "words without synonyms" in err
    res = xlt("perturb", "--copies", "3", "--no-original", "--synonyms", synfile, infile)
    out = parse(res.stdout)
    assert len(out) == 9 and all(r["aug"]["copy"] > 0 for r in out)


def test_cli_deterministic_by_seed(xlt, infile, synfile):
    args = ("perturb", "--copies", "5", "--synonyms", synfile, infile)
    a, b = xlt(*args, "--seed", "1"), xlt(*args, "--seed", "1")
    c = xlt(*args, "--seed", "2")
    assert a.returncode == 0 and a.stdout == b.stdout
    assert a.stdout != c.stdout
    s1, s2 = xlt("perturb", "--method", "swap", "--p", "0.5", "--seed", "3", infile), xlt("perturb", "--method", "swap", "--p", "0.5", "--seed", "3", infile)
    assert s1.stdout == s2.stdout and s1.stdout != xlt("perturb", "--method", "swap", "--p", "0.5", "--seed", "4", infile).stdout


def test_cli_shards_partition_the_output(xlt, infile, synfile):
    full = xlt("perturb", "--copies", "2", "--synonyms", synfile, infile).stdout.decode().splitlines()
    parts = [xlt("perturb", "--copies", "2", "--synonyms", synfile, "--shard", f"{k}/2", infile).stdout.decode().splitlines()
             for k in (1, 2)]
    assert parts[0] == full[0:3] + full[6:9] and parts[1] == full[3:6]


def test_cli_language_without_set_warns(xlt, synfile):
    recs = [{"id": "1", "lang": "de", "text": "Der Hund."}, {"id": "2", "lang": "de", "text": "Ein Hund."}]
    res = xlt("perturb", "--copies", "3", "--synonyms", f"en={synfile}", input=jsonl(recs))
    assert res.returncode == 0
    assert [r["aug"]["copy"] for r in parse(res.stdout)] == [0, 0]
    err = res.stderr.decode()
    assert err.count("no synonym set for language de: its text passes unchanged") == 1  # warned once
    assert "2 text field(s) passed unchanged: no synonym set for language de" in err  # and counted


def test_cli_stopword_options(xlt, synfile, tmp_path):
    rec = [{"id": "1", "lang": "en", "text": "not not not not not not dog"}]
    keep = parse(xlt("perturb", "--copies", "5", "--no-original", "--synonyms", synfile, input=jsonl(rec)).stdout)
    assert all(r["text"].startswith("not not not not not not") for r in keep)
    repl = parse(xlt("perturb", "--copies", "5", "--no-original", "--replace-stopwords", "--synonyms", synfile, input=jsonl(rec)).stdout)
    assert any("never" in r["text"] for r in repl)
    stop = tmp_path / "stop.txt"
    stop.write_text("dog\n", encoding="utf-8")
    own = parse(xlt("perturb", "--copies", "5", "--no-original", "--stopwords", f"en={stop}", "--synonyms", synfile,
                    input=jsonl(rec)).stdout)
    assert all(r["text"].endswith("dog") for r in own) and any("never" in r["text"] for r in own)


def test_cli_perturbs_twice_keeping_history(xlt, infile, synfile):
    first = xlt("perturb", "--synonyms", synfile, "--no-original", infile)
    second = xlt("perturb", "--method", "swap", "--no-original", input=first.stdout)
    out = parse(second.stdout)
    assert out[0]["aug"]["method"] == "swap" and out[0]["aug"]["from"]["method"] == "synonym"


@pytest.mark.parametrize("args,msg", [
    (["--p", "0.2", "--synonyms", "X"], "--p: only for --method swap"),
    (["--method", "swap", "--synonyms", "X"], "--synonyms: only for --method synonym"),
    (["--method", "swap", "--replace-stopwords"], "only for --method synonym"),
    ([], "needs a synonym set"),
    (["--method", "swap", "--p", "0"], "--p must be in (0, 1]"),
    (["--method", "swap", "--copies", "0"], "--copies must be at least 1"),
    (["--method", "flip"], "--method must be one of"),
    (["--max-rate", "0", "--synonyms", "SYN"], "--max-rate must be in (0, 1]"),
    (["--synonyms", "missing.json"], "missing.json: no such file"),
])
def test_cli_usage_errors(xlt, synfile, args, msg):
    args = [synfile if a == "SYN" else a for a in args]
    res = xlt("perturb", *args, input=jsonl(RECORDS))
    assert res.returncode == 2
    assert msg in res.stderr.decode() and res.stderr.decode().startswith("xlt perturb: error:")


# ---------------------------------------------------------------- contract tests


def test_contract_empty_input_and_stdin(xlt, synfile, infile):
    res = xlt("perturb", "--synonyms", synfile, input="")
    assert res.returncode == 0 and res.stdout == b""
    a = xlt("perturb", "--synonyms", synfile, "-", input=jsonl(RECORDS))
    b = xlt("perturb", "--synonyms", synfile, infile)
    assert a.returncode == 0 and a.stdout == b.stdout and len(parse(a.stdout)) == 6


def test_contract_bad_json_names_file_and_line(xlt, synfile, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl(RECORDS[:1]) + "{not json\n", encoding="utf-8")
    res = xlt("perturb", "--method", "swap", str(bad))
    assert res.returncode == 2
    assert f"{bad}:2: invalid JSON" in res.stderr.decode()
    res = xlt("perturb", "--method", "swap", input=jsonl(RECORDS[:1]) + '{"id": "x", "lang": "en"}\n')
    assert res.returncode == 2 and "<stdin>:2:" in res.stderr.decode()
    res = xlt("perturb", "--method", "swap", "--on-error", "skip", input=jsonl(RECORDS[:1]) + "[1]\n")
    assert res.returncode == 0 and len(parse(res.stdout)) == 2 and "skipped 1" in res.stderr.decode()


def test_contract_head(synfile, infile):
    big = "\n".join([jsonl(RECORDS).strip()] * 3000) + "\n"
    cmd = f"{sys.executable} -m xlt perturb --copies 3 --synonyms {synfile} | head -1"
    res = subprocess.run(["bash", "-c", cmd], input=big.encode(), capture_output=True, timeout=120)
    assert res.returncode == 0
    assert len(res.stdout.decode().splitlines()) == 1
    assert b"Traceback" not in res.stderr and b"Broken pipe" not in res.stderr


def test_contract_output_file_refused_without_force(xlt, synfile, infile, tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("keep\n", encoding="utf-8")
    res = xlt("perturb", "--synonyms", synfile, "-o", str(target), infile)
    assert res.returncode == 2 and "--force" in res.stderr.decode()
    assert target.read_text(encoding="utf-8") == "keep\n"
    res = xlt("perturb", "--synonyms", synfile, "-o", str(target), "--force", infile)
    assert res.returncode == 0 and len(target.read_text(encoding="utf-8").splitlines()) == 6


# ---------------------------------------------------------------- paraphrase (round-trip translation)


@pytest.fixture(scope="session")
def m2m(tmp_path_factory):
    """A tiny random M2M-100 (garbage translations: the tests check structure), converted once."""
    import os

    pytest.importorskip("ctranslate2")
    from test_mt_models import make_m2m100

    from xlt.mt import load_translator

    root = tmp_path_factory.mktemp("mt")
    model = make_m2m100(str(root / "m2m"))
    home = str(root / "home")
    old = os.environ.get("XLT_HOME")
    os.environ["XLT_HOME"] = home
    try:
        translator = load_translator(model, device="cpu", threads=1)
    finally:
        if old is None:
            del os.environ["XLT_HOME"]
        else:
            os.environ["XLT_HOME"] = old
    return model, home, translator


def fresh_translator(m2m):
    """A new translator: CTranslate2 seeds a worker thread's generator on its first use, so a
    seed takes effect only on a translator that has not sampled yet."""
    import os

    from xlt.mt import load_translator

    model, home, _ = m2m
    old = os.environ.get("XLT_HOME")
    os.environ["XLT_HOME"] = home  # converted already: found in the cache
    try:
        return load_translator(model, device="cpu", threads=1)
    finally:
        if old is None:
            del os.environ["XLT_HOME"]
        else:
            os.environ["XLT_HOME"] = old


PARA = [{"id": "p1", "lang": "en", "premise": "The man sits in the park.", "hypothesis": "A man is outside.", "label": "entailment"},
        {"id": "p2", "lang": "fr", "premise": "Le chien mange.", "hypothesis": "Le chat dort.", "label": "neutral"},
        {"id": "p3", "lang": "en", "premise": "She reads a book.", "hypothesis": "She is happy.", "label": "neutral"}]


def test_paraphrase_round_trip_structure_and_seed(tmp_path, m2m):
    from xlt.augment.paraphrase import ParaphraseMethod

    out, report = run_lib(tmp_path, PARA, ParaphraseMethod(fresh_translator(m2m), "fr", seed=1, batch_size=2), copies=3)
    assert [(r["id"], r["aug"]["copy"]) for r in out] == [("p1", 0), ("p1", 1), ("p1", 2), ("p1", 3), ("p2", 0),
                                                          ("p3", 0), ("p3", 1), ("p3", 2), ("p3", 3)]
    for r in out:
        src = next(p for p in PARA if p["id"] == r["id"])
        assert (r["label"], r["lang"]) == (src["label"], src["lang"])
        if r["aug"]["copy"]:
            assert r["aug"]["via"] == "fr" and r["aug"]["changed"] == sum(r[f] != src[f] for f in ("premise", "hypothesis"))
            assert r["premise"].strip() and r["hypothesis"].strip()
    assert any(r["aug"].get("changed") for r in out)
    # the French record is in the pivot language: written once, unchanged, and reported
    assert report.passed == {"fr": 2} and report.unchanged == 1
    assert "pivot" in report.reasons["fr"]
    again, _ = run_lib(tmp_path, PARA, ParaphraseMethod(fresh_translator(m2m), "fr", seed=1, batch_size=2), copies=3)
    other, _ = run_lib(tmp_path, PARA, ParaphraseMethod(fresh_translator(m2m), "fr", seed=2, batch_size=2), copies=3)
    assert again == out and other != out


def test_paraphrase_options_are_checked(m2m):
    from xlt.augment.paraphrase import ParaphraseMethod

    _, _, tr = m2m
    with pytest.raises(UsageError, match="--via xx"):
        ParaphraseMethod(tr, "xx")
    with pytest.raises(UsageError, match="--temperature"):
        ParaphraseMethod(tr, "fr", temperature=0)
    # n best of a beam instead of samples: the copies are distinct forward translations
    method = ParaphraseMethod(tr, "de", sampling_topk=1, beam_size=1)
    out = method.variants([_item(PARA[0])], 3, PerturbReport())
    assert len(out[0]) == 3


def _item(rec):
    import random

    from xlt.augment.perturb import Item

    return Item(0, rec, (rec["premise"], rec["hypothesis"]), (rec["lang"], rec["lang"]), random.Random(0))


def test_cli_paraphrase(xlt, m2m, tmp_path):
    model, home, _ = m2m
    args = ("perturb", "--method", "paraphrase", "--via", "de", "--model", model, "--copies", "2", "--device", "cpu",
            "--threads", "1")
    res = xlt(*args, "--seed", "5", input=jsonl(PARA), env={"XLT_HOME": home})
    assert res.returncode == 0, res.stderr.decode()
    out = parse(res.stdout)
    assert [r["aug"]["copy"] for r in out] == [0, 1, 2] * 3
    assert res.stdout == xlt(*args, "--seed", "5", input=jsonl(PARA), env={"XLT_HOME": home}).stdout
    bad = xlt("perturb", "--method", "paraphrase", "--via", "de", input=jsonl(PARA))
    assert bad.returncode == 2 and "needs --via LANG and --model MT" in bad.stderr.decode()
    bad = xlt("perturb", "--method", "swap", "--via", "de", input=jsonl(PARA))
    assert bad.returncode == 2 and "--via: only for --method paraphrase" in bad.stderr.decode()
