"""Robust training primitives (xlt.robust): embedding perturbations for adv and rs training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from xlt.errors import UsageError  # noqa: E402
from xlt.robust import EPSILON_GRID, RobustConfig, perturbed_embeddings, robust_loss  # noqa: E402

SENTENCES = [("the man sits in the park", "a man is outside"),
             ("the dog eats", "the cat sleeps in the house and the dog runs on the street"),
             ("she reads a book", "she is happy")]
LABELS = [0, 2, 1]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs", [
    dict(method="fgsm", epsilon=0.1),
    dict(method="adv", epsilon=0.0),
    dict(method="rs", epsilon=-0.1),
    dict(method="adv", epsilon=float("nan")),
    dict(method="adv", epsilon=0.1, steps=0),
    dict(method="adv", epsilon=0.1, steps=True),
    dict(method="adv", epsilon=0.1, step_size=0.0),
    dict(method="rs", epsilon=0.1, steps=3),
    dict(method="rs", epsilon=0.1, step_size=0.01),
    dict(method="rs", epsilon=0.1, random_start=False),
    dict(method="adv", epsilon=0.1, seed="1"),
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(UsageError):
        RobustConfig(**kwargs)


def test_config_defaults_and_options():
    assert RobustConfig().method == "none"
    assert RobustConfig("adv", 0.1).alpha == pytest.approx(0.125)
    assert RobustConfig("adv", 0.1, steps=5).alpha == pytest.approx(0.025)
    assert RobustConfig("adv", 0.1, steps=5, step_size=0.3).alpha == 0.3
    assert RobustConfig("adv", 0.1).to_dict()["step_size"] == pytest.approx(0.125)
    assert EPSILON_GRID == (0.001, 0.01, 0.1, 1.0)
    cfg = RobustConfig.from_options("adv", epsilon=0.01, adv_steps=3, adv_lr=0.005, seed=4)
    assert (cfg.method, cfg.epsilon, cfg.steps, cfg.alpha, cfg.seed) == ("adv", 0.01, 3, 0.005, 4)
    assert RobustConfig.from_options(None).method == "none"
    with pytest.raises(UsageError, match="--epsilon"):
        RobustConfig.from_options("rs")
    with pytest.raises(UsageError, match="--epsilon"):
        RobustConfig.from_options(None, epsilon=0.1)
    with pytest.raises(UsageError, match="--adv-steps"):
        RobustConfig.from_options("rs", epsilon=0.1, adv_steps=2)


# ---------------------------------------------------------------- perturbed_embeddings on plain tensors


def _mask():
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    mask[2, 2:] = 0
    return mask


@pytest.mark.parametrize("method,steps", [("rs", 1), ("adv", 1), ("adv", 4)])
@pytest.mark.parametrize("eps", EPSILON_GRID)
def test_perturbation_inside_ball_and_zero_on_padding(method, steps, eps):
    embeds = torch.randn(3, 7, 8)
    w = torch.randn(3, 7, 8)
    mask = _mask()
    cfg = RobustConfig(method, eps, steps=steps)
    out = perturbed_embeddings(embeds, lambda e: (w * e).sum(), cfg, mask=mask)
    delta = out - embeds
    assert not delta.requires_grad
    assert delta.abs().max().item() <= eps + 1e-6  # float32 rounding of (embeds + delta) - embeds
    assert torch.all(delta[mask == 0] == 0)
    real = delta[mask == 1]
    assert real.abs().max().item() > eps * 0.5  # not a no-op


def test_adv_zero_start_one_step_is_epsilon_times_gradient_sign():
    embeds = torch.randn(3, 7, 8)
    w = torch.randn(3, 7, 8)
    mask = _mask()
    cfg = RobustConfig("adv", 0.1, random_start=False)
    delta = perturbed_embeddings(embeds, lambda e: (w * e).sum(), cfg, mask=mask) - embeds
    expected = 0.1 * w.sign() * mask.unsqueeze(-1)
    assert torch.allclose(delta, expected, atol=1e-6)


def test_rs_is_uniform_in_ball_and_seeded():
    embeds = torch.zeros(64, 32, 16)
    cfg = RobustConfig("rs", 0.5, seed=3)
    a = perturbed_embeddings(embeds, lambda e: e.sum(), cfg, generator=cfg.generator())
    b = perturbed_embeddings(embeds, lambda e: e.sum(), cfg, generator=cfg.generator())
    assert torch.equal(a, b)
    other = RobustConfig("rs", 0.5, seed=4)
    assert not torch.equal(a, perturbed_embeddings(embeds, lambda e: e.sum(), other, generator=other.generator()))
    gen = cfg.generator()
    first = perturbed_embeddings(embeds, lambda e: e.sum(), cfg, generator=gen)
    second = perturbed_embeddings(embeds, lambda e: e.sum(), cfg, generator=gen)
    assert not torch.equal(first, second)  # a fresh draw per step
    # uniform on [-0.5, 0.5]: mean 0, variance 0.5**2 / 3; 32768 draws
    assert abs(a.mean().item()) < 0.01
    assert a.var().item() == pytest.approx(0.25 / 3, rel=0.05)
    assert (a.abs() > 0.45).float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_none_returns_embeddings_unchanged():
    embeds = torch.randn(2, 3, 4)
    assert perturbed_embeddings(embeds, lambda e: e.sum(), RobustConfig()) is embeds


def test_mask_shape_is_checked():
    with pytest.raises(ValueError, match="mask shape"):
        perturbed_embeddings(torch.randn(2, 3, 4), lambda e: e.sum(), RobustConfig("rs", 0.1), mask=torch.ones(2, 4))


# ---------------------------------------------------------------- with a tiny BERT classifier


@pytest.fixture
def clf(tiny_classifier):
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_classifier)
    model.eval()  # no dropout: the same batch gives the same loss
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    batch = dict(tok([p for p, _ in SENTENCES], [h for _, h in SENTENCES], padding=True, return_tensors="pt"))
    labels = torch.tensor(LABELS)
    assert (batch["attention_mask"] == 0).any()  # the batch has padding
    return model, batch, labels


def _ce(labels):
    return lambda out: torch.nn.functional.cross_entropy(out.logits, labels)


def test_none_equals_the_plain_loss(clf):
    model, batch, labels = clf
    plain = _ce(labels)(model(**batch))
    assert torch.allclose(robust_loss(model, batch, RobustConfig(), loss_fn_from_outputs=_ce(labels)), plain, atol=1e-6)


@pytest.mark.parametrize("eps", [0.01, 0.1])
@pytest.mark.parametrize("steps", [1, 3])
def test_adversarial_perturbation_increases_the_loss(clf, eps, steps):
    model, batch, labels = clf
    torch.manual_seed(0)
    with torch.no_grad():
        clean = robust_loss(model, batch, RobustConfig(), loss_fn_from_outputs=_ce(labels)).item()
    adv = robust_loss(model, batch, RobustConfig("adv", eps, steps=steps), loss_fn_from_outputs=_ce(labels)).item()
    noise = robust_loss(model, batch, RobustConfig("rs", eps), loss_fn_from_outputs=_ce(labels)).item()
    assert adv > clean
    assert adv > noise  # the worst case in the ball beats a random point of it


def test_inner_maximization_leaves_parameter_grads_alone(clf):
    model, batch, labels = clf
    embeds = model.get_input_embeddings()(batch["input_ids"])
    inputs = {k: batch[k] for k in ("attention_mask", "token_type_ids")}
    loss_fn = lambda e: _ce(labels)(model(inputs_embeds=e, **inputs))  # noqa: E731
    perturbed = perturbed_embeddings(embeds, loss_fn, RobustConfig("adv", 0.1, steps=2), mask=batch["attention_mask"])
    assert all(p.grad is None for p in model.parameters())
    loss_fn(perturbed).backward()  # the outer loss trains the model, embeddings included
    assert model.get_input_embeddings().weight.grad is not None
    assert model.classifier.weight.grad is not None


def test_works_with_frozen_embeddings(clf):
    model, batch, labels = clf
    emb = model.get_input_embeddings()
    emb.weight.requires_grad_(False)
    with torch.no_grad():
        clean = robust_loss(model, batch, RobustConfig(), loss_fn_from_outputs=_ce(labels)).item()
    loss = robust_loss(model, batch, RobustConfig("adv", 0.1), loss_fn_from_outputs=_ce(labels))
    assert loss.item() > clean
    loss.backward()
    assert emb.weight.grad is None
    assert model.classifier.weight.grad is not None


def test_robust_loss_trains_under_rs(clf):
    model, batch, labels = clf
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = RobustConfig("rs", 0.01, seed=0)
    gen = cfg.generator()
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = robust_loss(model, batch, cfg, loss_fn_from_outputs=_ce(labels), generator=gen)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first * 0.8
