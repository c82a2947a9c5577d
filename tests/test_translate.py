"""`xlt translate` and `xlt.mt`: tiny random Marian and M2M-100 models (real SentencePiece
tokenizers) built and converted once per session; greedy decoding, so runs are deterministic.
Random weights give garbage text: these tests check structure, order, language tokens, errors."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_xlt
from test_mt_models import make_m2m100, make_marian, sentences

MERGE = str(ROOT / "bin" / "merge-shards")
SLURM = str(ROOT / "bin" / "slurm-translate.sh")


@contextlib.contextmanager
def env_var(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# -- fixtures: models built and converted once ------------------------------------------------


@pytest.fixture(scope="session")
def mt_home(tmp_path_factory) -> str:
    """$XLT_HOME for this session (the conversion cache lives in it)."""
    return str(tmp_path_factory.mktemp("xlt-home"))


@pytest.fixture(scope="session")
def marian_hf(tmp_path_factory) -> str:
    return make_marian(str(tmp_path_factory.mktemp("marian-hf")))


@pytest.fixture(scope="session")
def m2m_hf(tmp_path_factory) -> str:
    return make_m2m100(str(tmp_path_factory.mktemp("m2m-hf")))


def _convert(hf_dir: str, home: str) -> str:
    from xlt.mt.model import ensure_ct2

    with env_var("XLT_HOME", home):
        path, _ = ensure_ct2(hf_dir, quantization="int8")
    return path


@pytest.fixture(scope="session")
def marian_ct2(marian_hf, mt_home) -> str:
    return _convert(marian_hf, mt_home)


@pytest.fixture(scope="session")
def m2m_ct2(m2m_hf, mt_home) -> str:
    return _convert(m2m_hf, mt_home)


@pytest.fixture(scope="session")
def marian(marian_ct2):
    from xlt.mt import load_translator

    return load_translator(marian_ct2, device="cpu", threads=2)


@pytest.fixture(scope="session")
def m2m(m2m_ct2):
    from xlt.mt import load_translator

    return load_translator(m2m_ct2, device="cpu", threads=2)


@pytest.fixture
def mt(mt_home):
    """Run the real CLI with this session's conversion cache."""

    def run(*args: str, input: str | bytes | None = None):
        return run_xlt(*args, input=input, env={"XLT_HOME": mt_home})

    return run


def nli_records(n: int = 30, lang: str = "en") -> list[dict]:
    texts = sentences(2 * n, seed=7)
    labels = ["entailment", "neutral", "contradiction"]
    return [{"id": f"r{i}", "lang": lang, "premise": texts[2 * i], "hypothesis": texts[2 * i + 1],
             "label": labels[i % 3], "meta": {"k": i}} for i in range(n)]


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def lines(stdout: bytes) -> list[dict]:
    return [json.loads(x) for x in stdout.decode().splitlines()]


GREEDY = dict(beam_size=1, max_length=12)


# -- conversion and the cache -----------------------------------------------------------------


def test_converted_dir_is_self_contained(marian_ct2, m2m_ct2, marian, tmp_path):
    from xlt.mt import load_translator

    for path, family, tok_class in ((marian_ct2, "marian", "MarianTokenizer"), (m2m_ct2, "m2m100", "M2M100Tokenizer")):
        names = set(os.listdir(path))
        assert {"model.bin", "config.json", "tokenizer_config.json", "xlt-mt.json"} <= names
        meta = json.loads(Path(path, "xlt-mt.json").read_text())
        assert meta["tokenizer_class"] == tok_class and meta["quantization"] == "int8"
        assert meta["max_input_length"] == 64 and meta["source_kind"] == "hf"
        assert json.loads(Path(path, "config.json").read_text())["eos_token"] == "</s>"  # CTranslate2's own
    copy = shutil.copytree(marian_ct2, tmp_path / "moved")
    moved = load_translator(str(copy), device="cpu", threads=1)
    assert moved.family == "marian"
    texts = sentences(5, seed=3)
    assert moved.translate_texts(texts, src="en", tgt="fr", **GREEDY) == marian.translate_texts(texts, src="en", tgt="fr", **GREEDY)


