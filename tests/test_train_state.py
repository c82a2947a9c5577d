"""The training loop's resumable state (xlt.train.state) and its guards: no pickle, resume only
into the model it belongs to, non-finite loss and weights, the `<out>.partial` dir, early checks."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_xlt
from test_teach import synthetic, write_jsonl


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("state-data") / "train.jsonl", synthetic(120, seed=5))


# --- LoopState on disk -------------------------------------------------------------------------

def _state(**over):
    import numpy as np
    import torch

    from xlt.train.state import LoopState

    kw = dict(
        owner={"command": "teach", "--model": "m", "labels": ["a", "b"]}, world=1, step=3, epoch=1, batch_pos=2,
        seen=24, train_time=1.5, model={"w": torch.randn(2, 3), "b": torch.zeros(2, dtype=torch.bfloat16)},
        optimizer={"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 3)}},
                   "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        scheduler={"last_epoch": 3, "_last_lr": [1e-3], "lr_lambdas": [{}]},
        rng=[{"python": (3, tuple(range(625)), None), "numpy": ["MT19937", [1, 2, 3], 4, 0, 0.0],
              "torch": torch.get_rng_state()}],
        best={"step": 2, "accuracy": np.float32(0.5).item(), "macro_f1": float("nan"), "n": np.int64(7)},
        best_state={"w": torch.randn(2, 3)}, history=[{"step": 2}], log=[{"step": 1, "loss": 0.7}],
        config={"lr": 1e-3}, inputs={"train": {"a.jsonl": "sha256:x"}},
    )
    kw.update(over)
    return LoopState(**kw)


def test_state_round_trips_exactly_without_pickle(tmp_path):
    import torch

    from xlt.train.state import LoopState, make_state_dir, why_not_ours

    work = str(tmp_path / "ck.partial")
    make_state_dir(work)
    st = _state()
    st.save(work)
    st.save(work)  # a second save replaces the first: one tensor file
    names = sorted(os.listdir(work))
    assert names[0] == ".xlt-partial" and names[2] == "state.json" and len(names) == 3
    assert names[1].startswith("state-") and names[1].endswith(".safetensors")
    assert why_not_ours(work) is None
    with open(os.path.join(work, names[1]), "rb") as fh:
        assert b"\x80\x04" not in fh.read(64)  # a safetensors header, not a pickle
    back = LoopState.load(work)
    assert (back.model["w"] == st.model["w"]).all() and back.model["b"].dtype == torch.bfloat16
    assert back.optimizer["state"][0]["step"].item() == 3.0 and 0 in back.optimizer["state"]  # int keys kept
    assert back.optimizer["param_groups"][0]["betas"] == (0.9, 0.999)  # tuples kept
    assert back.rng[0]["python"] == (3, tuple(range(625)), None)
    assert (back.rng[0]["torch"] == st.rng[0]["torch"]).all()
    assert math.isnan(back.best["macro_f1"]) and back.best["n"] == 7
    assert (back.best_state["w"] == st.best_state["w"]).all()
    assert (back.step, back.epoch, back.batch_pos, back.seen, back.inputs) == (3, 1, 2, 24, st.inputs)


def test_state_refuses_what_json_cannot_hold(tmp_path):
    from xlt.train.state import make_state_dir

    work = str(tmp_path / "x.partial")
    make_state_dir(work)
    with pytest.raises(TypeError, match="/scheduler/fn is a function"):
        _state(scheduler={"fn": lambda: 0}).save(work)
    assert not [n for n in os.listdir(work) if n.startswith("state")]  # nothing half-saved


@pytest.mark.parametrize("damage", ["garbage-json", "foreign-json", "escape-path", "truncated-tensors", "other-save"])
def test_unreadable_state_is_one_line_usage_error(tmp_path, damage):
    from xlt.errors import UsageError
    from xlt.train.state import LoopState, make_state_dir

    work = str(tmp_path / "ck.partial")
    make_state_dir(work)
    _state().save(work)
    jpath = os.path.join(work, "state.json")
    doc = json.load(open(jpath))
    tensors = os.path.join(work, doc["tensors"])
    if damage == "garbage-json":
        open(jpath, "wb").write(b"\x80\x04 not json")
    elif damage == "foreign-json":
        json.dump({"hello": 1}, open(jpath, "w"))
    elif damage == "escape-path":
        json.dump({**doc, "tensors": "../../etc/passwd"}, open(jpath, "w"))
    elif damage == "truncated-tensors":
        data = open(tensors, "rb").read()
        open(tensors, "wb").write(data[: len(data) // 2])
    else:
        json.dump({**doc, "token": "0" * 16}, open(jpath, "w"))
    with pytest.raises(UsageError) as exc:
        LoopState.load(work)
    msg = str(exc.value)
    assert "\n" not in msg and "cannot read the saved state" in msg
    assert (tensors if damage in ("truncated-tensors", "other-save") else jpath) in msg


def test_check_fits_names_what_differs():
    from xlt.errors import UsageError

    st = _state()
    trainable = {"w": [2, 3], "b": [2]}
    st.check_fits(owner=dict(st.owner), trainable=trainable, where="ck.partial")
    with pytest.raises(UsageError, match=r"ck.partial was saved by a run with --model \"m\"; this run has --model \"n\""):
        st.check_fits(owner={**st.owner, "--model": "n"}, trainable=trainable, where="ck.partial")
    with pytest.raises(UsageError, match=r"ck.partial does not fit this model: w is \[2, 3\] in the state and \[3, 3\] here"):
        st.check_fits(owner=dict(st.owner), trainable={"w": [3, 3], "b": [2]}, where="ck.partial")
    with pytest.raises(UsageError, match="c is trained here but not in the state"):
        st.check_fits(owner=dict(st.owner), trainable={**trainable, "c": [1]}, where="ck.partial")


def test_state_dir_recognition_and_removal(tmp_path):
    from xlt.errors import UsageError
    from xlt.train.state import check_state_dir, make_state_dir, remove_state_dir

    work = str(tmp_path / "a.partial")
    make_state_dir(work)
    _state().save(work)
    check_state_dir(work)  # xlt's: fine
    open(os.path.join(work, "notes.txt"), "w").write("mine")
    with pytest.raises(UsageError, match=r"not xlt's resume state \(it holds notes.txt\); move it away"):
        check_state_dir(work)
    assert not remove_state_dir(work)  # only xlt's files went; the user's stays, with the dir
    assert os.listdir(work) == ["notes.txt"]
    legacy = tmp_path / "b.partial"
    legacy.mkdir()
    (legacy / "state.pt").write_bytes(b"old")
    check_state_dir(str(legacy))  # an older xlt's state dir is still recognised (and cleared)
    assert remove_state_dir(str(legacy)) and not legacy.exists()
    for other, why in ((tmp_path / "empty.partial", "it is empty"), (tmp_path / "file.partial", "a link or a file")):
        other.mkdir() if other.name.startswith("empty") else other.write_text("x")
        with pytest.raises(UsageError, match=why):
            check_state_dir(str(other))


# --- the loop, driven from Python with a tiny model ----------------------------------------------

def _run(tiny_bert, out, *, nan_at=None, resume=False, nan_param=False, max_steps=6):
    """Train a tiny BERT classifier on fixed random batches; the objective's loss is NaN at its
    `nan_at`-th call (one call per micro-batch)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlt.hf import quiet_transformers
    from xlt.train.loop import TrainConfig, seed_everything, train

    quiet_transformers()
    seed_everything(3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    if nan_param:  # a row no input uses (token type 1): the loss stays finite, the weights do not
        with torch.no_grad():
            model.bert.embeddings.token_type_embeddings.weight[1, 0] = float("nan")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (24, 8), generator=g)
    gold = torch.randint(0, 2, (24,), generator=g)
    calls = {"n": 0}

    def make_batch(rows):
        rows = list(rows)
        return {"input_ids": ids[rows], "attention_mask": torch.ones_like(ids[rows]), "labels": gold[rows]}

    def objective(m, batch):
        calls["n"] += 1
        loss = F.cross_entropy(m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])
        return (loss * float("nan") if calls["n"] == nan_at else loss), {}

    cfg = TrainConfig(max_steps=max_steps, batch_size=8, lr=1e-2, warmup=0.0, seed=3, device="cpu", save_every=0, log_every=1)
    manifest = {"kind": "test", "base_model": tiny_bert, "labels": ["a", "b"], "inputs": {"train": "fixed"}}
    return train(model=model, tokenizer=tok, lengths=[8] * 24, make_batch=make_batch, objective=objective, cfg=cfg,
                 out=out, manifest=manifest, resume=resume)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def test_nan_loss_stops_saves_last_finite_step_and_resume_is_exact(tiny_bert, tmp_path):
    from xlt.train.loop import NonFiniteError
    from xlt.train.state import LoopState

    ref = str(tmp_path / "ref")
    _run(tiny_bert, ref)
    out = str(tmp_path / "nan")
    # 24 examples in batches of 8: 3 steps per epoch; the 5th batch is step 5, in epoch 2
    with pytest.raises(NonFiniteError) as exc:
        _run(tiny_bert, out, nan_at=5)
    msg = str(exc.value)
    assert NonFiniteError.exit_code == 1 and "\n" not in msg
    assert "the loss is nan at step 5 (epoch 2" in msg and "state after step 4 is saved" in msg and "--resume" in msg
    assert not os.path.exists(out)  # no checkpoint of a broken run
    st = LoopState.load(out + ".partial")
    assert (st.step, st.epoch, st.batch_pos, st.seen) == (4, 1, 1, 32)
    assert all(bool(v.isfinite().all()) for v in st.model.values())
    # nothing of the bad batch was applied: continuing from the state ends exactly where the
    # uninterrupted run did (weights, optimizer, schedule and RNG all as after step 4)
    _run(tiny_bert, out, resume=True)
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert not os.path.exists(out + ".partial")


