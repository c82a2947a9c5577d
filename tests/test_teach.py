"""`xlt teach`: checkpoints, manifest, resume, DDP, contract."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_xlt

WORDS = "the a man woman dog cat runs sits big small red blue".split()


def synthetic(n: int, *, seed: int = 0, lang: str = "en", start: int = 0) -> list[dict]:
    """Contradiction when the hypothesis says "no": a keyword task a tiny model learns quickly."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = " ".join(rng.choice(WORDS) for _ in range(6))
        h = [rng.choice(WORDS) for _ in range(3)]
        if i % 2:
            label = "entailment"
        else:
            h.insert(rng.randrange(4), "no")
            label = "contradiction"
        out.append({"id": f"x{start + i}", "lang": lang, "premise": p, "hypothesis": " ".join(h), "label": label})
    return out


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("teach-data")
    return {
        "train": write_jsonl(d / "train.jsonl", synthetic(200, seed=1)),
        "train_fr": write_jsonl(d / "train.fr.jsonl", synthetic(60, seed=2, lang="fr", start=1000)),
        "dev": write_jsonl(d / "dev.jsonl", synthetic(100, seed=3, start=2000)),
    }


def weights(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


@pytest.fixture(scope="module")
def trained(tiny_bert, data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ck") / "en.ckpt")
    r = run_xlt("teach", data["train"], data["train_fr"], "--model", tiny_bert, "--out", out, "--dev", data["dev"],
                "--epochs", "8", "--lr", "2e-3", "--batch-size", "16", "--eval-every", "20", "--seed", "7")
    assert r.returncode == 0, r.stderr.decode()
    return out, r


def test_checkpoint_loads_with_plain_transformers(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, r = trained
    assert r.stdout == b""  # stdout is data only; teach writes a directory
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "contradiction", 1: "entailment"}
    AutoTokenizer.from_pretrained(out)
    m = json.load(open(os.path.join(out, "xlt.json")))
    assert m["fields"] == ["premise", "hypothesis"]
    assert m["labels"] == ["contradiction", "entailment"]
    assert m["max_length"] == 128
    assert m["train_langs"] == {"en": 200, "fr": 60}  # two files mix into one run
    assert set(m["inputs"]["train"]) == {p for p in m["inputs"]["train"]} and len(m["inputs"]["train"]) == 2
    assert m["seed"] == 7 and m["versions"]["torch"]
    assert m["training"]["config"]["lr"] == 2e-3 and m["training"]["steps"] > 0
    assert m["training"]["log"] and "loss" in m["training"]["log"][0]
    hist = m["dev"]["history"]
    assert len(hist) >= 2 and all("accuracy" in h for h in hist)
    assert m["dev"]["best"]["accuracy"] == max(h["accuracy"] for h in hist)


def test_learns_the_synthetic_task(trained, data):
    out, _ = trained
    r = run_xlt("eval", "--model", out, data["dev"])
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    assert report["languages"]["en"]["accuracy"] >= 0.9  # chance is 0.5
    m = json.load(open(os.path.join(out, "xlt.json")))
    # the checkpoint holds the best dev state: eval reproduces the recorded best accuracy
    assert abs(report["languages"]["en"]["accuracy"] - m["dev"]["best"]["accuracy"]) < 1e-4


def test_existing_checkpoint_refused_without_force(trained, tiny_bert, data):
    out, _ = trained
    before = weights(out)
    r = run_xlt("teach", data["train"], "--model", tiny_bert, "--out", out, "--max-steps", "2")
    assert r.returncode == 2
    assert "exists; pass --force" in r.stderr.decode()
    after = weights(out)
    assert all((before[k] == after[k]).all() for k in before)


def test_bad_input_exit_2_and_no_checkpoint(tiny_bert, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "lang": "en", "premise": "a dog", "hypothesis": "a cat", "label": "entailment"}\n'
                   '{"id": "2", "lang": "en", "premise": "a dog", "label": "neutral"}\n')
    out = tmp_path / "ck"
    r = run_xlt("teach", str(bad), "--model", tiny_bert, "--out", str(out), "--max-steps", "1")
    assert r.returncode == 2
    assert f'xlt teach: error: {bad}:2: missing field "hypothesis"' in r.stderr.decode()
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ck")]


def test_freeze_embeddings_and_stdin(tiny_bert, data, tmp_path):
    out = str(tmp_path / "frozen")
    train = open(data["train"], encoding="utf-8").read()
    r = run_xlt("teach", "-", "--model", tiny_bert, "--out", out, "--max-steps", "5", "--freeze-embeddings",
                "--lr", "1e-2", input=train)
    assert r.returncode == 0, r.stderr.decode()
    base, new = weights(tiny_bert), weights(out)
    key = "embeddings.word_embeddings.weight"
    nk = [k for k in new if k.endswith(key)][0]
    assert (new[nk] == base[key]).all()  # frozen: untouched
    layer = [k for k in new if k.endswith("encoder.layer.0.attention.self.query.weight")][0]
    assert not (new[layer] == base[layer.split("bert.", 1)[-1]]).all()  # the rest trained
    m = json.load(open(os.path.join(out, "xlt.json")))
    assert list(m["inputs"]["train"]) == ["<stdin>"]


def test_resume_after_kill_gives_same_weights(tiny_bert, data, tmp_path):
    args = [data["train"], "--model", tiny_bert, "--epochs", "20", "--batch-size", "8", "--lr", "1e-3",
            "--save-every", "25", "--seed", "3", "--log-every", "1000"]
    ref = str(tmp_path / "ref")
    r = run_xlt("teach", *args, "--out", ref)
    assert r.returncode == 0, r.stderr.decode()

    out = str(tmp_path / "killed")
    state = out + ".partial/state.json"
    proc = subprocess.Popen([sys.executable, "-m", "xlt", "teach", *args, "--out", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first saved state; make it longer"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(out)  # nothing half-written in place of the checkpoint
    r = run_xlt("teach", *args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr.decode()
    assert "resumed from" in r.stderr.decode()
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    assert not os.path.exists(out + ".partial")


def _interrupt(tiny_bert, data, out: str, sig: int) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "xlt", "teach", data["train"], "--model", tiny_bert, "--out", out,
                             "--epochs", "200", "--batch-size", "8", "--save-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.1)
    deadline = time.time() + 120
    # wait until training has started (the partial dir exists), then ask it to stop
    while not os.path.isdir(out + ".partial") and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_sigterm_saves_state_and_says_resume(tiny_bert, data, tmp_path):
    out = str(tmp_path / "term")
    code, err = _interrupt(tiny_bert, data, out, signal.SIGTERM)
    assert code == 143, err  # 128 + SIGTERM, what SLURM and shells expect
    assert "rerun the same command with --resume" in err
    assert os.path.isfile(out + ".partial/state.json")
    assert not os.path.exists(out + ".partial/state.pt")  # no pickle


def test_sigint_saves_state_exit_130_and_resumes(tiny_bert, data, tmp_path):
    out = str(tmp_path / "int")
    code, err = _interrupt(tiny_bert, data, out, signal.SIGINT)
    assert code == 130, err  # 128 + SIGINT, as the README promises
    assert "rerun the same command with --resume" in err
    assert os.path.isfile(out + ".partial/state.json")
    r = run_xlt("teach", data["train"], "--model", tiny_bert, "--out", out, "--epochs", "200", "--batch-size", "8",
                "--save-every", "0", "--max-steps", "1", "--resume")
    # the state is past step 1 of a 1-step run: resuming only writes the checkpoint
    assert r.returncode == 0, r.stderr.decode()
    assert "resumed from" in r.stderr.decode()
    assert os.path.isfile(os.path.join(out, "model.safetensors")) and not os.path.exists(out + ".partial")


def test_resume_without_state_is_an_error(tiny_bert, data, tmp_path):
    r = run_xlt("teach", data["train"], "--model", tiny_bert, "--out", str(tmp_path / "none"), "--resume")
    assert r.returncode == 2
    assert "no saved state" in r.stderr.decode()


def test_ddp_two_cpu_processes(tiny_bert, data, tmp_path):
    out = str(tmp_path / "ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29641",
           "-m", "xlt", "teach", data["train"], "--model", tiny_bert, "--out", out, "--dev", data["dev"],
           "--epochs", "2", "--batch-size", "16", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    m = json.load(open(os.path.join(out, "xlt.json")))
    assert m["training"]["resolved"]["world_size"] == 2
    # 200 examples, batch 16 -> 13 batches, padded to 14 and split over 2 ranks: 7 steps per epoch
    assert m["training"]["steps"] == 14
    assert m["dev"]["history"]
    assert sorted(os.listdir(tmp_path)) == ["ddp"]  # rank 0 wrote once; no partial or temp dirs left


def test_grad_accum_warmup_and_log_every(tiny_bert, data, tmp_path):
    # 200 + 60 records, batch 16 -> 17 batches per epoch; accumulating 4 -> 5 updates per epoch.
    out = str(tmp_path / "acc")
    r = run_xlt("teach", data["train"], data["train_fr"], "--model", tiny_bert, "--out", out, "--epochs", "2",
                "--batch-size", "16", "--grad-accum", "4", "--warmup", "0.5", "--lr", "1e-3", "--log-every", "1")
    assert r.returncode == 0, r.stderr.decode()
    t = json.load(open(os.path.join(out, "xlt.json")))["training"]
    assert t["steps"] == 10 and t["resolved"]["warmup_steps"] == 5 and t["resolved"]["updates_per_epoch"] == 5
    assert [e["step"] for e in t["log"]] == list(range(1, 11))
    lrs = [e["lr"] for e in t["log"]]
    # linear warm-up to the peak over 5 updates, then linear decay to 0
    assert lrs[:5] == pytest.approx([1e-3 * k / 5 for k in range(1, 6)], rel=1e-6)
    assert lrs[5:] == pytest.approx([1e-3 * (10 - k) / 5 for k in range(6, 11)], rel=1e-6, abs=1e-12)


def test_weight_decay_is_decoupled_and_skips_biases_and_norms(tiny_bert, data, tmp_path):
    runs = {}
    for wd in ("0", "0.5"):
        out = str(tmp_path / f"wd{wd}")
        r = run_xlt("teach", data["train"], "--model", tiny_bert, "--out", out, "--max-steps", "1", "--warmup", "0",
                    "--lr", "1e-2", "--weight-decay", wd, "--seed", "5")
        assert r.returncode == 0, r.stderr.decode()
        runs[wd] = weights(out)
    base = weights(tiny_bert)
    a, b = runs["0"], runs["0.5"]
    key = [k for k in a if k.endswith("encoder.layer.0.attention.self.query.weight")][0]
    w0 = base[key.split("bert.", 1)[-1]]
    # AdamW: w1 = w0 - lr * (adam step + wd * w0); the runs differ by exactly lr * wd * w0
    assert (a[key] - b[key]).sub(1e-2 * 0.5 * w0).abs().max() < 1e-6
    assert not (a[key] == b[key]).all()
    for k in a:
        if k.endswith(".bias") or "LayerNorm" in k:
            assert (a[k] == b[k]).all(), k


def test_eval_every_sets_the_dev_history(tiny_bert, data, tmp_path):
    out = str(tmp_path / "ev")
    r = run_xlt("teach", data["train"], "--model", tiny_bert, "--out", out, "--dev", data["dev"], "--max-steps", "9",
                "--batch-size", "16", "--eval-every", "4")
    assert r.returncode == 0, r.stderr.decode()
    hist = json.load(open(os.path.join(out, "xlt.json")))["dev"]["history"]
    assert [h["step"] for h in hist] == [4, 8, 9]