def test_m2m_vocabulary_has_language_tokens_at_tokenizer_ids(m2m_ct2, m2m):
    # transformers 5 dropped M2M-100's language tokens from the special tokens ctranslate2's
    # converter reads; xlt's conversion puts them back, at the tokenizer's ids.
    vocab = json.loads(Path(m2m_ct2, "shared_vocabulary.json").read_text())
    tok = m2m.tokenizer
    for code in ("en", "fr", "zh", "sw"):
        token = f"__{code}__"
        assert vocab[tok.convert_tokens_to_ids(token)] == token


def test_cache_is_reused_and_keyed_by_content(marian_hf, marian_ct2, mt_home):
    from xlt.mt.model import cache_dir_for, ensure_ct2, inspect_model

    before = os.stat(Path(marian_ct2, "model.bin")).st_mtime_ns
    with env_var("XLT_HOME", mt_home):
        again, src = ensure_ct2(marian_hf, quantization="int8")
        assert again == marian_ct2 and os.stat(Path(again, "model.bin")).st_mtime_ns == before
        key = cache_dir_for(src, "int8")
        assert cache_dir_for(src, "float32") != key
        cfg = Path(marian_hf, "config.json")
        st = cfg.stat()
        os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        try:
            assert cache_dir_for(inspect_model(marian_hf), "int8") != key
        finally:
            os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_not_a_model(tmp_path, marian_ct2, tiny_bert):
    from xlt.errors import UsageError, XltError
    from xlt.mt.model import ensure_ct2, inspect_model

    with pytest.raises(UsageError, match="no such directory"):
        inspect_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a model directory"):
        inspect_model(str(tmp_path / "empty"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        inspect_model(str(tmp_path / "f.txt"))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(Path(marian_ct2, "model.bin"), bare)
    shutil.copy(Path(marian_ct2, "config.json"), bare)
    with pytest.raises(UsageError, match="without tokenizer files"):
        inspect_model(str(bare))
    with env_var("XLT_HOME", str(tmp_path / "home")):
        with pytest.raises(UsageError, match="not a seq2seq"):
            ensure_ct2(tiny_bert, quantization="int8")
        with env_var("HF_HUB_OFFLINE", "1"):
            with pytest.raises(XltError, match="hub"):
                ensure_ct2("no-such-org/no-such-model", quantization="int8")


# -- languages --------------------------------------------------------------------------------


def test_language_code_tables():
    from xlt.mt import langs

    xnli = "en fr es de el bg ru tr ar vi th zh hi sw ur".split()
    assert all(langs.is_nllb_code(langs.nllb_code(c)) for c in xnli)
    assert langs.nllb_code("fr") == "fra_Latn" and langs.nllb_code("zh") == "zho_Hans"
    assert langs.nllb_code("zho_Hant") == "zho_Hant"
    assert langs.mbart_code("fr", ["en_XX", "fr_XX", "zh_CN"]) == "fr_XX"
    assert langs.mbart_code("el", ["en_XX", "fr_XX"]) is None
    assert langs.marian_code("fr", [">>fra<<", ">>deu<<"]) == ">>fra<<"
    assert langs.marian_code("fr", [">>fr<<"]) == ">>fr<<"


def test_m2m_language_tokens(m2m):
    from xlt.errors import UsageError
    from xlt.mt import Decoding

    tokens, cut = m2m.encode(["The dog sits.", "le chat"], src="en", tgt="fr")
    assert cut == 0
    assert [t[0] for t in tokens] == ["__en__", "__en__"] and [t[-1] for t in tokens] == ["</s>", "</s>"]
    de_tokens, _ = m2m.encode(["The dog sits."], src="de", tgt="fr")
    assert de_tokens[0][0] == "__de__" and de_tokens[0][1:] == tokens[0][1:]
    assert m2m.target_prefix("fr") == ["__fr__"]
    # The decoder starts with the target token; decoded text drops it.
    results = [r.result() for r in m2m.submit(tokens, tgt="fr", decoding=Decoding(beam_size=1, max_length=6))]
    assert all(r.hypotheses[0][0] == "__fr__" for r in results)
    texts = m2m.decode([r.hypotheses[0] for r in results], tgt="fr")
    assert texts and not any("__fr__" in t for t in texts)
    assert m2m.language_problem("fr", side="target") is None
    assert "has no such language" in m2m.language_problem("xx", side="target")
    with pytest.raises(UsageError, match="target language 'xx'"):
        m2m.translate_texts(["a"], src="en", tgt="xx")


def test_marian_language_pair(marian):
    assert marian.language_problem("en", side="source") is None
    assert marian.language_problem("fr", side="target") is None
    assert "translates en -> fr" in marian.language_problem("de", side="source")
    assert "translates en -> fr" in marian.language_problem("de", side="target")
    assert marian.target_prefix("fr") == []


# -- decoding ---------------------------------------------------------------------------------


def test_translate_texts_shape_and_determinism(marian):
    texts = sentences(9, seed=11)
    a = marian.translate_texts(texts, src="en", tgt="fr", **GREEDY)
    assert len(a) == 9 and all(len(h) == 1 and isinstance(h[0], str) for h in a)
    assert a == marian.translate_texts(texts, src="en", tgt="fr", **GREEDY)
    assert len({h[0] for h in a}) > 3  # the random model's output depends on its input
    nbest = marian.translate_texts(texts[:2], src="en", tgt="fr", beam_size=3, num_hypotheses=3, max_length=8)
    assert [len(h) for h in nbest] == [3, 3]


def test_forced_length(marian, m2m):
    from xlt.mt import Decoding

    for tr, extra in ((marian, 0), (m2m, 1)):
        tokens, _ = tr.encode(sentences(4, seed=2), src="en", tgt="fr")
        for length in (3, 9):
            dec = Decoding(beam_size=1, max_length=length, min_length=length)
            hyps = [r.result().hypotheses[0] for r in tr.submit(tokens, tgt="fr", decoding=dec)]
            assert [len(h) for h in hyps] == [length + extra] * 4


def test_plan_batches_bounds_tokens_and_sentences():
    from xlt.mt.translator import plan_batches

    lengths = [5, 30, 2, 2, 9, 2, 40, 3, 2, 2]
    batches = plan_batches(lengths, batch_tokens=12, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 3 and (len(b) == 1 or len(b) * longest <= 12)
    assert [len(b) for b in plan_batches(lengths, batch_tokens=12, batch_size=0)] == [5, 2, 1, 1, 1]
    assert plan_batches([], batch_tokens=8) == []


def test_decoding_options_are_checked():
    from xlt.errors import UsageError
    from xlt.mt import Decoding

    Decoding(beam_size=1, sampling_topk=10, num_hypotheses=4).check()
    Decoding(beam_size=4, num_hypotheses=4).check()
    for bad, msg in ((Decoding(beam_size=2, num_hypotheses=3), "needs --beam-size >= 3"),
                     (Decoding(beam_size=2, sampling_topk=5), "--beam-size 1"),
                     (Decoding(max_length=5, min_length=6), "--min-length"),
                     (Decoding(temperature=0.0), "--temperature")):
        with pytest.raises(UsageError, match=msg):
            bad.check()


def test_device_cuda_without_gpu():
    import ctranslate2

    from xlt.errors import UsageError
    from xlt.ct2 import resolve_device

    if ctranslate2.get_cuda_device_count():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == ("cpu", 0)
    with pytest.raises(UsageError, match="no CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(UsageError, match="auto, cpu"):
        resolve_device("tpu")


# -- records ----------------------------------------------------------------------------------


def test_records_fields_src_view_and_passthrough(marian):
    from xlt.mt import translate_records

    recs = nli_records(6)
    out = list(translate_records(recs, marian, tgt="fr", **GREEDY))
    assert [r["id"] for r in out] == [r["id"] for r in recs]
    for rec, o in zip(recs, out):
        assert list(o) == ["id", "lang", "premise", "hypothesis", "label", "meta", "src"]
        assert o["lang"] == "fr" and o["label"] == rec["label"] and o["meta"] == rec["meta"]
        assert o["src"] == {"lang": "en", "premise": rec["premise"], "hypothesis": rec["hypothesis"]}
        assert [o["premise"]] == marian.translate_texts([rec["premise"]], src="en", tgt="fr", **GREEDY)[0]
        assert "aug" not in o
    single = list(translate_records([{"id": 1, "text": "The dog sits.", "x": None}], marian, tgt="fr", src="en", **GREEDY))
    assert single[0]["src"] == {"lang": "en", "text": "The dog sits."} and single[0]["lang"] == "fr" and "x" in single[0]
    only = list(translate_records(recs[:2], marian, tgt="fr", fields=["hypothesis"], **GREEDY))
    assert only[0]["premise"] == recs[0]["premise"] and set(only[0]["src"]) == {"lang", "hypothesis"}


def test_order_across_batches_and_read_ahead(marian):
    from xlt.mt import translate_records

    recs = nli_records(23)
    whole = list(translate_records(recs, marian, tgt="fr", **GREEDY))
    small = list(translate_records(iter(recs), marian, tgt="fr", batch_tokens=24, read_ahead=4, **GREEDY))
    assert small == whole
    assert list(translate_records(recs, marian, tgt="fr", batch_size=1, **GREEDY)) == whole
    reference = marian.translate_texts([r["premise"] for r in recs], src="en", tgt="fr", batch_tokens=1, **GREEDY)
    assert [o["premise"] for o in small] == [h[0] for h in reference]


def test_per_field_languages(m2m):
    from xlt.mt import translate_records

    rec = {"id": "x", "lang": "en-fr", "langs": {"premise": "en", "hypothesis": "fr"},
           "premise": "The dog sits.", "hypothesis": "le chat est petit."}
    out = list(translate_records([rec], m2m, tgt="de", **GREEDY))[0]
    assert out["lang"] == "de" and "langs" not in out
    assert out["src"] == {"lang": "en-fr", "langs": rec["langs"], "premise": rec["premise"], "hypothesis": rec["hypothesis"]}
    assert out["hypothesis"] == m2m.translate_texts([rec["hypothesis"]], src="fr", tgt="de", **GREEDY)[0][0]


def test_record_errors(marian, m2m):
    from xlt.errors import UsageError
    from xlt.mt import RecordChecker, translate_records
    from xlt.records import RecordError

    check = RecordChecker(marian)
    with pytest.raises(RecordError, match='missing field "lang"'):
        check({"premise": "a b", "hypothesis": "c d"})
    with pytest.raises(RecordError, match='field "hypothesis" is empty'):
        check({"lang": "en", "premise": "a b", "hypothesis": "  "})
    with pytest.raises(RecordError, match="translates en -> fr"):
        check({"lang": "de", "premise": "a b", "hypothesis": "c d"})
    with pytest.raises(RecordError, match="has no such language"):
        RecordChecker(m2m)({"lang": "xx", "text": "a b"})
    with pytest.raises(UsageError, match="source language 'de'"):
        RecordChecker(marian, src="de")
    with pytest.raises(UsageError, match="target language 'de'"):
        translate_records([], marian, tgt="de")


def test_overlong_text_is_truncated_and_counted(marian):
    from xlt.mt import TranslateReport, translate_records

    long_text = " ".join(sentences(40, seed=1))
    recs = [{"id": "long", "lang": "en", "text": long_text}, {"id": "short", "lang": "en", "text": "The dog sits."}]
    report = TranslateReport()
    out = list(translate_records(recs, marian, tgt="fr", report=report, **GREEDY))
    assert [o["id"] for o in out] == ["long", "short"] and out[0]["text"]
    assert report.truncated == 1 and report.max_input_length == 64
    assert report.warnings() == ["1 text(s) longer than the model's limit of 64 tokens were truncated"]
    tokens, cut = marian.encode([long_text], src="en", tgt="fr")
    assert cut == 1 and len(tokens[0]) == 64 and tokens[0][-1] == "</s>"


def test_hypotheses_are_marked_and_seeded(m2m_ct2):
    from xlt.mt import load_translator, translate_records

    recs = nli_records(4)
    kw = dict(tgt="fr", beam_size=1, sampling_topk=20, temperature=1.5, num_hypotheses=3, max_length=8)

    def sample(seed: int) -> list[dict]:
        return list(translate_records(recs, load_translator(m2m_ct2, device="cpu", threads=2, seed=seed), **kw))

    a = sample(5)
    assert len(a) == 12
    assert [(o["id"], o["aug"]["hypothesis"]) for o in a] == [(r["id"], h) for r in recs for h in range(3)]
    assert all(o["aug"]["method"] == "translate" for o in a)
    assert len({o["premise"] for o in a}) > 4  # samples differ
    assert sample(5) == a
    assert sample(6) != a


# -- the command line -------------------------------------------------------------------------


def test_cli_file_to_output_and_refuse_existing(mt, marian_hf, tmp_path):
    recs = nli_records(12)
    src = tmp_path / "in.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write(jsonl(recs))
    out = tmp_path / "out.jsonl"
    r = mt("translate", "--model", marian_hf, "--tgt", "fr", "--beam-size", "1", "--max-length", "12", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [x["id"] for x in recs]
    assert all(g["lang"] == "fr" and g["src"]["premise"] == x["premise"] for g, x in zip(got, recs))
    assert "translated 12 record(s)" in r.stderr.decode()
    again = mt("translate", "--model", marian_hf, "--tgt", "fr", str(src), "-o", str(out))
    assert again.returncode == 2
    assert again.stderr.decode().strip() == f"xlt translate: error: output {out} exists; pass --force to overwrite it"


def test_cli_empty_input_and_dash(mt, marian_hf):
    r = mt("translate", "-m", marian_hf, "--tgt", "fr", "-", input="")
    assert r.returncode == 0 and r.stdout == b"", r.stderr.decode()


def test_cli_bad_json(mt, marian_hf):
    r = mt("translate", "-m", marian_hf, "--tgt", "fr", input=jsonl(nli_records(1)) + "{oops\n")
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().startswith("xlt translate: error: <stdin>:2: invalid JSON")


def test_cli_empty_text_fail_and_skip(mt, marian_hf, tmp_path):
    recs = nli_records(3)
    recs[1]["hypothesis"] = ""
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl(recs))
    r = mt("translate", "-m", marian_hf, "--tgt", "fr", "--beam-size", "1", str(path))
    assert r.returncode == 2
    assert r.stderr.decode().strip() == f'xlt translate: error: {path}:2: field "hypothesis" is empty'
    r = mt("translate", "-m", marian_hf, "--tgt", "fr", "--beam-size", "1", "--on-error", "skip", "-q", str(path))
    assert r.returncode == 0
    assert [o["id"] for o in lines(r.stdout)] == ["r0", "r2"]
    assert "skipped 1 bad record(s)" in r.stderr.decode() and f"{path}:2" in r.stderr.decode()


def test_cli_unknown_languages(mt, m2m_hf, marian_hf):
    r = mt("translate", "-m", m2m_hf, "--tgt", "xx", input=jsonl(nli_records(1)))
    assert r.returncode == 2
    assert r.stderr.decode().startswith("xlt translate: error: target language 'xx': model ")
    recs = nli_records(2)
    recs[1]["lang"] = "de"
    r = mt("translate", "-m", marian_hf, "--tgt", "fr", input=jsonl(recs))
    assert r.returncode == 2
    assert r.stderr.decode().startswith("xlt translate: error: <stdin>:2: source language 'de': model ")


def test_cli_not_a_model(mt, tmp_path):
    r = mt("translate", "-m", str(tmp_path), "--tgt", "fr", input=jsonl(nli_records(1)))
    assert r.returncode == 2
    assert "not a model directory" in r.stderr.decode() and "Traceback" not in r.stderr.decode()


def test_cli_into_head(mt_home, marian_hf, tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl(nli_records(400)))
    cmd = f"{sys.executable} -m xlt translate -m {marian_hf} --tgt fr --beam-size 1 --max-length 4 {path} | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, env={**os.environ, "XLT_HOME": mt_home}, timeout=300)
    assert r.returncode == 0
    assert len(r.stdout.decode().splitlines()) == 1 and json.loads(r.stdout)["id"] == "r0"
    assert r.stderr == b""


def test_cli_n_best_is_one_to_n(mt, m2m_hf):
    recs = nli_records(3)
    r = mt("translate", "-m", m2m_hf, "--tgt", "fr", "--beam-size", "2", "--num-hypotheses", "2", "--max-length", "8",
           input=jsonl(recs))
    assert r.returncode == 0, r.stderr.decode()
    out = lines(r.stdout)
    assert [(o["id"], o["aug"]) for o in out] == [
        (x["id"], {"method": "translate", "hypothesis": h}) for x in recs for h in range(2)]
    assert all(o["lang"] == "fr" and o["src"]["lang"] == "en" for o in out)


# -- sharding ---------------------------------------------------------------------------------


def test_slurm_shards_merge_to_the_unsharded_output(mt, mt_home, marian_hf, tmp_path):
    recs = nli_records(17)
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(recs))
    opts = ["--beam-size", "1", "--max-length", "10", "--batch-tokens", "64"]
    whole = mt("translate", "-m", marian_hf, "--tgt", "fr", *opts, str(path))
    assert whole.returncode == 0, whole.stderr.decode()
    env = {**os.environ, "XLT_HOME": mt_home, "XLT": f"{sys.executable} -m xlt", "SLURM_ARRAY_TASK_COUNT": "3",
           "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_CPUS_PER_TASK": "1"}
    prefix = tmp_path / "out"
    for k in (1, 2, 3):
        r = subprocess.run(["bash", SLURM, marian_hf, "fr", str(path), str(prefix), "-q", *opts], cwd=ROOT,
                           env={**env, "SLURM_ARRAY_TASK_ID": str(k)}, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode()
    shards = [str(tmp_path / f"out.00{k}-of-003.jsonl") for k in (1, 2, 3)]
    sizes = [len(Path(s).read_text().splitlines()) for s in shards]
    assert sizes == [6, 6, 5]
    assert [json.loads(x)["id"] for x in Path(shards[1]).read_text().splitlines()] == [f"r{i}" for i in range(1, 17, 3)]
    merged = subprocess.run([MERGE, *shards], capture_output=True, check=True)
    assert merged.stdout == whole.stdout
    # A rerun skips a finished shard.
    r = subprocess.run(["bash", SLURM, marian_hf, "fr", str(path), str(prefix)], env={**env, "SLURM_ARRAY_TASK_ID": "2"},
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and b"is done" in r.stderr


def test_merge_shards_groups_of_hypotheses(marian, tmp_path):
    from xlt.io import take_shard, write_records
    from xlt.mt import translate_records

    recs = nli_records(11)
    for i in (3, 4, 5):
        recs[i]["id"] = "same"  # neighbouring records sharing an id must not confuse the merge
    kw = dict(tgt="fr", beam_size=2, num_hypotheses=2, max_length=6)

    def dump(records) -> str:
        buf = io.StringIO()
        write_records(translate_records(records, marian, **kw), buf)
        return buf.getvalue()

    whole = dump(recs)
    shards = []
    for k in (1, 2, 3, 4):
        p = tmp_path / f"s{k}.jsonl"
        p.write_text(dump(take_shard(recs, (k, 4))))
        shards.append(str(p))
    merged = subprocess.run([MERGE, "-n", "2", *shards], capture_output=True, check=True)
    assert merged.stdout.decode() == whole
    with gzip.open(tmp_path / "s2.jsonl.gz", "wt") as fh:
        fh.write(Path(shards[1]).read_text())
    gz = subprocess.run([MERGE, "-n", "2", shards[0], str(tmp_path / "s2.jsonl.gz"), *shards[2:]], capture_output=True, check=True)
    assert gz.stdout == merged.stdout
    # Wrong group size, misordered sizes: errors, not a scrambled file.
    odd = subprocess.run([MERGE, "-n", "3", *shards], capture_output=True)
    assert odd.returncode == 2 and b"not a multiple of -n 3" in odd.stderr
    swapped = subprocess.run([MERGE, "-n", "2", shards[3], *shards[:3]], capture_output=True)
    assert swapped.returncode == 2 and b"merge-shards: error:" in swapped.stderr


def test_merge_shards_checks_k_of_n_names(tmp_path):
    names = []
    for k in (1, 2, 3):
        p = tmp_path / f"x.{k:03d}-of-003.jsonl"
        p.write_text(f'{{"i": {k}}}\n')
        names.append(str(p))
    ok = subprocess.run([MERGE, *names], capture_output=True, check=True)
    assert ok.stdout.decode().splitlines() == ['{"i": 1}', '{"i": 2}', '{"i": 3}']
    bad = subprocess.run([MERGE, names[0], names[2], names[1]], capture_output=True)
    assert bad.returncode == 2 and b"shard 3 given in position 2" in bad.stderr
    missing = subprocess.run([MERGE, names[0], names[1]], capture_output=True)
    assert missing.returncode == 2 and b"shard of 3, but 2 shard file(s) given" in missing.stderr


# -- the pipeline -----------------------------------------------------------------------------


def test_pipe_translate_soft_label_distill(mt, mt_home, marian_hf, tiny_classifier, tiny_bert, tmp_path):
    """`xlt translate | xlt soft-label | xlt distill -`: the teacher reads the English `src` view
    that translate kept, the student trains on the translation."""
    recs = nli_records(12)
    src = tmp_path / "en.jsonl"
    src.write_text(jsonl(recs))
    env = {**os.environ, "XLT_HOME": mt_home}
    py = f"{sys.executable} -m xlt"
    translate = f"{py} translate -m {marian_hf} --tgt fr --beam-size 1 --min-length 4 --max-length 8 -q {src}"
    soft = f"{py} soft-label --teacher {tiny_classifier} -q"

    r = subprocess.run(["bash", "-c", f"set -o pipefail; {translate} | {soft}"], capture_output=True, env=env,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    piped = lines(r.stdout)
    assert [o["id"] for o in piped] == [x["id"] for x in recs]
    assert all(o["lang"] == "fr" and o["src"]["premise"] == x["premise"] for o, x in zip(piped, recs))
    # the teacher's outputs on the translated records are its outputs on the English originals
    direct = mt("soft-label", "--teacher", tiny_classifier, "-q", str(src))
    assert direct.returncode == 0, direct.stderr.decode()
    for o, d in zip(piped, lines(direct.stdout)):
        assert o["teacher"]["logits"] == pytest.approx(d["teacher"]["logits"], abs=1e-5)

    out = tmp_path / "student.ckpt"
    distill = f"{py} distill --student {tiny_bert} --objective kd --max-steps 2 --batch-size 4 -q --out {out} -"
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {translate} | {soft} | {distill}"], capture_output=True,
                       env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    manifest = json.loads((out / "xlt.json").read_text())
    assert manifest["train_langs"] == {"fr": 12}
    assert manifest["teacher_digest"] == piped[0]["teacher"]["model"]
