"""Robust training primitives: perturbations of the input word embeddings.

Huang et al. 2021, "Improving Zero-Shot Cross-Lingual Transfer Learning via Robust Training"
(EMNLP): the difference between a sentence's source- and target-language representations is
treated as a perturbation delta of the input embeddings x, and the classifier is trained to
tolerate it, with the perturbation bounded in the L-infinity ball ||delta||_inf <= epsilon:

- `adv`, adversarial training (after Madry et al. 2018):
  min_theta E[ max_{||delta||_inf <= eps} L(f_theta(x + delta), y) ]. The inner maximization
  is projected gradient ascent (PGD) on delta:
  delta <- clip_[-eps, eps](delta + alpha * sign(grad_delta L(f(x + delta), y))),
  from a random start uniform in the ball (Wong et al. 2020); the outer minimization is the
  loss on x + delta. Default step alpha = 1.25 * eps / steps: one step is Wong et al.'s
  "fast" FGSM with random start (alpha = 1.25 eps), K steps split the same travel in K.
- `rs`, randomized smoothing by random perturbation (RS-RP): delta drawn
  uniformly from the ball, a fresh draw at every training step.

The paper perturbs the word-embedding output, before position and segment embeddings are
added; for Hugging Face BERT-style encoders that is exactly `inputs_embeds`. Its epsilon
search grid is `EPSILON_GRID`. torch is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from xlt.errors import UsageError

if TYPE_CHECKING:
    import torch

ROBUST_METHODS = ("none", "adv", "rs")

#: The epsilon values Huang et al. (2021) search over.
EPSILON_GRID = (0.001, 0.01, 0.1, 1.0)

#: Batch keys passed on to the model next to `inputs_embeds`.
MODEL_INPUTS = ("attention_mask", "token_type_ids", "position_ids")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RobustConfig:
    """How to perturb input embeddings during training (see the module docstring).

    method: "none", "adv" (PGD adversarial training) or "rs" (uniform random perturbation);
    epsilon: radius of the L-infinity ball (> 0 for adv and rs); steps, step_size: PGD steps
    and step alpha (adv only; default alpha = 1.25 * epsilon / steps); random_start: begin PGD
    from a uniform draw in the ball instead of 0 (adv only); seed: seeds `generator()`.
    Bad values raise `UsageError` naming the command-line option.
    """

    method: str = "none"
    epsilon: float = 0.0
    steps: int = 1
    step_size: float | None = None
    random_start: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ROBUST_METHODS:
            raise UsageError(f"--robust must be one of {', '.join(ROBUST_METHODS)}, not {self.method!r}")
        if not _number(self.epsilon) or self.epsilon < 0:
            raise UsageError(f"--epsilon must be a finite number >= 0, not {self.epsilon!r}")
        if self.method != "none" and self.epsilon == 0:
            raise UsageError(f"--robust {self.method} needs --epsilon > 0 (the paper searches {', '.join(map(str, EPSILON_GRID))})")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise UsageError(f"--adv-steps must be an integer >= 1, not {self.steps!r}")
        if self.step_size is not None and (not _number(self.step_size) or self.step_size <= 0):
            raise UsageError(f"--adv-lr must be a finite number > 0, not {self.step_size!r}")
        if self.method != "adv" and (self.steps != 1 or self.step_size is not None):
            raise UsageError("--adv-steps and --adv-lr only apply to --robust adv")
        if self.method != "adv" and not self.random_start:
            raise UsageError("random_start=False only applies to --robust adv")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise UsageError(f"--seed must be an integer, not {self.seed!r}")

    @classmethod
    def from_options(cls, robust: str | None, *, epsilon: float | None = None, adv_steps: int | None = None,
                     adv_lr: float | None = None, seed: int | None = None) -> RobustConfig:
        """Build from command-line options, refusing options that would do nothing."""
        method = robust or "none"
        if method == "none":
            given = [n for n, v in (("--epsilon", epsilon), ("--adv-steps", adv_steps), ("--adv-lr", adv_lr)) if v is not None]
            if given:
                raise UsageError(f"{', '.join(given)} need --robust adv or --robust rs")
            return cls("none", 0.0, seed=seed)
        if epsilon is None:
            raise UsageError(f"--robust {method} needs --epsilon (the paper searches {', '.join(map(str, EPSILON_GRID))})")
        return cls(method, epsilon, steps=1 if adv_steps is None else adv_steps, step_size=adv_lr, seed=seed)

    @property
    def alpha(self) -> float:
        """The PGD step size."""
        return self.step_size if self.step_size is not None else 1.25 * self.epsilon / self.steps

    def describe(self) -> str:
        if self.method == "none":
            return "none"
        if self.method == "rs":
            return f"rs (uniform noise, epsilon={self.epsilon:g})"
        start = "random start" if self.random_start else "zero start"
        return f"adv (PGD, epsilon={self.epsilon:g}, steps={self.steps}, step={self.alpha:g}, {start})"

    def to_dict(self) -> dict[str, Any]:
        """For checkpoint provenance (with the resolved step size)."""
        return {**asdict(self), "step_size": self.alpha if self.method == "adv" else None}

    def generator(self, device: Any = "cpu") -> torch.Generator | None:
        """A torch generator seeded with `seed` (None without a seed: the global RNG is used).
        Make it once per training run and pass it to every call, so each step draws afresh."""
        if self.seed is None:
            return None
        import torch

        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed)
        return gen


def _uniform_ball(like: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise in [-epsilon, epsilon]^shape (the L-infinity ball), on `like`'s device."""
    import torch

    device = generator.device if generator is not None else like.device
    noise = torch.rand(like.shape, generator=generator, device=device, dtype=torch.float32)
    return ((noise * 2 - 1) * epsilon).to(device=like.device, dtype=like.dtype)


