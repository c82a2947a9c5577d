"""Golden values for the distillation objectives (xlt.distill.losses), the spec parser and the
pseudo-label report. Expected values are literals worked out by hand or explicit numpy formulas."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from xlt.distill import parse_weights
from xlt.distill.losses import (CELoss, CombinedObjective, DistillBatch, HiddenKLLoss, KDLoss, LogitMSELoss,
                                PseudoLabelLoss)
from xlt.distill.report import PseudoLabelReport
from xlt.distill.spec import format_weights
from xlt.errors import UsageError


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


S = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
TL = [[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]


# --- package import and --objective spec -------------------------------------------------------

def test_import_xlt_distill_does_not_import_torch():
    code = "import sys, xlt.distill, xlt.distill.spec, xlt.distill.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_weights():
    assert parse_weights("kd=1,ce=0.5") == {"kd": 1.0, "ce": 0.5}
    assert parse_weights(" kd , hidden-kl=0.1 ") == {"kd": 1.0, "hidden-kl": 0.1}
    assert parse_weights("kd=1,ce=0") == {"kd": 1.0, "ce": 0.0}
    assert format_weights(parse_weights("kd=1,ce=0.5")) == "kd=1,ce=0.5"


@pytest.mark.parametrize("spec, message", [
    ("kd=1,bogus=2", "unknown term 'bogus'"),
    ("kd=abc", "not a number"),
    ("kd=-1", ">= 0"),
    ("kd=nan", ">= 0"),
    ("kd=inf", ">= 0"),
    ("kd=1,kd=2", "given twice"),
    ("", "empty"),
    ("kd=1,,ce=1", "empty term"),
    ("kd=0,ce=0", "at least one weight must be positive"),
])
def test_parse_weights_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_weights(spec)


# --- kd ----------------------------------------------------------------------------------------

def test_kd_golden_by_hand():
    # T=1, teacher certain of class 0, student uniform over 2 classes: KL = log 2.
    assert KDLoss(1.0)(t([[0.0, 0.0]]), teacher_probs=t([[1.0, 0.0]])).item() == pytest.approx(math.log(2), abs=1e-6)
    # T=2, teacher logits [2 ln 3, 0] -> p_T = [3/4, 1/4]; student uniform:
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120; times T^2 = 4 -> 0.5232481.
    loss = KDLoss(2.0)(t([[0.0, 0.0]]), teacher_logits=t([[2 * math.log(3), 0.0]]))
    assert loss.item() == pytest.approx(0.5232481, abs=1e-6)
    assert KDLoss(2.0, t2_scale=False)(t([[0.0, 0.0]]), t([[2 * math.log(3), 0.0]])).item() == pytest.approx(0.1308120, abs=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 2.0, 5.0])
def test_kd_matches_numpy_formula(temperature):
    s, tl = np.array(S), np.array(TL)
    p, q = np_softmax(tl / temperature), np_softmax(s / temperature)
    expected = temperature ** 2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1))
    assert KDLoss(temperature)(t(S), t(TL)).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_kd_t2_scaling():
    plain = KDLoss(3.0, t2_scale=False)(t(S), t(TL)).item()
    assert KDLoss(3.0)(t(S), t(TL)).item() == pytest.approx(9.0 * plain, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_kd_probs_equal_logits(temperature):
    probs = torch.softmax(t(TL), dim=-1)
    from_logits = KDLoss(temperature)(t(S), teacher_logits=t(TL))
    from_probs = KDLoss(temperature)(t(S), teacher_probs=probs)
    assert from_probs.item() == pytest.approx(from_logits.item(), rel=1e-5)


def test_kd_gradient_is_t_times_q_minus_p():
    # d/dz_s [T^2 KL(p_T || softmax(z_s/T))] = T (q_T - p_T), averaged over the batch.
    temperature = 2.0
    s = t(S).requires_grad_()
    KDLoss(temperature)(s, t(TL)).backward()
    p, q = np_softmax(np.array(TL) / temperature), np_softmax(np.array(S) / temperature)
    np.testing.assert_allclose(s.grad.numpy(), temperature * (q - p) / len(S), rtol=1e-5, atol=1e-7)


def test_kd_is_monox_cross_entropy_minus_teacher_entropy():
    # MONOX-KD, T = 0.1: CE(p_T, q_T) = KL + H(p_T).
    temperature = 0.1
    s, tl = np.array(S), np.array(TL) * 0.05  # small teacher logits keep p_T away from one-hot
    p, q = np_softmax(tl / temperature), np_softmax(s / temperature)
    ce = np.mean(-np.sum(p * np.log(q), axis=1))
    entropy = np.mean(-np.sum(p * np.log(p), axis=1))
    kl = KDLoss(temperature, t2_scale=False)(t(S), t(tl.tolist())).item()
    assert kl == pytest.approx(ce - entropy, rel=1e-4)


def test_kd_zero_when_student_equals_teacher_and_zero_probs_give_no_nan():
    assert KDLoss(2.0)(t(TL), t(TL)).item() == pytest.approx(0.0, abs=1e-6)
    s = t([[0.2, -0.3, 1.0]]).requires_grad_()
    loss = KDLoss(0.5)(s, teacher_probs=t([[0.0, 0.3, 0.7]]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(s.grad).all()
    # p_T ∝ p^(1/T): T=0.5 squares then renormalizes [0, .3, .7] -> [0, .09/.58, .49/.58].
    p = np.array([0.0, 0.09, 0.49]) / 0.58
    q = np_softmax(np.array([0.2, -0.3, 1.0]) / 0.5)
    expected = 0.25 * np.sum(p[1:] * (np.log(p[1:]) - np.log(q[1:])))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kd_errors():
    with pytest.raises(UsageError, match="needs teacher logits or teacher probabilities"):
        KDLoss()(t(S))
    with pytest.raises(UsageError, match="differ in shape"):
        KDLoss()(t(S), t([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(UsageError, match="finite and >= 0"):
        KDLoss()(t(S), teacher_probs=t([[-0.1, 0.5, 0.6], [0.2, 0.2, 0.6]]))
    with pytest.raises(UsageError, match="--temperature must be > 0"):
        KDLoss(0.0)


# --- mse ---------------------------------------------------------------------------------------

def test_mse_golden():
    # Rows: (1-0)^2 + (2-0)^2 = 5 and (0-3)^2 + (0-4)^2 = 25; mean over the batch = 15.
    loss = LogitMSELoss()(t([[1.0, 2.0], [0.0, 0.0]]), t([[0.0, 0.0], [3.0, 4.0]]))
    assert loss.item() == pytest.approx(15.0)
    assert loss.item() == pytest.approx(2 * torch.nn.functional.mse_loss(t([[1.0, 2.0], [0.0, 0.0]]),
                                                                         t([[0.0, 0.0], [3.0, 4.0]])).item())


def test_mse_needs_logits():
    with pytest.raises(UsageError, match="teacher logits"):
        LogitMSELoss()(t(S), None)
    with pytest.raises(UsageError, match="'mse' needs teacher_logits"):
        CombinedObjective("mse")(student_logits=t(S), teacher_probs=torch.softmax(t(TL), -1))


# --- hidden-kl ---------------------------------------------------------------------------------

def test_hidden_kl_matches_numpy_formula():
    hs = np.array([[0.1, 0.4, -0.2, 1.0], [2.0, 0.0, 0.0, -1.0]])
    ht = np.array([[1.0, 0.0, 0.5, 0.5], [0.0, 0.3, 0.3, 0.3]])
    p, q = np_softmax(ht), np_softmax(hs)
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1))
    got = HiddenKLLoss()(t(hs.tolist()), t(ht.tolist())).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert HiddenKLLoss()(t(ht.tolist()), t(ht.tolist())).item() == pytest.approx(0.0, abs=1e-6)


def test_hidden_kl_size_mismatch_says_what_to_do():
    with pytest.raises(UsageError, match="pooled_size=8"):
        HiddenKLLoss()(torch.zeros(2, 4), torch.zeros(2, 8))
    with pytest.raises(UsageError, match="student_hidden"):
        HiddenKLLoss()(None, torch.zeros(2, 8))


# --- ce ----------------------------------------------------------------------------------------

def test_ce_golden_and_ignored_labels():
    # [0, 0] -> ln 2 for either label; [ln 3, 0] label 0 -> -ln(3/4).
    logits = t([[0.0, 0.0], [math.log(3), 0.0], [5.0, -5.0]])
    loss = CELoss()(logits, torch.tensor([1, 0, -100]))
    assert loss.item() == pytest.approx((math.log(2) - math.log(0.75)) / 2, rel=1e-6)


def test_ce_without_labels_is_zero_not_nan():
    s = t(S).requires_grad_()
    loss = CELoss()(s, torch.tensor([-100, -100]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))
    with pytest.raises(UsageError, match="outside 0..2"):
        CELoss()(t(S), torch.tensor([0, 3]))
    with pytest.raises(UsageError, match="gold labels"):
        CELoss()(t(S), None)


# --- pseudo ------------------------------------------------------------------------------------

def np_ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np_softmax(logits)[np.arange(len(y)), y])


PROBS = [[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]]
STUDENT = [[0.3, -0.2], [1.0, 0.5], [-0.4, 0.8]]


def test_pseudo_threshold_keeps_confident_rows():
    loss, keep, labels, conf = PseudoLabelLoss(0.58)(t(STUDENT), teacher_probs=t(PROBS))
    assert keep.tolist() == [True, True, False]
    assert labels.tolist() == [0, 1, 0]
    np.testing.assert_allclose(conf.numpy(), [0.9, 0.6, 0.55], rtol=1e-6)
    expected = np_ce(np.array(STUDENT[:2]), np.array([0, 1])).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pseudo_threshold_zero_keeps_all_and_logits_work():
    logits = torch.log(t(PROBS)) + 1.7  # same distribution as PROBS
    loss, keep, labels, _ = PseudoLabelLoss(0.0)(t(STUDENT), teacher_logits=logits)
    assert keep.all() and labels.tolist() == [0, 1, 0]
    assert loss.item() == pytest.approx(np_ce(np.array(STUDENT), np.array([0, 1, 0])).mean(), rel=1e-6)


def test_pseudo_none_kept_is_zero_without_nan():
    s = t(STUDENT).requires_grad_()
    loss, keep, *_ = PseudoLabelLoss(0.95)(s, teacher_probs=t(PROBS))
    loss.backward()
    assert not keep.any() and loss.item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))


def test_pseudo_class_balancing():
    # Kept pseudo-labels [0, 1, 0]: class 0 twice -> weights 1/2, 1/2, 1 -> (mean(l0, l2) + l1) / 2.
    l = np_ce(np.array(STUDENT), np.array([0, 1, 0]))
    loss, *_ = PseudoLabelLoss(0.0, balance=True)(t(STUDENT), teacher_probs=t(PROBS))
    assert loss.item() == pytest.approx(((l[0] + l[2]) / 2 + l[1]) / 2, rel=1e-6)
    assert loss.item() != pytest.approx(l.mean(), rel=1e-4)
    with pytest.raises(UsageError, match="--min-confidence must be in"):
        PseudoLabelLoss(1.5)


# --- combined ----------------------------------------------------------------------------------

def test_combined_weighted_sum_and_terms():
    labels = torch.tensor([2, -100])
    obj = CombinedObjective({"kd": 1.0, "ce": 0.5}, temperature=2.0)
    res = obj(student_logits=t(S), labels=labels, teacher_logits=t(TL))
    kd = KDLoss(2.0)(t(S), t(TL)).item()
    ce = CELoss()(t(S), labels).item()
    assert res.loss.item() == pytest.approx(kd + 0.5 * ce, rel=1e-6)
    assert set(res.terms) == {"kd", "ce"}
    assert res.terms["kd"].item() == pytest.approx(kd) and res.terms["ce"].item() == pytest.approx(ce)
    assert res.pseudo is None
    same = obj(DistillBatch(student_logits=t(S), labels=labels, teacher_logits=t(TL)))
    assert same.loss.item() == pytest.approx(res.loss.item())
    assert obj.describe()["objective"] == "kd=1,ce=0.5"


def test_combined_zero_weight_is_logged_but_not_trained():
    s = t(S).requires_grad_()
    res = CombinedObjective("kd=1,ce=0")(student_logits=s, labels=torch.tensor([2, 0]), teacher_logits=t(TL))
    assert res.terms["ce"].item() > 0
    res.loss.backward()
    kd_only = t(S).requires_grad_()
    KDLoss()(kd_only, t(TL)).backward()
    assert torch.allclose(s.grad, kd_only.grad)


def test_combined_pseudo_and_hidden_kl():
    hs, ht = torch.randn(3, 4), torch.randn(3, 4)
    obj = CombinedObjective("pseudo=1,hidden-kl=0.1", min_confidence=0.58)
    res = obj(student_logits=t(STUDENT), teacher_probs=t(PROBS), student_hidden=hs, teacher_hidden=ht)
    pl = PseudoLabelLoss(0.58)(t(STUDENT), teacher_probs=t(PROBS)).loss.item()
    assert res.loss.item() == pytest.approx(pl + 0.1 * HiddenKLLoss()(hs, ht).item(), rel=1e-6)
    assert res.pseudo.keep.tolist() == [True, True, False]
    assert res.terms["pseudo_kept"].item() == pytest.approx(2 / 3)


def test_combined_missing_inputs_are_clear_errors():
    obj = CombinedObjective("kd=1,ce=1")
    with pytest.raises(UsageError, match="'ce' needs labels"):
        obj(student_logits=t(S), teacher_logits=t(TL))
    with pytest.raises(UsageError, match="'kd' needs teacher"):
        obj(student_logits=t(S), labels=torch.tensor([0, 1]))
    obj.check_inputs({"student_logits", "labels", "teacher_probs"})
    with pytest.raises(UsageError, match="'hidden-kl' needs student_hidden, teacher_hidden"):
        CombinedObjective("hidden-kl=0.1,ce=1").check_inputs({"student_logits", "labels"})
    assert CombinedObjective("hidden-kl=0.1,ce=1").needs == {"student_hidden", "teacher_hidden", "labels"}
    with pytest.raises(UsageError, match="unknown term"):
        CombinedObjective({"kd": 1, "nope": 1})


# --- report ------------------------------------------------------------------------------------

def test_pseudo_label_report_counts_and_merges():
    rep = PseudoLabelReport(["entailment", "neutral", "contradiction"])
    rep.update(["fr", "fr", "de"], torch.tensor([0, 2, 2]), torch.tensor([True, False, True]))
    rep.update(["fr"], [1], [True])
    d = rep.to_dict()
    assert d["seen"] == 4 and d["kept"] == 3
    assert d["langs"]["fr"] == {"seen": 3, "kept": 2, "kept_by_class": {"entailment": 1, "neutral": 1}}
    assert d["langs"]["de"] == {"seen": 1, "kept": 1, "kept_by_class": {"contradiction": 1}}
    other = PseudoLabelReport(["entailment", "neutral", "contradiction"])
    other.update(["de"], [2], [False])
    rep.merge(other)
    rows = {r["lang"]: r for r in rep.rows()}
    assert rows["de"]["seen"] == 2 and rows["de"]["kept_pct"] == 50.0
    assert rows["all"] == {"lang": "all", "seen": 5, "kept": 3, "kept_pct": 60.0,
                           "entailment": 1, "neutral": 1, "contradiction": 1}
    with pytest.raises(ValueError):
        rep.update(["fr"], [0, 1], [True, True])
