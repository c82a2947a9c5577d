"""The paper recipes (recipes/<name>/Makefile) run end to end at SCALE=ci.

Tiny random models stand in for me5-small / minilm-en, so the test checks that the pipelines
compose and write their results, not what the methods achieve (the recipes' README has the
SCALE=small numbers).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")]

SYSTEMS = {
    "robust-xlt": ["base", "adv-0.01", "rs-0.1", "rsda"],
    "monox": ["direct", "kd", "pseudo", "teacher"],
    "xd": ["en", "xd", "mlt", "mlt-xd"],
    "bert-kld": ["teacher", "base", "kld-0.1", "kld-1"],
    "best": ["base", "base-s2", "long", "long-s2", "longer", "longer-s2", "xd", "xd-en", "xd-en2", "xd-en-s2", "xd-en2-s2",
             "xd-long", "xd-long-s2", "wise", "ens-xd", "ens-xd-s2", "mlt", "base mean", "long mean", "longer mean",
             "xd-en mean", "xd-en2 mean", "xd-long mean", "ens-xd mean"],
    "freetransfer-x": ["classifier", "step1", "step1-bal", "step2-transformer", "tt-pseudo-transformer",
                       "step2-bilstm", "tt-pseudo-bilstm", "step2-cnn", "tt-pseudo-cnn"],
}


def make(recipe: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(["make", "--no-print-directory", "-C", str(RECIPES / recipe), *args], capture_output=True,
                          env=env, timeout=timeout, text=True)


def ci_args(out: Path, model: str) -> list[str]:
    return ["SCALE=ci", f"OUT={out}", f"MODEL={model}", f"TEACHER_MODEL={model}", "Q=--quiet",
            f"XLT={sys.executable} -m xlt"]


@pytest.mark.parametrize("recipe", list(SYSTEMS))
def test_recipe_runs_at_ci_scale(recipe, tmp_path, tiny_bert):
    out = tmp_path / "out"
    proc = make(recipe, *ci_args(out, tiny_bert))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["systems"]] == SYSTEMS[recipe]
    for s in results["systems"]:
        assert all(v is not None for v in s["languages"].values()), (s["name"], s["languages"])
        assert s["average"] is not None
        # best's second seed: SEED2 = SEED + 100; a second XD epoch (xd-en2) and one more English epoch
        # (longer) run with their seed + 1
        seed = {"xd-en2": 14, "longer": 14}.get(s["name"], 114 if s["name"] in ("xd-en2-s2", "longer-s2")
                                                  else 113 if s["name"].endswith("-s2") else 13)
        if s.get("mean_of"):  # best's mean rows: a system and its second seed
            assert s["mean_of"] == [s["name"][:-5], s["name"][:-5] + "-s2"]
            first = 14 if s["name"] in ("xd-en2 mean", "longer mean") else 13
            assert s["training"]["seeds"] == [first, first + 100]
            continue
        assert s["training"] is None or s["training"]["seed"] == seed
    md = (out / "results.md").read_text()
    for name in SYSTEMS[recipe]:
        assert f"| {name} " in md
    if recipe == "robust-xlt":
        assert "generalized setting" in md and (out / "matrix-results.json").exists()
        assert (out / "base.matrix.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "rsda.jsonl").read_text().count("\n") == 4 * 30  # original + 3 synonym copies
    if recipe == "freetransfer-x":
        assert "MT is empty: skipping the translate-test baseline" in proc.stderr
    if recipe == "best":
        # the ensemble's targets: parallel text (English src views) + the English share, no label read
        ens = [json.loads(l) for l in (out / "ens.jsonl").read_text().splitlines()]
        assert {r["lang"] for r in ens} == {"en", "fr", "de", "ru"}
        assert all(r["teacher"]["model"].startswith("ensemble:") for r in ens)
        for name in ("xd", "xd-en", "xd-en2", "xd-en-s2", "xd-en2-s2", "xd-long", "xd-long-s2", "ens-xd", "ens-xd-s2"):
            m = json.loads((out / f"{name}.ckpt" / "xlt.json").read_text())
            assert m["gold_langs"] == ["en"] and m["source_langs"] == ["en"], (name, m["source_langs"])
        # wise: the mean of base and xd-en (xlt average), scored against base
        wise = json.loads((out / "wise.ckpt" / "xlt.json").read_text())
        assert [(os.path.basename(m["model"]), m["weight"]) for m in wise["members"]] == [("base.ckpt", 0.5),
                                                                                          ("xd-en.ckpt", 0.5)]
        # paired tests read the baseline of the same seed from its saved predictions, and the table
        # compares each -s2 row with base-s2 (its p-values shown, not dropped as a test of another model)
        sig = {s["name"]: json.loads((out / f"{s['name']}.eval.json").read_text())["signature"]
               for s in results["systems"] if not s.get("mean_of")}
        by = {s["name"]: s for s in results["systems"]}
        for name in [n for n in SYSTEMS["best"][1:] if not n.endswith(" mean")]:
            own = "base-s2" if name.endswith("-s2") and name != "base-s2" else "base"
            assert sig[name]["compare_model_digest"] == sig[own]["model_digest"], name
            assert sig[name]["compare_model"].endswith(f"/{own}.pred.jsonl")
            assert by[name]["baseline"] == own and by[name]["p_value_average"] is not None, name
        assert by["xd-en2 mean"]["delta_average"] == pytest.approx(
            (by["xd-en2"]["delta_average"] + by["xd-en2-s2"]["delta_average"]) / 2, abs=1e-5)
        # the continued models start where they should: long from base, longer from long, xd-long from long
        start = {n: json.loads((out / f"{n}.ckpt" / "xlt.json").read_text()) for n in
                 ("long", "long-s2", "longer", "longer-s2", "xd-long", "xd-long-s2")}
        for name, frm in (("long", "base"), ("long-s2", "base-s2"), ("longer", "long"), ("longer-s2", "long-s2")):
            assert os.path.basename(start[name]["base_model"]) == f"{frm}.ckpt", (name, start[name]["base_model"])
        for name, frm in (("xd-long", "long"), ("xd-long-s2", "long-s2")):
            assert os.path.basename(start[name]["student"]) == f"{frm}.ckpt", name
        # controls.md: each label-free system against its step-matched control, by a paired test of
        # the two saved predictions; the controls against their seed's baseline
        ctrl = json.loads((out / "controls.json").read_text())
        cby = {s["name"]: s for s in ctrl["systems"]}
        assert list(cby) == ["base", "base-s2", "long", "xd-en2", "long-s2", "xd-en2-s2", "longer", "xd-long",
                             "longer-s2", "xd-long-s2", "base mean", "long mean", "xd-en2 mean", "longer mean",
                             "xd-long mean"]
        for name, own in (("xd-en2", "long"), ("xd-en2-s2", "long-s2"), ("xd-long", "longer"),
                          ("xd-long-s2", "longer-s2"), ("long-s2", "base-s2"), ("longer", "base")):
            csig = json.loads((out / f"{name}.{'eval' if name.startswith('long') else 'control'}.json").read_text())["signature"]
            assert csig["compare_model_digest"] == sig[own]["model_digest"], name
            assert cby[name]["baseline"] == own and cby[name]["p_value_average"] is not None, name
            assert cby[name]["languages"] == by[name]["languages"], name  # the same predictions as results.md
            assert [cby[name]["training"][k] for k in ("seed", "steps", "train_seconds")] == \
                [by[name]["training"][k] for k in ("seed", "steps", "train_seconds")] and by[name]["training"]["steps"] > 0, name
            assert cby[name]["delta_average"] == pytest.approx(by[name]["average"] - by[own]["average"], abs=1e-5)
    # A missing row (a report deleted, or a system added to SYSTEMS after a run) is rebuilt, and the
    # table with it: make must not take the newer results.json for proof that nothing is missing
    # (what `.SECONDARY:` without names did to every target).
    victim = sorted(out.glob("*.eval.json"))[-1]
    victim.unlink()
    dry = make(recipe, "-n", *ci_args(out, tiny_bert))
    assert f"-o {victim}" in dry.stdout and " report " in dry.stdout, (victim, dry.stdout[-2000:])
    assert make(recipe, *ci_args(out, tiny_bert)).returncode == 0 and victim.exists()
    # Every step is a file target: a second run has nothing to do.
    assert make(recipe, "-q", *ci_args(out, tiny_bert)).returncode == 0
    # A row taken out of the table (fewer SYSTEMS, or ARCHS) rebuilds it without the row, although
    # every eval report it needs is older than the table: the report command is part of its inputs.
    fewer = ["ARCHS=transformer"] if recipe == "freetransfer-x" else [f"SYSTEMS={' '.join(SYSTEMS[recipe][:3])}"]
    assert make(recipe, "-q", *ci_args(out, tiny_bert), *fewer).returncode == 1
    assert make(recipe, *ci_args(out, tiny_bert), *fewer).returncode == 0
    kept = [n for n in SYSTEMS[recipe] if "bilstm" not in n and "cnn" not in n] if recipe == "freetransfer-x" \
        else SYSTEMS[recipe][:3] + (["base mean"] if recipe == "best" else [])  # base and base-s2 are both there
    assert [s["name"] for s in json.loads((out / "results.json").read_text())["systems"]] == kept
    assert make(recipe, "-q", *ci_args(out, tiny_bert), *fewer).returncode == 0


def test_a_take_of_a_take_is_the_share_it_names(tmp_path):
    # best's English share is taken from train.jsonl, itself a take by SEED: with the same seed the
    # two hashes are not independent (20 % of a 41 % take came out as 49 % of it)
    train = tmp_path / "train-src.jsonl"
    train.write_text("".join(json.dumps({"id": f"r{i}", "lang": "en", "premise": "p", "hypothesis": "h",
                                         "label": "neutral"}) + "\n" for i in range(4000)))
    out = tmp_path / "out"
    proc = make("best", "SCALE=ci", f"OUT={out}", f"TRAIN={train}", "TRAIN_KEEP=0.41", "EN_KEEP=0.2", "Q=--quiet",
                f"XLT={sys.executable} -m xlt", f"{out}/en-share.jsonl")
    assert proc.returncode == 0, proc.stderr
    n_train = len((out / "train.jsonl").read_text().splitlines())
    n_share = len((out / "en-share.jsonl").read_text().splitlines())
    assert abs(n_train - 0.41 * 4000) < 0.1 * 0.41 * 4000
    assert abs(n_share - 0.2 * n_train) < 0.15 * 0.2 * n_train, (n_share, n_train)


def test_premise_groups_never_straddle_the_halves(tmp_path, tiny_bert):
    # xd's pool and test halves: whole premise groups, the same ids in every language
    out = tmp_path / "out"
    args = ci_args(out, tiny_bert)
    assert make("xd", *args, f"{out}/pool.jsonl", f"{out}/test.jsonl").returncode == 0
    meta = {json.loads(l)["id"]: json.loads(l)["premise_group"] for l in (RECIPES / "samples.meta.jsonl").read_text().splitlines()}

    def groups(name: str) -> dict[str, set]:
        by_lang: dict[str, set] = {}
        for line in (out / name).read_text().splitlines():
            r = json.loads(line)
            by_lang.setdefault(r["lang"], set()).add(meta[r["id"]])
        return by_lang

    pool, test = groups("pool.jsonl"), groups("test.jsonl")
    assert set(pool) == set(test) == {"en", "fr", "de", "ru"}
    assert len({frozenset(g) for g in pool.values()}) == 1  # the same groups in every language
    assert not pool["en"] & test["en"] and pool["en"] | test["en"] == set(range(10))


@pytest.mark.parametrize("recipe", list(SYSTEMS))
def test_paper_and_small_scales_expand(recipe, tmp_path):
    # A dry run (make -n) with the real data swapped for samples: the scale tables parse and give
    # the papers' models.
    samples = ROOT / "samples" / "nli"
    data = [f"TRAIN={samples / 'en.jsonl'}", f"EVAL={' '.join(str(samples / f'{l}.jsonl') for l in ('en', 'fr', 'de', 'ru'))}",
            f"META={RECIPES / 'samples.meta.jsonl'}", "LANGS=en fr de ru", f"OUT={tmp_path}/o"]
    extra = {"bert-kld": ["PAIRS=en-ru ru-en"], "freetransfer-x": ["STEP2_LANGS=fr ru"],
             "robust-xlt": [f"SYNONYMS={RECIPES / 'robust-xlt' / 'synonyms-ci.json'}", "MATRIX_LANGS=en,fr"]}.get(recipe, [])
    proc = make(recipe, "-n", "SCALE=paper", *data, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "--model bert-base-multilingual-cased" in proc.stdout or "xlm-roberta-base" in proc.stdout
    assert "--freeze-embeddings" not in proc.stdout and "--lr 2e-5" in proc.stdout
    proc = make(recipe, "-n", "SCALE=small", *data, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "me5-small" in proc.stdout and "--freeze-embeddings" in proc.stdout
    proc = make(recipe, "-n", "SCALE=huge", *data)
    assert proc.returncode != 0 and "SCALE must be ci, small or paper" in proc.stderr


def test_monox_labelled_epochs_reach_teacher_and_direct_only(tmp_path):
    # LABELLED_EPOCHS sets the epochs of the two models trained on the labelled 20 % (teacher,
    # direct); the students distilled on the 80 % keep EPOCHS.
    proc = make("monox", "-n", "SCALE=ci", f"OUT={tmp_path}/o", "EPOCHS=1", "LABELLED_EPOCHS=3")
    assert proc.returncode == 0, proc.stderr
    steps = {line.split(" --out ")[1].split()[0].rsplit("/", 1)[-1]: line for line in proc.stdout.splitlines()
             if " --out " in line and (" teach " in line or " distill " in line)}
    assert set(steps) == {"teacher.ckpt", "direct.ckpt", "kd.ckpt", "pseudo.ckpt"}
    for name, line in steps.items():
        assert ("--epochs 3" if name in ("teacher.ckpt", "direct.ckpt") else "--epochs 1") in line, line


def test_freetransfer_x_pos_runs_at_ci_scale(tmp_path, tiny_bert):
    # TASK=pos: a tagger on samples/pos/en, word-level KD into a small student per target language,
    # and the small student trained on English directly (one arch, one language: the pipeline composes)
    out = tmp_path / "out"
    args = [*ci_args(out, tiny_bert), "TASK=pos", "ARCHS=cnn", "STEP2_LANGS=fr"]
    proc = make("freetransfer-x", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["systems"]] == ["tagger", "step2-cnn", "direct-cnn"]
    assert all(s["languages"]["fr"] is not None for s in results["systems"])
    tagger = json.loads((out / "tagger.eval.json").read_text())
    assert tagger["task"] == "tagging" and set(tagger["languages"]) == {"fr", "de"}
    soft = [json.loads(l) for l in (out / "soft.fr.jsonl").read_text().splitlines()]
    assert all(len(r["teacher"]["logits"]) == len(r["tokens"]) for r in soft)  # per word
    pool = {json.loads(l)["id"] for l in (out / "pool.fr.jsonl").read_text().splitlines()}
    test = {json.loads(l)["id"] for l in (out / "test.fr.jsonl").read_text().splitlines()}
    assert pool and test and not pool & test  # the student never sees a test sentence
    assert make("freetransfer-x", "-q", *args).returncode == 0


def test_freetransfer_x_pos_small_and_paper_expand(tmp_path):
    proc = make("freetransfer-x", "-n", "TASK=pos", "SCALE=small", f"OUT={tmp_path}/o")
    assert proc.returncode == 0, proc.stderr
    assert "pud.dev.is.jsonl" in proc.stdout and "--student-arch bilstm" in proc.stdout
    assert "teach" in proc.stdout and "--dev " + f"{tmp_path}/o/pool.en.jsonl" in proc.stdout
    samples = ROOT / "samples" / "pos"
    proc = make("freetransfer-x", "-n", "TASK=pos", "SCALE=paper", f"OUT={tmp_path}/p", f"TRAIN={samples / 'en.jsonl'}",
                f"EVAL={samples / 'fr.jsonl'} {samples / 'de.jsonl'}", "TAG_LANGS=fr de")
    assert proc.returncode == 0, proc.stderr
    assert "--model xlm-roberta-base" in proc.stdout
    proc = make("freetransfer-x", "-n", "TASK=ner")
    assert proc.returncode != 0 and "TASK must be nli or pos" in proc.stderr