def test_nan_loss_on_the_first_step_and_a_stale_state_dir_is_cleared(tiny_bert, tmp_path):
    from xlt.train.loop import NonFiniteError

    out = str(tmp_path / "first")
    with pytest.raises(NonFiniteError, match="at step 1 .*state after step 0 is saved"):
        _run(tiny_bert, out, nan_at=1)
    # a fresh run (no --resume) replaces the stale state xlt wrote
    _run(tiny_bert, out, max_steps=2)
    assert os.path.isfile(os.path.join(out, "model.safetensors")) and not os.path.exists(out + ".partial")


def test_non_finite_weights_are_never_written(tiny_bert, tmp_path):
    from xlt.train.loop import NonFiniteError

    out = str(tmp_path / "nanw")
    with pytest.raises(NonFiniteError, match=r"refusing to write .*nanw: 1 weight tensor\(s\) are not finite "
                                             r"\(first: bert.embeddings.token_type_embeddings.weight\)"):
        _run(tiny_bert, out, nan_param=True, max_steps=2)
    assert not os.path.exists(out)


DDP_NAN = """
import os, sys
import torch, torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from xlt.hf import quiet_transformers
from xlt.train.loop import NonFiniteError, TrainConfig, seed_everything, train

base, out = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
quiet_transformers()
seed_everything(3)
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
g = torch.Generator().manual_seed(0)
ids, gold = torch.randint(5, 60, (48, 8), generator=g), torch.randint(0, 2, (48,), generator=g)
calls = [0]

def make_batch(rows):
    rows = list(rows)
    return {"input_ids": ids[rows], "attention_mask": torch.ones_like(ids[rows]), "labels": gold[rows]}

def objective(m, b):
    calls[0] += 1
    loss = F.cross_entropy(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
    return (loss * float("nan") if rank == 1 and calls[0] == 3 else loss), {}

cfg = TrainConfig(max_steps=6, batch_size=8, grad_accum=2, lr=1e-2, seed=3, device="cpu", save_every=0, log_every=1)
try:
    train(model=model, tokenizer=AutoTokenizer.from_pretrained(base), lengths=[8] * 48, make_batch=make_batch,
          objective=objective, cfg=cfg, out=out, manifest={"kind": "test", "inputs": {}})
except NonFiniteError as exc:
    print(f"rank {rank}: {exc}", flush=True)
    sys.exit(1)
"""


