"""LoRA (`--peft lora`, xlt.train.lora) and experiment tracking (`--report-to`, xlt.train.tracking):
only adapters and the head train, the merged checkpoint and its adapter dir agree, resume is
exact, TensorBoard, wandb (offline) and MLflow (local store) runs hold the scalars, and options
that would do nothing are refused."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_xlt
from test_teach import synthetic, write_jsonl


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora-data")
    return {"train": write_jsonl(d / "train.jsonl", synthetic(96, seed=11)),
            "dev": write_jsonl(d / "dev.jsonl", synthetic(24, seed=12, start=500)
                               + synthetic(24, seed=13, lang="fr", start=900))}


@pytest.fixture(scope="module")
def lora_ckpt(tiny_bert, files, tmp_path_factory):
    """A LoRA teach run with a dev set and TensorBoard tracking (default dir: OUT/runs/)."""
    out = str(tmp_path_factory.mktemp("lora") / "ck")
    r = run_xlt("teach", files["train"], "--model", tiny_bert, "--out", out, "--dev", files["dev"], "--peft", "lora",
                "--lora-r", "4", "--max-steps", "6", "--batch-size", "16", "--lr", "2e-2", "--eval-every", "3",
                "--log-every", "1", "--seed", "5", "--report-to", "tensorboard", "--device", "cpu")
    assert r.returncode == 0, r.stderr.decode()
    return out


def _weights(path, name="model.safetensors"):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, name))


def test_only_adapters_and_head_are_trainable(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from xlt.train.lora import LoraOptions, apply_lora

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)
    wrapped, about = apply_lora(model, LoraOptions(r=4))
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or ".modules_to_save." in n for n in trainable), trainable
    assert any(".modules_to_save.default.weight" in n and "classifier" in n for n in trainable)
    assert about["targets"] == ["query", "value"] and about["head"] == ["pooler", "classifier"]
    assert about["trainable_parameters"] == sum(p.numel() for n, p in wrapped.named_parameters() if n in trainable)


def test_merged_checkpoint_changes_only_query_value_and_head(lora_ckpt, tiny_bert):
    base = {k.removeprefix("bert."): v for k, v in _weights(tiny_bert).items()}
    merged = _weights(lora_ckpt)
    assert not any("lora" in k for k in merged)  # a plain classifier
    changed = set()
    for k, v in merged.items():
        name = k.removeprefix("bert.")
        if name in base and not bool((base[name] == v).all()):
            changed.add(name)
    assert changed and all(k.endswith(("query.weight", "value.weight")) for k in changed), changed
    assert {"classifier.weight", "classifier.bias"} <= set(merged)
    with open(os.path.join(lora_ckpt, "xlt.json"), encoding="utf-8") as fh:
        peft = json.load(fh)["peft"]
    assert {k: peft[k] for k in ("method", "r", "alpha", "dropout", "targets")} == {
        "method": "lora", "r": 4, "alpha": 16.0, "dropout": 0.1, "targets": ["query", "value"]}
    assert 0 < peft["trainable_parameters"] < peft["total_parameters"]
    adapter = os.path.join(lora_ckpt, "adapter")
    assert os.path.isfile(os.path.join(adapter, "adapter_config.json"))
    assert os.path.isfile(os.path.join(adapter, "adapter_model.safetensors"))


def test_merged_checkpoint_and_adapter_dir_give_the_same_logits(lora_ckpt):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xlt.inference.classifier import choose_engine
    from xlt.inference.ct2_engine import ct2_unsupported
    from xlt.inference.torch_engine import load_model_dir

    adapter = os.path.join(lora_ckpt, "adapter")
    plain = AutoModelForSequenceClassification.from_pretrained(lora_ckpt).eval()
    merged, tok, manifest = load_model_dir(adapter)
    assert manifest["peft"]["method"] == "lora" and merged.config.id2label == plain.config.id2label
    batch = AutoTokenizer.from_pretrained(lora_ckpt)(["the dog runs", "a man sits"], ["no cat", "the man"],
                                                     return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = plain(**batch).logits, merged.eval()(**batch).logits
    assert torch.allclose(a, b, atol=1e-5), (a, b)
    assert ct2_unsupported(adapter) and "adapter" in ct2_unsupported(adapter)
    assert choose_engine("auto", adapter) == "torch"


def test_tensorboard_has_train_and_dev_scalars_and_eval_logs_each_language(lora_ckpt, files, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(d):
        acc = EventAccumulator(d)
        acc.Reload()
        return acc.Tags()["scalars"], acc

    tags, acc = scalars(os.path.join(lora_ckpt, "runs", "teach"))
    assert {"train/loss", "train/lr", "train/examples_per_s", "dev/accuracy", "dev/languages/fr"} <= set(tags), tags
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("dev/accuracy")] == [3, 6]

    logs = str(tmp_path / "tb")
    # the adapter dir on its own: base + adapter merged in torch (the ct2 engine falls back)
    r = run_xlt("eval", "--model", os.path.join(lora_ckpt, "adapter"), files["dev"], "--report-to", "tensorboard",
                "--tracking-dir", logs, "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    assert report["signature"]["engine"] == "torch"
    tags, acc = scalars(os.path.join(logs, "eval"))
    assert {"eval/accuracy/en", "eval/accuracy/fr", "eval/average/accuracy"} <= set(tags), tags
    assert acc.Scalars("eval/accuracy/fr")[0].value == pytest.approx(report["languages"]["fr"]["accuracy"])


def _teach(tiny_bert, train, out, *, resume=False, fail_at=None):
    """LoRA + RS-RP robust training in-process, 10 steps, state saved every 4; with `fail_at`, the
    run dies (an exception, as a crash would) when building that batch."""
    from xlt.robust import RobustConfig
    from xlt.train import run as run_module
    from xlt.train.loop import TrainConfig
    from xlt.train.lora import LoraOptions
    from xlt.train.run import RunOptions
    from xlt.train.teach import teach

    cfg = TrainConfig(max_steps=10, batch_size=8, lr=1e-2, seed=3, save_every=4, log_every=100, device="cpu")
    run = RunOptions(out=out, cfg=cfg, lora=LoraOptions(r=4, dropout=0.1), resume=resume,
                     robust=RobustConfig.from_options("rs", epsilon=0.05, seed=3))
    real = run_module.batch_builder

    def failing(*args, **kwargs):
        make = real(*args, **kwargs)
        calls = {"n": 0}

        def make_batch(rows):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise RuntimeError("crash")
            return make(rows)

        return make_batch

    run_module.batch_builder = failing
    try:
        teach([train], model=tiny_bert, run=run)
    finally:
        run_module.batch_builder = real


def test_resume_with_lora_is_exact(tiny_bert, files, tmp_path):
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    _teach(tiny_bert, files["train"], ref)
    with pytest.raises(RuntimeError, match="crash"):
        _teach(tiny_bert, files["train"], out, fail_at=7)  # the state of step 4 is saved
    from xlt.train.state import LoopState

    saved = LoopState.load(out + ".partial")
    assert saved.step == 4
    assert any("lora_A" in k for k in saved.model) and any("modules_to_save" in k for k in saved.model)
    assert not any(k.endswith("query.base_layer.weight") for k in saved.model)  # frozen: not in the state
    _teach(tiny_bert, files["train"], out, resume=True)
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        a, b = _weights(ref, name), _weights(out, name)
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]).all(), (name, k)


@pytest.mark.parametrize("command,args,message", [
    ("teach", ["--lora-r", "4"], "--lora-r only applies with --peft lora"),
    ("distill", ["--student-arch", "cnn", "--peft", "lora"], "--peft lora adapts a pretrained encoder student"),
    ("teach", ["--tracking-dir", "tb"], "--tracking-dir only applies with --report-to"),
    ("teach", ["--peft", "lora", "--lora-dropout", "1.5"], "--lora-dropout must be in [0, 1)"),
])
def test_meaningless_lora_and_tracking_options_are_refused(tiny_bert, files, tmp_path, command, args, message):
    who = ["--model", tiny_bert] if command == "teach" else []
    r = run_xlt(command, files["train"], *who, "--out", str(tmp_path / "o"), "--max-steps", "1", *args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_wandb_offline_and_mlflow_local_runs_hold_train_and_dev_metrics(tracker, tiny_bert, files, tmp_path):
    """Weights & Biases in offline mode writes its run under OUT/runs/ (it moves into the
    checkpoint); MLflow without MLFLOW_TRACKING_URI writes the SQLite store OUT/runs/mlflow.db, and
    `eval --report-to mlflow --tracking-dir` the accuracy table; stdout stays empty."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_TRACKING_URI": "", "HOME": str(tmp_path)}
    out = tmp_path / "ck"
    r = run_xlt("teach", files["train"], "--model", tiny_bert, "--out", str(out), "--dev", files["dev"], "--max-steps", "4",
                "--batch-size", "16", "--eval-every", "2", "--log-every", "1", "--report-to", tracker, "--device", "cpu",
                env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    runs = out / "runs"
    if tracker == "wandb":
        # the run's record log (wandb-core's binary format: protobuf records) names every metric logged
        (log,) = runs.glob("wandb/offline-run-*/run-*.wandb")
        data = log.read_bytes()
        for key in (b"train/loss", b"train/lr", b"dev/accuracy", b"dev/languages/fr", b"freeze_embeddings"):
            assert key in data, key
        return
    import mlflow

    def metrics(db: str, experiment: str) -> tuple[dict, dict]:
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        return run.data.params, {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                                 for k in run.data.metrics}

    params, hist = metrics(str(runs / "mlflow.db"), "teach")
    assert params["lr"] and params["kind"] == "teach"
    assert [s for s, _ in hist["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in hist["dev/accuracy"]] == [2, 4] and "dev/languages/fr" in hist
    assert hist["dev/accuracy"][-1][1] == pytest.approx(json.loads((out / "xlt.json").read_text())["dev"]["history"][-1]["accuracy"])
    logs = tmp_path / "ml"
    r = run_xlt("eval", "--model", str(out), files["dev"], "--report-to", "mlflow", "--tracking-dir", str(logs), "--quiet",
                env=env)
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    _, hist = metrics(str(logs / "mlflow.db"), "eval")
    assert hist["eval/accuracy/fr"] == [(0, pytest.approx(report["languages"]["fr"]["accuracy"]))]


@pytest.mark.parametrize("tracker,uri,hidden,message", [
    ("wandb", "", {"wandb"}, "--report-to wandb needs wandb, not installed: pip install 'xlt[tracking]' (or: pip install wandb)"),
    ("mlflow", "", {"alembic"}, "--report-to mlflow (its local store, without MLFLOW_TRACKING_URI) needs alembic"),
    ("mlflow", "http://tracking.example:5000", {"alembic"}, None),  # a server: no local store to need
])
def test_a_tracker_without_its_packages_is_refused_in_one_line(tracker, uri, hidden, message, monkeypatch):
    import importlib.util

    from xlt.errors import UsageError
    from xlt.train.tracking import Tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    if message is None:
        assert Tracking.from_options(tracker, None) == Tracking(tracker, None)
        return
    with pytest.raises(UsageError) as e:
        Tracking.from_options(tracker, None)
    assert message in str(e.value) and "\n" not in str(e.value)
