r"""tutorlib.edm: one noising formula for every diffusion model, after Karras et al. (2022).

The code behind the chapter ``book/diffusion_unified.md`` ("Diffusion II"). Every diffusion
model in the book noises a clean point :math:`x_0` in the same way,

.. math::  x_t = s(t)\,\big(x_0 + \sigma(t)\,\epsilon\big), \qquad \epsilon \sim \mathcal N(0, I),

and differs only in the **scale** :math:`s(t)` and the **noise level** :math:`\sigma(t)`:

- DDPM / DDIM (discrete VP): :math:`s = \sqrt{\bar\alpha_t}`,
  :math:`\sigma = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}` (:func:`ddpm_s_sigma`);
- VP SDE (Song et al. 2021): :math:`s = 1/\sqrt{E(t)}`, :math:`\sigma = \sqrt{E(t) - 1}`,
  :math:`E(t) = e^{\frac12\beta_d t^2+\beta_{\min}t}` (:func:`vp_schedule`);
- SMLD / VE SDE: :math:`s = 1`, :math:`\sigma = \sqrt t` (:func:`ve_schedule`);
- flow matching / rectified flow: :math:`s = 1-t`, :math:`\sigma = t/(1-t)`
  (:func:`flow_matching_schedule`);
- EDM: :math:`s = 1`, :math:`\sigma = t` (:func:`edm_schedule`).

Divide by :math:`s` and every method is the same thing: :math:`\hat x = x_0 + \sigma\epsilon`,
data plus Gaussian noise of standard deviation :math:`\sigma`. So one **denoiser**
:math:`D(\hat x;\sigma) \approx \mathbb E[x_0 \mid \hat x]` serves them all: the score is
:math:`\nabla \log p(\hat x;\sigma) = (D(\hat x;\sigma) - \hat x)/\sigma^2`, and the
probability-flow ODE of any :math:`(s, \sigma)` is (Karras et al., eq. 4)

.. math::  \frac{dx}{dt} = \Big(\frac{\dot\sigma}{\sigma} + \frac{\dot s}{s}\Big) x
           - \frac{\dot\sigma\, s}{\sigma}\, D\Big(\frac{x}{s}; \sigma\Big).

This module holds the table (:class:`NoiseSchedule` and its constructors), EDM's network
preconditioning and loss (:class:`EDMDenoiser`, :func:`edm_loss`), the time steps
(:func:`karras_sigmas`), the deterministic Euler/Heun samplers (:func:`sample_ode`), EDM's
stochastic sampler (:func:`sample_stochastic`), exact denoisers of Gaussian data for tests
(:func:`gaussian_denoiser`, :func:`gaussian_mixture_denoiser`) and the adapter that lets
DDIM (``tutorlib.diffusion.ddim_sample``) run on an EDM denoiser (:func:`eps_model_from_denoiser`).

Legend (code name -> symbol): ``s`` -> :math:`s(t)`, ``sigma`` -> :math:`\sigma(t)`,
``s_dot``/``sigma_dot`` -> :math:`\dot s, \dot\sigma`, ``sigma_data`` -> :math:`\sigma_{\rm data}`,
``rho`` -> :math:`\rho`, ``churn`` -> :math:`S_{\rm churn}`, ``alpha_bar`` -> :math:`\bar\alpha_t`.

References:
    Karras, Aittala, Aila, Laine (2022), "Elucidating the Design Space of Diffusion-Based
    Generative Models", NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from tutorlib.diffusion import TimeMLP
from tutorlib.validation import (
    check_choice,
    check_fields,
    check_finite,
    check_int,
    check_points,
    check_positive,
    check_real,
    check_tensor,
)

__all__ = [
    "Denoiser",
    "EDMDenoiser",
    "NoiseSchedule",
    "TrainConfig",
    "add_noise",
    "ddpm_s_sigma",
    "edm_loss",
    "edm_schedule",
    "effective_target",
    "eps_model_from_denoiser",
    "fit",
    "flow_matching_schedule",
    "gaussian_denoiser",
    "gaussian_mixture_denoiser",
    "karras_sigmas",
    "nfe",
    "ode_drift",
    "preconditioning",
    "sample_ode",
    "sample_stochastic",
    "ve_schedule",
    "vp_schedule",
]

#: A denoiser: ``D(x_hat (B, d), sigma (B,)) -> estimate of x0 (B, d)``.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# argument checks (points and positive numbers: tutorlib.validation)
# --------------------------------------------------------------------------------------------
def _check_sigmas(sigmas: object) -> torch.Tensor:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(
            "sigmas must be a 1-D tensor of at least 2 noise levels (from karras_sigmas), got "
            f"{getattr(sigmas, 'shape', type(sigmas).__name__)}"
        )
    check_finite("sigmas", sigmas)
    if (sigmas[1:] >= sigmas[:-1]).any() or (sigmas < 0).any():
        raise ValueError(f"sigmas must be >= 0 and strictly decreasing, got {sigmas.tolist()}")
    return sigmas


def _check_solver(solver: str) -> str:
    return check_choice("solver", solver, ("euler", "heun"))


def _check_levels(name: str, value: object, batch: int, *, positive: bool) -> torch.Tensor | float:
    """A number or a tensor ``(B,)`` (or a scalar tensor) of finite levels, > 0 or >= 0."""
    if not isinstance(value, torch.Tensor):
        return check_positive(name, value, allow_zero=not positive)
    check_tensor(name, value, dtype="real")
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != batch):
        raise ValueError(f"{name} must be a number or a tensor ({batch},), got shape {tuple(value.shape)}")
    if (value <= 0).any() if positive else (value < 0).any():
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got min {value.min().item():g}")
    return value


# --------------------------------------------------------------------------------------------
# 1. the table: every method is a choice of s(t) and sigma(t)
# --------------------------------------------------------------------------------------------
def add_noise(x0: torch.Tensor, eps: torch.Tensor, s: torch.Tensor | float,
              sigma: torch.Tensor | float) -> torch.Tensor:
    r"""The one noising formula :math:`x_t = s\,(x_0 + \sigma\,\epsilon)`.

    Args:
        x0: clean data ``(B, d)``.
        eps: standard normal noise, same shape.
        s: scale, a float or ``(B,)``.
        sigma: noise level, a float or ``(B,)``.

    Returns:
        ``(B, d)``.
    """
    x0, eps = check_points("x0", x0), check_points("eps", eps)
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    check_finite("x0", x0)
    check_finite("eps", eps)
    _check_levels("s", s, len(x0), positive=True)
    _check_levels("sigma", sigma, len(x0), positive=False)
    s = torch.as_tensor(s, dtype=x0.dtype).reshape(-1, 1)  # (B, 1) or (1, 1)
    sigma = torch.as_tensor(sigma, dtype=x0.dtype).reshape(-1, 1)
    return s * (x0 + sigma * eps)


@dataclass(frozen=True)
class NoiseSchedule:
    r"""A row of the table: :math:`s(t)`, :math:`\sigma(t)`, their time derivatives and :math:`\sigma^{-1}`.

    Every function maps a tensor of times to a tensor of the same shape. ``sigma_inv`` gives the
    time at which the noise level is :math:`\sigma`, so a sampler can walk any schedule through
    the same noise levels (:func:`karras_sigmas`).
    """

    name: str
    s: Callable[[torch.Tensor], torch.Tensor]
    sigma: Callable[[torch.Tensor], torch.Tensor]
    s_dot: Callable[[torch.Tensor], torch.Tensor]
    sigma_dot: Callable[[torch.Tensor], torch.Tensor]
    sigma_inv: Callable[[torch.Tensor], torch.Tensor]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"NoiseSchedule.name must be a str, got {type(self.name).__name__}")
        for field in ("s", "sigma", "s_dot", "sigma_dot", "sigma_inv"):
            if not callable(getattr(self, field)):
                raise TypeError(f"NoiseSchedule.{field} must be a function of t, got "
                                f"{type(getattr(self, field)).__name__}")


def edm_schedule() -> NoiseSchedule:
    r"""EDM's choice: :math:`s(t) = 1`, :math:`\sigma(t) = t`.

    The ODE becomes :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma`.
    """
    return NoiseSchedule(
        "EDM", s=torch.ones_like, sigma=lambda t: t, s_dot=torch.zeros_like,
        sigma_dot=torch.ones_like, sigma_inv=lambda sigma: sigma,
    )


def ve_schedule() -> NoiseSchedule:
    r"""Variance exploding (SMLD, Song & Ermon 2019; VE SDE): :math:`s = 1`, :math:`\sigma(t) = \sqrt t`.

    The time is the variance, :math:`t = \sigma^2`, as in Karras et al.'s Table 1.
    """
    return NoiseSchedule(
        "VE (SMLD)", s=torch.ones_like, sigma=torch.sqrt, s_dot=torch.zeros_like,
        sigma_dot=lambda t: 0.5 / torch.sqrt(t), sigma_inv=lambda sigma: sigma**2,
    )


def vp_schedule(beta_min: float = 0.1, beta_d: float = 19.9) -> NoiseSchedule:
    r"""Variance preserving (the continuous DDPM, Song et al. 2021), :math:`t \in (0, 1]`.

    With :math:`\beta(t) = \beta_{\min} + \beta_d t` and
    :math:`E(t) = e^{\frac12 \beta_d t^2 + \beta_{\min} t}`:
    :math:`\sigma(t) = \sqrt{E - 1}`, :math:`s(t) = 1/\sqrt{E} = 1/\sqrt{1 + \sigma^2}`, so
    :math:`s^2 + (s\sigma)^2 = 1`: the variance of :math:`x_t` stays 1 for unit-variance data.
    """
    beta_min = check_positive("beta_min", beta_min)
    beta_d = check_positive("beta_d", beta_d)

    def energy(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * beta_d * t**2 + beta_min * t  # ln E(t)

    def sigma(t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.expm1(energy(t)))

    def sigma_dot(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (beta_min + beta_d * t) * torch.exp(energy(t)) / sigma(t)

    def s_dot(t: torch.Tensor) -> torch.Tensor:
        return -0.5 * (beta_min + beta_d * t) * torch.exp(-0.5 * energy(t))

    def sigma_inv(sig: torch.Tensor) -> torch.Tensor:
        return (torch.sqrt(beta_min**2 + 2 * beta_d * torch.log1p(sig**2)) - beta_min) / beta_d

    return NoiseSchedule("VP (DDPM)", s=lambda t: torch.exp(-0.5 * energy(t)), sigma=sigma, s_dot=s_dot,
                         sigma_dot=sigma_dot, sigma_inv=sigma_inv)


def flow_matching_schedule() -> NoiseSchedule:
    r"""Flow matching / rectified flow: :math:`x_t = (1-t)\,x_0 + t\,\epsilon`, :math:`t \in [0, 1)`.

    Matching :math:`s(x_0 + \sigma\epsilon)` term by term: :math:`s(t) = 1 - t`,
    :math:`\sigma(t) = t/(1-t)`, and back :math:`t = \sigma/(1+\sigma)`.
    """
    return NoiseSchedule(
        "flow matching", s=lambda t: 1 - t, sigma=lambda t: t / (1 - t), s_dot=lambda t: -torch.ones_like(t),
        sigma_dot=lambda t: 1 / (1 - t) ** 2, sigma_inv=lambda sigma: sigma / (1 + sigma),
    )


def ddpm_s_sigma(alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""DDPM/DDIM's discrete steps as a row of the table.

    :math:`s = \sqrt{\bar\alpha}`, :math:`\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}`.

    Then :math:`s(x_0 + \sigma\epsilon) = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\epsilon`,
    DDPM's forward process (``tutorlib.diffusion.q_sample``).

    Args:
        alpha_bar: :math:`\bar\alpha_t \in (0, 1]`, any shape.

    Returns:
        ``(s, sigma)``, each with the shape of ``alpha_bar``.
    """
    if not isinstance(alpha_bar, torch.Tensor):
        raise TypeError(f"alpha_bar must be a torch.Tensor, got {type(alpha_bar).__name__}")
    check_tensor("alpha_bar", alpha_bar)
    if (alpha_bar <= 0).any() or (alpha_bar > 1).any():
        raise ValueError("alpha_bar must lie in (0, 1]")
    return alpha_bar.sqrt(), ((1 - alpha_bar) / alpha_bar).sqrt()


# --------------------------------------------------------------------------------------------
# 2. exact denoisers of Gaussian data: the reference every sampler must reproduce
# --------------------------------------------------------------------------------------------
def gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor) -> Denoiser:
    r"""The exact denoiser of :math:`x_0 \sim \mathcal N(\mu, \Sigma)`.

    :math:`\hat x = x_0 + \sigma\epsilon \sim \mathcal N(\mu, \Sigma + \sigma^2 I)`, and the
    posterior mean is linear:

    .. math::  D(\hat x; \sigma) = \mathbb E[x_0 \mid \hat x]
               = \mu + \Sigma(\Sigma + \sigma^2 I)^{-1}(\hat x - \mu).

    Args:
        mean: :math:`\mu`, ``(d,)``.
        cov: :math:`\Sigma`, ``(d, d)`` symmetric positive semi-definite.

    Returns:
        ``D(x (B, d), sigma (B,)) -> (B, d)``.
    """
    if not isinstance(mean, torch.Tensor) or mean.ndim != 1:
        raise ValueError(f"mean must be a 1-D tensor (d,), got {getattr(mean, 'shape', type(mean).__name__)}")
    d = mean.shape[0]
    if not isinstance(cov, torch.Tensor) or cov.shape != (d, d):
        raise ValueError(f"cov must be a ({d}, {d}) tensor to match mean, got {getattr(cov, 'shape', cov)}")
    check_tensor("mean", mean)
    check_tensor("cov", cov)

    if not torch.allclose(cov, cov.T):
        raise ValueError("cov must be symmetric")
    lam, u = torch.linalg.eigh(cov.to(torch.float64))  # Σ = U diag(λ) Uᵀ
    if lam.min() < -1e-12 * max(lam.max().item(), 1.0):
        raise ValueError(f"cov must be positive semi-definite, got eigenvalues {lam.tolist()}")

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mu, basis, eig = mean.to(x.dtype), u.to(x.dtype), lam.to(x.dtype)
        gain = eig / (eig + sigma.to(x.dtype)[:, None] ** 2)  # (B, d): λ/(λ+σ²) along each axis
        return mu + (((x - mu) @ basis) * gain) @ basis.T

    return denoise


def gaussian_mixture_denoiser(means: torch.Tensor, std: float,
                              weights: torch.Tensor | None = None) -> Denoiser:
    r"""The exact denoiser of a mixture :math:`\sum_k \pi_k \mathcal N(\mu_k, \tau^2 I)`.

    Noisy, each component is :math:`\mathcal N(\mu_k, (\tau^2 + \sigma^2) I)`. With the posterior
    responsibilities :math:`r_k(\hat x) \propto \pi_k \mathcal N(\hat x; \mu_k, (\tau^2+\sigma^2) I)`,

    .. math::  D(\hat x; \sigma) = \sum_k r_k(\hat x)
               \Big(\mu_k + \frac{\tau^2}{\tau^2+\sigma^2}(\hat x - \mu_k)\Big).

    ``tutorlib.toy2d.sample_2d("8gaussians", ...)`` is such a mixture
    (``means = 2 (cos, sin)(2πk/8)``, ``std = 0.2``).

    Args:
        means: :math:`\mu_k`, ``(K, d)``.
        std: :math:`\tau > 0`.
        weights: :math:`\pi_k`, ``(K,)`` summing to 1; default uniform.
    """
    if not isinstance(means, torch.Tensor) or means.ndim != 2:
        got = getattr(means, "shape", type(means).__name__)
        raise ValueError(f"means must be a (K, d) tensor, got {got}")
    check_tensor("means", means)
    std = check_positive("std", std)
    k = means.shape[0]
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=means.dtype)
    if not isinstance(weights, torch.Tensor) or weights.shape != (k,) or (weights <= 0).any():
        raise ValueError(f"weights must be a positive ({k},) tensor to match means")
    log_w = torch.log(weights / weights.sum())

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mu = means.to(x.dtype)
        var = std**2 + sigma.to(x.dtype)[:, None] ** 2  # (B, 1)
        sq = ((x[:, None, :] - mu[None]) ** 2).sum(-1)  # (B, K)
        logits = log_w.to(x.dtype) - 0.5 * sq / var - 0.5 * x.shape[1] * torch.log(var)
        r = torch.softmax(logits, dim=1)  # (B, K)
        shrink = (std**2 / var)[:, :, None]  # (B, 1, 1)
        per_component = mu[None] + shrink * (x[:, None, :] - mu[None])  # (B, K, d)
        return (r[:, :, None] * per_component).sum(1)

    return denoise


# --------------------------------------------------------------------------------------------
# 3. EDM's denoiser: preconditioning and loss
# --------------------------------------------------------------------------------------------
def preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    r"""EDM's scalings (Karras et al., Table 1 and Appendix B.6).

    .. math::  c_{\rm skip} = \frac{\sigma_{\rm data}^2}{\sigma^2 + \sigma_{\rm data}^2}, \quad
               c_{\rm out} = \frac{\sigma\,\sigma_{\rm data}}{\sqrt{\sigma^2 + \sigma_{\rm data}^2}}, \quad
               c_{\rm in} = \frac{1}{\sqrt{\sigma^2 + \sigma_{\rm data}^2}}, \quad
               c_{\rm noise} = \tfrac14 \ln\sigma,

    chosen so that the network's input :math:`c_{\rm in}\hat x` and its training target
    :math:`(x_0 - c_{\rm skip}\hat x)/c_{\rm out}` both have unit variance at every :math:`\sigma`.

    Returns:
        ``(c_skip, c_out, c_in, c_noise)``, each with the shape of ``sigma``.
    """
    sigma_data = check_positive("sigma_data", sigma_data)
    check_tensor("sigma", sigma, finite=False)  # every forward pass: dtype only, no value scan
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def effective_target(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor,
                     sigma_data: float) -> torch.Tensor:
    r"""What the raw network :math:`F_\theta` learns to output.

    .. math::  \frac{x_0 - c_{\rm skip}\,(x_0 + \sigma\epsilon)}{c_{\rm out}}

    Shapes: ``x0``, ``eps`` ``(B, d)``, ``sigma`` ``(B,)`` -> ``(B, d)``.
    """
    dims: dict[str, int] = {}
    check_tensor("x0", x0, ("B", "d"), dims=dims)
    check_tensor("eps", eps, ("B", "d"), dims=dims)
    check_tensor("sigma", sigma, ("B",), dims=dims)
    c_skip, c_out, _, _ = preconditioning(sigma, sigma_data)
    return (x0 - c_skip[:, None] * (x0 + sigma[:, None] * eps)) / c_out[:, None]


class EDMDenoiser(nn.Module):
    r"""EDM's denoiser, a preconditioned network.

    .. math::  D_\theta(\hat x;\sigma) = c_{\rm skip}\hat x
               + c_{\rm out} F_\theta(c_{\rm in}\hat x,\ c_{\rm noise})


    :math:`F_\theta` is a :class:`tutorlib.diffusion.TimeMLP`. At small :math:`\sigma` the skip
    connection returns the input almost unchanged; at large :math:`\sigma` the network predicts
    :math:`x_0` itself, scaled by :math:`\sigma_{\rm data}`. Shapes: ``x`` ``(B, dim)``,
    ``sigma`` ``(B,)`` or a float -> ``(B, dim)``.
    """

    def __init__(self, dim: int = 2, sigma_data: float = 1.0, hidden: int = 128, depth: int = 3,
                 embed_dim: int = 8, max_frequency: float = 10.0) -> None:
        super().__init__()
        self.sigma_data = check_positive("sigma_data", sigma_data)
        # c_noise = ln(σ)/4 spans only about [-1.6, 1.1] for σ in [0.002, 80]: a few slow frequencies
        # suffice. Many fast ones act as noise inputs that swamp the two coordinates of x, and
        # the network then sits for thousands of steps at F = 0 (measured on the 8 Gaussians).
        self.net = TimeMLP(dim, hidden, depth, embed_dim, max_frequency)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        x = check_points("x", x)
        if isinstance(sigma, torch.Tensor) and (
            sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape != x.shape[:1])
        ):
            raise ValueError(f"sigma must be a number or a tensor ({x.shape[0]},), got {tuple(sigma.shape)}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])  # (B,)
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.sigma_data)
        return c_skip[:, None] * x + c_out[:, None] * self.net(c_in[:, None] * x, c_noise)


def edm_loss(denoiser: EDMDenoiser, x0: torch.Tensor, generator: torch.Generator | None = None,
             p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    r"""EDM's training loss, denoising score matching with weight :math:`\lambda(\sigma) = 1/c_{\rm out}^2`.

    .. math::  \mathcal L = \mathbb E_{\ln\sigma \sim \mathcal N(P_{\rm mean}, P_{\rm std}^2),\ \epsilon}
               \Big[\lambda(\sigma)\,\lVert D_\theta(x_0 + \sigma\epsilon;\sigma) - x_0\rVert^2\Big] / d

    which equals the plain regression of :math:`F_\theta` onto :func:`effective_target`.

    Args:
        denoiser: the model.
        x0: a batch of data ``(B, d)``.
        generator: for :math:`\sigma` and :math:`\epsilon`.
        p_mean, p_std: the log-normal distribution of training noise levels.

    Returns:
        A scalar tensor.
    """
    x0 = check_points("x0", x0)
    if not isinstance(denoiser, EDMDenoiser):
        raise TypeError(f"denoiser must be an EDMDenoiser (it needs sigma_data), got "
                        f"{type(denoiser).__name__}")
    check_real("p_mean", p_mean)
    check_positive("p_std", p_std)
    log_sigma = p_mean + p_std * torch.randn(len(x0), generator=generator, dtype=x0.dtype)
    sigma = log_sigma.exp()  # (B,)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    weight = 1 / preconditioning(sigma, denoiser.sigma_data)[1] ** 2  # λ(σ) = 1/c_out²
    error = denoiser(x0 + sigma[:, None] * eps, sigma) - x0
    return (weight[:, None] * error**2).mean()


@dataclass
class TrainConfig:
    """Adam on random mini-batches; shared by the EDM denoiser and the rectified-flow velocities."""

    steps: int = 2000  #: optimiser steps
    batch_size: int = 512  #: samples per step
    lr: float = 5e-3  #: peak learning rate (Adam)
    warmup: int = 100  #: linear warm-up steps, then cosine decay to 0
    seed: int = 0  #: seeds the mini-batches and the noise

    def __post_init__(self) -> None:
        check_fields(self, {"steps": check_int, "batch_size": check_int, "lr": check_positive,
                            "warmup": (check_int, 0), "seed": (check_int, 0)})


def fit(model: nn.Module, loss_fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor],
        config: TrainConfig | None = None, progress: bool = True) -> list[float]:
    """Train ``model`` in place: each step draws one mini-batch of rows from every tensor.

    Args:
        model: the network.
        loss_fn: ``loss_fn(model, *batch, generator) -> scalar``, e.g. :func:`edm_loss` with
            ``tensors = [data]``, or ``rectified_flow.rf_loss`` with ``tensors = [z0, z1]``.
        tensors: tensors with the same first dimension ``N`` (rows are drawn together, so coupled
            pairs stay coupled).
        config: :class:`TrainConfig`.
        progress: show a progress bar.

    Returns:
        The loss of every step.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not tensors or any(not isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("tensors must be a non-empty list of torch.Tensor")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"tensors must share their first dimension, got {[tuple(t.shape) for t in tensors]}")
    for i, t in enumerate(tensors):
        check_finite(f"tensors[{i}]", t)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def schedule(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup) / max(config.steps - config.warmup, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    losses = []
    model.train()
    for _ in tqdm(range(config.steps), disable=not progress, desc="training", leave=False):
        idx = torch.randint(0, n, (config.batch_size,), generator=generator)
        loss = loss_fn(model, *(t[idx] for t in tensors), generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------
# 4. samplers: the noise levels, Euler and Heun, EDM's stochastic sampler
# --------------------------------------------------------------------------------------------
def karras_sigmas(n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> torch.Tensor:
    r"""EDM's noise levels (Karras et al., eq. 5), with a final :math:`\sigma_N = 0`:

    .. math::  \sigma_{i} = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}\big(\sigma_{\min}^{1/\rho}
               - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho}, \quad i = 0, \dots, N-1.

    :math:`\rho = 1` spaces them evenly; larger :math:`\rho` puts more steps at low noise, where
    the ODE curves most. :math:`\rho = 7` is EDM's choice.

    Returns:
        ``(n_steps + 1,)`` float64, decreasing from ``sigma_max`` to ``sigma_min``, then 0.
    """
    check_int("n_steps", n_steps)
    sigma_min = check_positive("sigma_min", sigma_min)
    sigma_max = check_positive("sigma_max", sigma_max)
    rho = check_positive("rho", rho)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if n_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def nfe(n_steps: int, solver: str) -> int:
    """Network evaluations of :func:`sample_ode` / :func:`sample_stochastic`: Euler ``N``, Heun ``2N - 1``.

    Heun skips its correction on the last step, which ends at :math:`\\sigma = 0`.
    """
    check_int("n_steps", n_steps)
    return n_steps if _check_solver(solver) == "euler" else 2 * n_steps - 1


def ode_drift(denoiser: Denoiser, schedule: NoiseSchedule, x: torch.Tensor,
              t: float | torch.Tensor) -> torch.Tensor:
    r"""The probability-flow ODE of :math:`(s, \sigma)` (Karras et al., eq. 4), driven by a denoiser.

    .. math::  \frac{dx}{dt} = \Big(\frac{\dot\sigma}{\sigma} + \frac{\dot s}{s}\Big) x
               - \frac{\dot\sigma\, s}{\sigma}\, D\Big(\frac{x}{s}; \sigma\Big)

    Args:
        x: ``(B, d)``; t: the time, a float or 0-d tensor (where :math:`\sigma(t) > 0`).

    Returns:
        ``(B, d)``.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    check_tensor("x", x, (None, None), finite=False)  # every solver step: no NaN scan
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    check_real("t", t)
    t = torch.as_tensor(t, dtype=torch.float64)  # coefficients in float64, x in its own dtype
    s, sigma = schedule.s(t).item(), schedule.sigma(t).item()
    s_dot, sigma_dot = schedule.s_dot(t).item(), schedule.sigma_dot(t).item()
    d = denoiser(x / s, torch.full((x.shape[0],), sigma, dtype=x.dtype))
    return (sigma_dot / sigma + s_dot / s) * x - sigma_dot * s / sigma * d


def _check_noise(noise: object) -> torch.Tensor:
    return check_finite("noise", check_points("noise", noise))


def sample_ode(denoiser: Denoiser, sigmas: torch.Tensor, noise: torch.Tensor, solver: str = "heun",
               schedule: NoiseSchedule | None = None,
               return_path: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""Deterministic sampling: Euler or Heun on the probability-flow ODE (Karras et al., Algorithm 1).

    The times are :math:`t_i = \sigma^{-1}(\sigma_i)` for the given noise levels, with
    :math:`t_N = 0`. Starting from :math:`x_0 = s(t_0)\,\sigma_0\, n`, :math:`n \sim \mathcal N(0, I)`:

    .. math::  d_i = \frac{dx}{dt}(x_i, t_i), \quad x_{i+1} = x_i + (t_{i+1} - t_i)\, d_i
               \quad \text{(Euler)},

    and Heun corrects with the slope at the end point, :math:`x_{i+1} = x_i + (t_{i+1} - t_i)
    \tfrac12 (d_i + d'_{i+1})`, except on a last step that ends at :math:`\sigma = 0`.

    Args:
        denoiser: ``D(x_hat, sigma)``.
        sigmas: noise levels ``(N + 1,)``, decreasing, the last one 0 (:func:`karras_sigmas`).
        noise: unit Gaussian noise ``(B, d)``; the start is scaled from it.
        solver: ``"euler"`` or ``"heun"``.
        schedule: the :math:`(s, \sigma)` row to integrate in; default :func:`edm_schedule`.
        return_path: also return the list of :math:`N + 1` iterates.

    Returns:
        Samples ``(B, d)`` (and the path, if asked), in the units of :math:`x_t`: when the last
        level is not 0, divide by :math:`s(t_N)` to get :math:`\hat x`.
    """
    sigmas, noise, solver = _check_sigmas(sigmas), _check_noise(noise), _check_solver(solver)
    schedule = schedule or edm_schedule()
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule or None, got {type(schedule).__name__}")
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    times = schedule.sigma_inv(sigmas.to(torch.float64)).tolist()  # t_i = sigma^-1(sigma_i), float64
    x = noise * (sigmas[0].item() * schedule.s(torch.tensor(times[0], dtype=torch.float64)).item())
    path = [x]
    for i in range(len(sigmas) - 1):
        t_cur, t_next = times[i], times[i + 1]
        slope = ode_drift(denoiser, schedule, x, t_cur)
        x_next = x + (t_next - t_cur) * slope
        if solver == "heun" and sigmas[i + 1] > 0:
            slope_next = ode_drift(denoiser, schedule, x_next, t_next)
            x_next = x + (t_next - t_cur) * 0.5 * (slope + slope_next)
        x = x_next
        path.append(x)
    return (x, path) if return_path else x


def sample_stochastic(denoiser: Denoiser, sigmas: torch.Tensor, noise: torch.Tensor, churn: float = 10.0,
                      s_noise: float = 1.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                      generator: torch.Generator | None = None) -> torch.Tensor:
    r"""EDM's stochastic sampler (Karras et al., Algorithm 2), with :math:`s = 1`, :math:`\sigma = t`.

    Each step first **adds** noise, raising the level from :math:`\sigma_i` to
    :math:`\hat\sigma_i = (1 + \gamma_i)\sigma_i`, then takes a Heun step from
    :math:`\hat\sigma_i` down to :math:`\sigma_{i+1}`:

    .. math::  \gamma_i = \min\big(S_{\rm churn}/N, \sqrt2 - 1\big)
               \text{ if } \sigma_i \in [S_{t\min}, S_{t\max}],
               \qquad \hat x_i = x_i + \sqrt{\hat\sigma_i^2 - \sigma_i^2}\, S_{\rm noise}\, \epsilon_i.

    Adding noise and removing it again corrects errors made earlier: this is a discretised
    Langevin correction on top of the ODE. ``churn = 0`` gives :func:`sample_ode` with Heun.

    Args:
        denoiser, sigmas, noise: as in :func:`sample_ode`.
        churn: :math:`S_{\rm churn} \ge 0`, total amount of stochasticity.
        s_noise: :math:`S_{\rm noise} > 0`, scale of the new noise (slightly above 1 in the paper).
        s_tmin, s_tmax: the range of noise levels where noise is added.
        generator: for the new noise.

    Returns:
        Samples ``(B, d)``.
    """
    sigmas, noise = _check_sigmas(sigmas), _check_noise(noise)
    churn = check_positive("churn", churn, allow_zero=True)
    s_noise = check_positive("s_noise", s_noise)
    s_tmin = check_positive("s_tmin", s_tmin, allow_zero=True)
    if not (isinstance(s_tmax, int | float) and not isinstance(s_tmax, bool) and s_tmax > s_tmin):
        raise ValueError(f"s_tmax must be a number > s_tmin={s_tmin} (inf: everywhere), got {s_tmax!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    n = len(sigmas) - 1
    levels = sigmas.tolist()
    x = noise * levels[0]

    def level(value: float) -> torch.Tensor:
        return torch.full((len(x),), value, dtype=x.dtype)  # (B,)

    for i in range(n):
        sigma, sigma_next = levels[i], levels[i + 1]
        gamma = min(churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # raise the noise level from sigma to sigma_hat
            fresh = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * fresh
        slope = (x - denoiser(x, level(sigma_hat))) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:
            slope_next = (x_next - denoiser(x_next, level(sigma_next))) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
        x = x_next
    return x


# --------------------------------------------------------------------------------------------
# 5. DDIM on an EDM denoiser
# --------------------------------------------------------------------------------------------
def eps_model_from_denoiser(denoiser: Denoiser,
                            alpha_bar: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    r"""Wrap a denoiser as the noise predictor that ``tutorlib.diffusion``'s samplers call.

    At step :math:`t` (the network is called with :math:`t/T`) the table gives
    :math:`s = \sqrt{\bar\alpha_t}`, :math:`\sigma = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`, and

    .. math::  \hat\epsilon(x_t, t) = \frac{x_t/s - D(x_t/s;\sigma)}{\sigma}.

    Args:
        denoiser: ``D(x_hat, sigma)``.
        alpha_bar: :math:`\bar\alpha` ``(T,)`` of the DDPM schedule.

    Returns:
        ``model(x_t (B, d), t_scaled (B,)) -> eps_hat (B, d)``.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    check_tensor("alpha_bar", alpha_bar, ("T",))
    s_all, sigma_all = ddpm_s_sigma(alpha_bar)
    steps = len(alpha_bar)

    def model(x_t: torch.Tensor, t_scaled: torch.Tensor) -> torch.Tensor:
        t = torch.round(torch.as_tensor(t_scaled, dtype=torch.float64) * steps).long().expand(len(x_t))
        if t.min() < 0 or t.max() >= steps:  # a negative step would wrap around to the end
            raise ValueError(f"t_scaled must be t / T with t in [0, {steps}), got steps in "
                             f"[{t.min().item()}, {t.max().item()}]")
        s, sigma = s_all[t].to(x_t.dtype)[:, None], sigma_all[t].to(x_t.dtype)  # (B, 1), (B,)
        x_hat = x_t / s
        return (x_hat - denoiser(x_hat, sigma)) / sigma[:, None]

    return model