def test_ddp_ranks_agree_on_a_nan_loss_of_one_rank(tiny_bert, tmp_path):
    """Only rank 1 sees the NaN (its 3rd micro-batch, in the window of step 2): both ranks stop
    there, none hangs in a collective, and the state after step 1 holds both ranks' RNG states."""
    from xlt.train.state import LoopState

    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_NAN)
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29643",
           str(script), tiny_bert, out]
    r = subprocess.run(cmd, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    text = r.stdout.decode()
    assert r.returncode != 0 and "rank 0: the loss is not finite (on another process) at step 2" in text, text + r.stderr.decode()[-2000:]
    assert "rank 1: the loss is nan at step 2" in text
    st = LoopState.load(out + ".partial")
    assert (st.step, st.world, len(st.rng), st.seen) == (1, 2, 2, 32)  # 1 step x 2 micro-batches x 8 x 2 ranks
    assert not os.path.exists(out)


# --- the command line --------------------------------------------------------------------------

def test_a_pickled_state_is_never_loaded(tiny_bert, train_file, tmp_path):
    out = tmp_path / "ck"
    work = tmp_path / "ck.partial"
    work.mkdir()
    pwned = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(pwned), "w"))

    (work / "state.pt").write_bytes(pickle.dumps(Payload()))
    r = run_xlt("teach", train_file, "--model", tiny_bert, "--out", str(out), "--max-steps", "2", "--resume")
    assert r.returncode == 2, r.stderr.decode()
    assert not pwned.exists()  # the pickle did not run
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "older xlt" in err and "no longer loaded" in err


