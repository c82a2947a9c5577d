"""`xlt average`: the weighted parameter mean of checkpoints of one starting point (WiSE-FT, soups)."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_xlt


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two tiny random classifiers of one architecture, labels and vocabulary (different seeds)."""
    from tinymodels import make_tiny_bert

    return (make_tiny_bert(str(tmp_path_factory.mktemp("avg-a")), classifier=True, seed=1),
            make_tiny_bert(str(tmp_path_factory.mktemp("avg-b")), classifier=True, seed=2))


def state(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def logits(path: str, records: str) -> list[float]:
    """Every record's logits, in one flat list."""
    r = run_xlt("soft-label", "--teacher", path, "--engine", "torch", records)
    assert r.returncode == 0, r.stderr.decode()
    return [v for x in r.stdout.decode().splitlines() for v in json.loads(x)["teacher"]["logits"]]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("avg-data") / "recs.jsonl"
    rows = [{"id": str(i), "lang": "en", "premise": f"the cat sat on the mat {i}", "hypothesis": "a dog ran",
             "label": "neutral"} for i in range(6)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_the_average_is_the_weighted_mean_of_every_parameter(members, tmp_path):
    import torch

    a, b = members
    out = str(tmp_path / "avg.ckpt")
    r = run_xlt("average", a, b, "--weights", "1,3", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""  # stdout is data only; a checkpoint command writes none
    sa, sb, so = state(a), state(b), state(out)
    assert set(so) == set(sa)
    moved = 0
    for name, t in so.items():
        assert t.dtype == sa[name].dtype
        if t.is_floating_point():
            assert torch.allclose(t, 0.25 * sa[name] + 0.75 * sb[name], atol=1e-6), name
            moved += not torch.equal(sa[name], sb[name])
        else:
            assert torch.equal(t, sa[name])
    assert moved > 10  # the members really differ
    m = json.loads(open(os.path.join(out, "xlt.json")).read())
    assert m["kind"] == "average"
    assert [x["weight"] for x in m["members"]] == [0.25, 0.75]
    assert [x["model"] for x in m["members"]] == [a, b]
    assert all(x["digest"].startswith("sha256:") for x in m["members"])
    assert m["labels"] == ["entailment", "neutral", "contradiction"]
    assert m["content_digest"]  # a checkpoint like any other
    assert m["seed"] is None  # plain Hugging Face members record none
    # without --force the checkpoint is kept
    again = run_xlt("average", a, b, "--out", out)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr.decode()


def test_averaging_a_model_with_itself_gives_its_own_outputs(members, records, tmp_path):
    import torch

    a, _ = members
    out = str(tmp_path / "self.ckpt")
    assert run_xlt("average", a, a, "--weights", "0.3,0.7", "--out", out).returncode == 0
    assert logits(out, records) == pytest.approx(logits(a, records), abs=2e-6)
    # weights 1,0 are the first model
    first = str(tmp_path / "first.ckpt")
    assert run_xlt("average", a, members[1], "--weights", "1,0", "--out", first).returncode == 0
    assert all(torch.equal(t, state(a)[n]) for n, t in state(first).items())
    # and the result is a usable checkpoint (xlt eval scores it)
    r = run_xlt("eval", "--model", out, "--engine", "torch", records)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["average"]["n"] == 6


@pytest.mark.parametrize("case", ["labels", "architecture", "weights-count", "negative", "all-zero", "one-model",
                                  "out-is-member", "not-a-number", "nan"])
def test_what_cannot_be_averaged_is_refused_in_one_line(members, tmp_path, case):
    from tinymodels import make_tiny_bert

    a, b = members
    out = str(tmp_path / "out.ckpt")
    args, want = {
        "labels": ([a, make_tiny_bert(str(tmp_path / "c"), labels=["neutral", "contradiction", "entailment"])],
                   "label orders differ"),
        "architecture": ([a, make_tiny_bert(str(tmp_path / "d"), classifier=True, hidden=48)], "differ"),
        "weights-count": ([a, b, "--weights", "1,2,3"], "3 value(s) for 2 models"),
        "negative": ([a, b, "--weights", "1,-1"], "must be finite and >= 0"),
        "all-zero": ([a, b, "--weights", "0,0"], "all 0"),
        "one-model": ([a], "at least 2 models"),
        "out-is-member": ([a, b, "--force"], "is one of the models"),
        "not-a-number": ([a, b, "--weights", "1,x"], "comma-separated numbers"),
        "nan": ([a, b, "--weights", "nan,1"], "must be finite and >= 0"),
    }[case]
    target = a if case == "out-is-member" else out
    r = run_xlt("average", *args, "--out", target)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert want in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(out)
    assert os.path.isfile(os.path.join(a, "model.safetensors"))


def test_a_member_with_non_finite_weights_is_refused_and_nothing_is_written(members, tmp_path):
    import shutil

    from safetensors.torch import save_file

    a, _ = members
    bad = str(tmp_path / "bad")
    shutil.copytree(a, bad)
    s = state(bad)
    name = next(n for n, t in s.items() if t.is_floating_point() and t.ndim == 2)
    s[name][0, 0] = float("nan")
    save_file(s, os.path.join(bad, "model.safetensors"), metadata={"format": "pt"})
    out = str(tmp_path / "out.ckpt")
    r = run_xlt("average", a, bad, "--out", out)
    err = r.stderr.decode()
    assert r.returncode == 1 and "not finite" in err and name in err, err
    assert not os.path.exists(out) and not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


def test_a_pickle_member_needs_allow_pickle(members, tmp_path):
    import shutil

    import torch

    a, _ = members
    pickled = str(tmp_path / "pickled")
    shutil.copytree(a, pickled)
    torch.save(state(pickled), os.path.join(pickled, "pytorch_model.bin"))
    os.remove(os.path.join(pickled, "model.safetensors"))
    out = str(tmp_path / "out.ckpt")
    r = run_xlt("average", a, pickled, "--out", out)
    assert r.returncode == 2 and "--allow-pickle" in r.stderr.decode() and not os.path.exists(out)
    r = run_xlt("average", a, pickled, "--out", out, "--allow-pickle")
    assert r.returncode == 0, r.stderr.decode()
    assert all(torch.equal(t, state(a)[n]) for n, t in state(out).items())  # a model averaged with its own copy