def perturbed_embeddings(
    embeds: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    cfg: RobustConfig,
    *,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`embeds + delta` with delta detached, ||delta||_inf <= cfg.epsilon, and delta = 0 where
    `mask` ([batch, tokens], 1 = real token) is 0.

    "none": `embeds` itself. "rs": uniform noise in the ball. "adv": cfg.steps PGD ascent steps
    on `loss_fn(embeds + delta)` (a scalar; a non-scalar is summed), differentiated with
    `torch.autograd.grad` w.r.t. delta only: no gradient reaches any parameter's `.grad`, and
    frozen embeddings (requires_grad False) work. The returned tensor keeps `embeds`' graph, so
    the outer loss trains whatever produced `embeds`.
    """
    import torch

    if cfg.method == "none":
        return embeds
    keep = None
    if mask is not None:
        if tuple(mask.shape) != tuple(embeds.shape[:-1]):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match embeddings {tuple(embeds.shape)}")
        keep = mask.to(device=embeds.device, dtype=embeds.dtype).unsqueeze(-1)
    eps = cfg.epsilon
    if cfg.method == "rs" or cfg.random_start:
        delta = _uniform_ball(embeds, eps, generator)
    else:
        delta = torch.zeros_like(embeds)
    if keep is not None:
        delta = delta * keep
    if cfg.method == "adv":
        base = embeds.detach()
        for _ in range(cfg.steps):
            delta = delta.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = loss_fn(base + delta)
                if loss.dim() > 0:
                    loss = loss.sum()
                (grad,) = torch.autograd.grad(loss, delta, allow_unused=True)
            if grad is None:  # the loss does not depend on the embeddings
                grad = torch.zeros_like(delta)
            delta = (delta.detach() + cfg.alpha * grad.sign()).clamp(-eps, eps)
            if keep is not None:
                delta = delta * keep
    return embeds + delta.detach()


def robust_loss(
    model: Any,
    batch: Mapping[str, Any],
    cfg: RobustConfig,
    *,
    loss_fn_from_outputs: Callable[[Any], torch.Tensor],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training loss on perturbed input embeddings (the outer minimization's objective).

    Computes `model.get_input_embeddings()(batch["input_ids"])`, perturbs it with
    `perturbed_embeddings` (padding from `batch["attention_mask"]` left unperturbed), and returns
    `loss_fn_from_outputs(model(inputs_embeds=..., attention_mask=..., token_type_ids=...))`.
    Use: ``loss = robust_loss(model, batch, cfg, loss_fn_from_outputs=lambda out: ce(out.logits, y))``
    then ``loss.backward()``. With method "none" this is the plain loss.
    """
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch and batch[k] is not None}
    embeds = model.get_input_embeddings()(batch["input_ids"])

    def loss_fn(e: torch.Tensor) -> torch.Tensor:
        return loss_fn_from_outputs(model(inputs_embeds=e, **inputs))

    perturbed = perturbed_embeddings(embeds, loss_fn, cfg, mask=inputs.get("attention_mask"), generator=generator)
    return loss_fn(perturbed)


__all__ = ["EPSILON_GRID", "ROBUST_METHODS", "RobustConfig", "perturbed_embeddings", "robust_loss"]