def test_corrupt_state_json_is_one_line_exit_2_before_any_loading(train_file, tmp_path):
    out = tmp_path / "ck"
    work = tmp_path / "ck.partial"
    work.mkdir()
    (work / "state.json").write_text("{not json")
    # no such model: the broken state is reported first, before data and model are loaded
    r = run_xlt("teach", train_file, "--model", str(tmp_path / "no-such-model"), "--out", str(out), "--resume")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and f"cannot read the saved state {work / 'state.json'}" in err


@pytest.fixture(scope="module")
def interrupted(tiny_bert, train_file, tmp_path_factory):
    """A teach run stopped by SIGTERM: its state dir holds a real saved state."""
    out = str(tmp_path_factory.mktemp("stopped") / "ck")
    proc = subprocess.Popen([sys.executable, "-m", "xlt", "teach", train_file, "--model", tiny_bert, "--out", out,
                             "--epochs", "200", "--batch-size", "8", "--save-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not os.path.isdir(out + ".partial") and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    return out


@pytest.mark.parametrize("change,differs", [
    (["--model", "CLASSIFIER"], "--model"),
    (["--labels", "contradiction,entailment,neutral"], "labels"),
])
def test_resume_into_another_model_is_one_line_exit_2(interrupted, tiny_bert, tiny_classifier, train_file, change, differs):
    change = [tiny_classifier if c == "CLASSIFIER" else c for c in change]
    args = ["--model", tiny_bert, *change] if change[0] != "--model" else change
    r = run_xlt("teach", train_file, *args, "--out", interrupted, "--epochs", "200", "--batch-size", "8", "--resume",
                "--quiet")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and len(err) < 600, err  # one line, not a 7.5 KB size-mismatch dump
    assert f"the state in {interrupted}.partial was saved by a run with {differs}" in err
    assert os.path.isfile(interrupted + ".partial/state.json")  # the state is kept for the right command


def test_foreign_partial_dir_is_refused_and_kept(tiny_bert, train_file, tmp_path):
    out = tmp_path / "ck"
    mine = tmp_path / "ck.partial"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    r = run_xlt("teach", train_file, "--model", tiny_bert, "--out", str(out), "--max-steps", "1")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and "is not xlt's resume state" in err and "move it away" in err
    assert (mine / "thesis.tex").read_text() == "years of work" and not out.exists()


@pytest.mark.parametrize("command", ["teach", "distill"])
def test_existing_out_is_refused_before_any_loading(train_file, tmp_path, command):
    out = tmp_path / "done"
    out.mkdir()
    missing = str(tmp_path / "no-such-model")
    # the model (teach) or teacher (distill) does not exist: the error must be about --out, found first
    who = ["--model", missing] if command == "teach" else ["--student", missing, "--teacher", missing]
    r = run_xlt(command, train_file, *who, "--out", str(out), "--max-steps", "1")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert f"checkpoint {out} exists; pass --force" in err


@pytest.mark.parametrize("option,value", [("--weight-decay", "-0.1"), ("--log-every", "0"), ("--eval-every", "-2"),
                                          ("--save-every", "-1"), ("--lr", "nan"), ("--epochs", "inf")])
def test_bad_config_is_refused_before_any_loading(train_file, tmp_path, option, value):
    r = run_xlt("teach", train_file, "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o"),
                option, value)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert option in err and "no-such-model" not in err  # about the option, found before looking for the model


@pytest.mark.parametrize("field,value,message", [
    ("lr", float("nan"), "--lr must be a finite number"),
    ("epochs", float("inf"), "--epochs must be a finite number"),
    ("warmup", float("nan"), "--warmup must be a finite number"),
    ("weight_decay", -0.1, "--weight-decay must be >= 0"),
    ("max_grad_norm", float("nan"), "--max-grad-norm must be a finite number"),
    ("max_grad_norm", -1.0, "--max-grad-norm must be >= 0"),
    ("log_every", 0, "--log-every must be >= 1"),
    ("eval_every", 0, "--eval-every must be >= 1"),
    ("save_every", -1, "--save-every must be >= 0"),
])
def test_train_config_check(field, value, message):
    from xlt.errors import UsageError
    from xlt.train.loop import TrainConfig

    with pytest.raises(UsageError, match=message):
        TrainConfig(**{field: value}).check()
    TrainConfig().check()


def test_resume_without_state_is_refused_before_any_loading(train_file, tmp_path):
    r = run_xlt("teach", train_file, "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o"), "--resume")
    assert r.returncode == 2
    assert "no saved state" in r.stderr.decode()
