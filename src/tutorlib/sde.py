r"""tutorlib.sde: score matching, Langevin dynamics and diffusion SDEs, all driven by one denoiser.

The code behind the SDE part of ``book/diffusion_unified.md`` ("Diffusion II").

A **score-based model** learns :math:`\nabla_x \log p_\sigma(x)`, the score of the data blurred by
Gaussian noise of level :math:`\sigma`. Tweedie's formula links it to the best denoiser
:math:`D(x;\sigma) = \mathbb E[x_0 \mid x]`:

.. math::  \nabla_x \log p_\sigma(x) = \frac{D(x;\sigma) - x}{\sigma^2},

so :class:`tutorlib.edm.EDMDenoiser` already is a score model (:func:`score_from_denoiser`).
Song et al. (2021) write the noising as a **forward SDE**

.. math::  dx = f(x, t)\,dt + g(t)\,dw,

whose time reversal (Anderson 1982) is the **reverse SDE**

.. math::  dx = \big[f(x,t) - g(t)^2 \nabla_x \log p_t(x)\big]\,dt + g(t)\,d\bar w,

and which has a deterministic twin with the same marginals :math:`p_t` at every :math:`t`, the
**probability-flow ODE**

.. math::  \frac{dx}{dt} = f(x,t) - \tfrac12 g(t)^2 \nabla_x \log p_t(x).

:class:`VPSDE` (the continuous DDPM) and :class:`VESDE` (the continuous SMLD) are the two SDEs
of Song et al. Each has the marginal :math:`x_t = s(t)(x_0 + \sigma(t)\epsilon)`, a row of
the table in :mod:`tutorlib.edm` (:meth:`VPSDE.schedule`), so the score at time :math:`t` is

.. math::  \nabla_x \log p_t(x) = \frac{s\,D(x/s;\sigma) - x}{s^2\sigma^2}.

Legend (code name -> symbol): ``drift`` -> :math:`f`, ``diffusion`` -> :math:`g`,
``beta_min``/``beta_max`` -> :math:`\beta_{\min}, \beta_{\max}`, ``step_size`` -> :math:`\varepsilon`
of annealed Langevin dynamics.

References:
    Vincent (2011), "A connection between score matching and denoising autoencoders".
    Song & Ermon (2019), "Generative modeling by estimating gradients of the data distribution".
    Anderson (1982), "Reverse-time diffusion equation models".
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole (2021), "Score-based generative modeling
    through stochastic differential equations", ICLR.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tutorlib.edm import Denoiser, NoiseSchedule, vp_schedule
from tutorlib.validation import (
    check_choice,
    check_finite,
    check_int,
    check_points,
    check_positive,
    check_real,
    check_tensor,
)

__all__ = [
    "VESDE",
    "VPSDE",
    "annealed_langevin",
    "dsm_loss",
    "langevin",
    "probability_flow_drift",
    "probability_flow_sample",
    "reverse_sde_sample",
    "score_from_denoiser",
]

#: A score model: ``score(x (B, d), sigma (B,)) -> (B, d)``.
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# 1. scores: from a denoiser, and denoising score matching
# --------------------------------------------------------------------------------------------
def score_from_denoiser(denoiser: Denoiser, x: torch.Tensor, s: float,
                        sigma: float | torch.Tensor) -> torch.Tensor:
    r"""The score of the marginal :math:`x_t = s(x_0 + \sigma\epsilon)`, from a denoiser.

    .. math::  \nabla_x \log p_t(x) = \frac{s\, D(x/s;\sigma) - x}{(s\sigma)^2}


    With :math:`s = 1` this is Tweedie's formula :math:`(D(x;\sigma) - x)/\sigma^2`.

    Args:
        denoiser: ``D(x_hat (B, d), sigma (B,))``.
        x: points ``(B, d)``.
        s, sigma: the scale and noise level of the marginal; ``sigma`` a float, or one level per
            point ``(B,)`` (as :func:`annealed_langevin` passes it).

    Returns:
        ``(B, d)``.
    """
    x = check_points("x", x)
    s = check_positive("s", s)
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
    if not isinstance(sigma, torch.Tensor):
        check_positive("sigma", sigma)
    if isinstance(sigma, torch.Tensor):
        if sigma.shape != (len(x),):
            raise ValueError(f"sigma must be a float or have shape ({len(x)},), got {tuple(sigma.shape)}")
        level, spread = sigma.to(x.dtype), s * sigma.to(x.dtype)[:, None]  # (B,), (B, 1)
    else:
        level, spread = torch.full((len(x),), float(sigma), dtype=x.dtype), s * sigma  # (B,), float
    return (s * denoiser(x / s, level) - x) / spread**2


def dsm_loss(score: Score, x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""Denoising score matching (Vincent 2011) with Song & Ermon's weight :math:`\lambda(\sigma) = \sigma^2`.

    The score of the noising kernel :math:`\mathcal N(\tilde x; x_0, \sigma^2 I)` at
    :math:`\tilde x = x_0 + \sigma\epsilon` is :math:`-\epsilon/\sigma`. Regressing onto
    it has the same minimiser as regressing onto the unknown :math:`\nabla \log p_\sigma`:

    .. math::  \mathcal L = \mathbb E\Big[\sigma^2 \big\lVert s_\theta(x_0 + \sigma\epsilon, \sigma)
               + \epsilon/\sigma \big\rVert^2\Big].

    With :math:`s_\theta = (D_\theta - \tilde x)/\sigma^2` this is
    :math:`\mathbb E\,\lVert D_\theta(\tilde x;\sigma) - x_0\rVert^2/\sigma^2`: training a
    denoiser *is* score matching.

    Args:
        score: ``score(x (B, d), sigma (B,))``.
        x0: data ``(B, d)``; sigma: ``(B,)``; eps: ``(B, d)`` standard normal.

    Returns:
        A scalar tensor: the mean over the batch of the summed squared error.
    """
    x0, eps = check_points("x0", x0), check_points("eps", eps)
    if eps.shape != x0.shape or not isinstance(sigma, torch.Tensor) or sigma.shape != (len(x0),):
        raise ValueError(f"eps must match x0 {tuple(x0.shape)} and sigma must have shape ({len(x0)},)")
    check_finite("x0", x0)
    check_finite("eps", eps)
    check_tensor("sigma", sigma)
    if (sigma <= 0).any():
        raise ValueError(f"sigma must be > 0, got min {sigma.min().item():g}")
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, sigma), got {type(score).__name__}")
    noisy = x0 + sigma[:, None] * eps
    residual = score(noisy, sigma) + eps / sigma[:, None]  # (B, d)
    return (sigma**2 * (residual**2).sum(1)).mean()


def langevin(score: Score, x: torch.Tensor, sigma: float, n_steps: int, step_size: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Langevin dynamics at one noise level: ``n_steps`` noisy steps uphill on the score.

    With step :math:`\alpha` (``step_size``), repeat

    .. math::  x \leftarrow x + \tfrac{\alpha}{2}\, \nabla_x \log p_{\sigma}(x) + \sqrt{\alpha}\, z,
               \qquad z \sim \mathcal N(0, I).

    For small :math:`\alpha` and many steps the chain samples :math:`p_\sigma` (the unadjusted
    Langevin algorithm; for a Gaussian :math:`\mathcal N(\mu, v)` its stationary variance is
    :math:`v/(1 - \alpha/4v)`). *Many* can be astronomically many: a chain crosses a region of low
    density between two modes only rarely, so with a small :math:`\sigma` the share of chains in
    each mode stays where the starting points put it (Song & Ermon 2019, Section 3.2).

    Args:
        score: ``score(x (B, d), sigma (B,))``.
        x: starting points ``(B, d)``.
        sigma: the noise level :math:`\sigma > 0` passed to ``score``.
        n_steps: number of steps :math:`\ge 1`.
        step_size: :math:`\alpha > 0`.
        generator: for the Langevin noise.

    Returns:
        The last iterate ``(B, d)``; the sampler calls ``score`` ``n_steps`` times.
    """
    x = check_finite("x", check_points("x", x))
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, sigma), got {type(score).__name__}")
    sigma = check_positive("sigma", sigma)
    check_int("n_steps", n_steps)
    alpha = check_positive("step_size", step_size)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    level = torch.full((len(x),), sigma, dtype=x.dtype)
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + 0.5 * alpha * score(x, level) + math.sqrt(alpha) * z
    return x


def annealed_langevin(score: Score, sigmas: torch.Tensor, noise: torch.Tensor, steps_per_level: int = 100,
                      step_size: float = 2e-5, generator: torch.Generator | None = None,
                      denoise_last: bool = True) -> torch.Tensor:
    r"""Annealed Langevin dynamics, the sampler of SMLD/NCSN (Song & Ermon 2019, Algorithm 1).

    For each noise level :math:`\sigma_1 > \dots > \sigma_L`, with step
    :math:`\alpha_i = \varepsilon\,\sigma_i^2/\sigma_L^2`, run :func:`langevin` for
    ``steps_per_level`` steps:

    .. math::  x \leftarrow x + \tfrac{\alpha_i}{2}\, \nabla_x \log p_{\sigma_i}(x) + \sqrt{\alpha_i}\, z,
               \qquad z \sim \mathcal N(0, I).

    Langevin dynamics samples :math:`p_{\sigma_i}` in the limit of small steps; starting each
    level from the previous one's samples lets the chain cross between modes while the
    density is still blurred. ``denoise_last`` adds one step
    :math:`x + \sigma_L^2 \nabla \log p_{\sigma_L}(x) = D(x;\sigma_L)` (Tweedie's formula, as in
    Song & Ermon 2020 and Jolicoeur-Martineau et al. 2021).

    Args:
        score: ``score(x (B, d), sigma (B,))``.
        sigmas: decreasing positive noise levels ``(L,)``.
        noise: unit Gaussian ``(B, d)``; the chain starts at :math:`\sigma_1 \cdot` noise.
        steps_per_level: :math:`T \ge 1` Langevin steps per level.
        step_size: :math:`\varepsilon > 0`.
        generator: for the Langevin noise.
        denoise_last: finish with the Tweedie denoising step.

    Returns:
        Samples ``(B, d)``; the sampler calls ``score`` ``L * T (+1)`` times.
    """
    noise = check_finite("noise", check_points("noise", noise))
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, sigma), got {type(score).__name__}")
    check_int("steps_per_level", steps_per_level)
    step_size = check_positive("step_size", step_size)
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) == 0:
        got = getattr(sigmas, "shape", sigmas)
        raise ValueError(f"sigmas must be a 1-D tensor of noise levels, got {got}")
    check_finite("sigmas", sigmas)
    if (sigmas <= 0).any() or (sigmas[1:] >= sigmas[:-1]).any():
        raise ValueError(f"sigmas must be positive and strictly decreasing, got {sigmas.tolist()}")
    levels = sigmas.tolist()
    x = noise * levels[0]
    for sigma in levels:
        x = langevin(score, x, sigma, steps_per_level, step_size * sigma**2 / levels[-1] ** 2, generator)
    if denoise_last:
        x = x + levels[-1] ** 2 * score(x, torch.full((len(x),), levels[-1], dtype=x.dtype))
    return x


# --------------------------------------------------------------------------------------------
# 2. the two SDEs of Song et al. (2021)
# --------------------------------------------------------------------------------------------
def _check_time(t: object) -> float:
    """A time in [0, 1] (the SDEs are defined there), as a float; cheap: called at every step."""
    return check_real("t", t, 0.0, 1.0)


@dataclass(frozen=True)
class VPSDE:
    r"""Variance-preserving SDE, the continuous-time DDPM.

    .. math::  dx = -\tfrac12\beta(t)\,x\,dt + \sqrt{\beta(t)}\,dw


    :math:`\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})`, :math:`t \in [0, 1]`. DDPM's
    :math:`T` steps with :math:`\beta_i` are its Euler–Maruyama discretisation with
    :math:`\beta(i/T) = T\beta_i` (Song et al., Appendix B). Marginal:
    :math:`x_t = s(t)x_0 + \sqrt{1 - s(t)^2}\,\epsilon` with
    :math:`s(t) = e^{-\frac12\int_0^t \beta}`.
    """

    beta_min: float = 0.1  #: β(0)
    beta_max: float = 20.0  #: β(1)
    t_end: float = 1e-3  #: samplers stop here: the SDE's coefficients blow up as t -> 0

    def __post_init__(self) -> None:
        check_positive("beta_min", self.beta_min)
        check_positive("beta_max", self.beta_max)
        check_real("t_end", self.t_end, 0.0, 1.0, high_open=True)
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must be > beta_min, got beta_min={self.beta_min}, "
                             f"beta_max={self.beta_max}")

    def beta(self, t: float) -> float:
        """:math:`\\beta(t)` for :math:`t \\in [0, 1]`."""
        t = _check_time(t)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """:math:`f(x, t) = -\\tfrac12 \\beta(t) x`."""
        check_points("x", x)
        return -0.5 * self.beta(t) * x

    def diffusion(self, t: float) -> float:
        """:math:`g(t) = \\sqrt{\\beta(t)}`."""
        return math.sqrt(self.beta(t))

    def schedule(self) -> NoiseSchedule:
        """Its row of the table: :func:`tutorlib.edm.vp_schedule` with beta_d = beta_max - beta_min."""
        return vp_schedule(self.beta_min, self.beta_max - self.beta_min)


@dataclass(frozen=True)
class VESDE:
    r"""Variance-exploding SDE, the continuous-time SMLD: :math:`dx = \sqrt{d\sigma(t)^2/dt}\,dw`.

    :math:`\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t`, so
    :math:`g(t) = \sigma(t)\sqrt{2\ln(\sigma_{\max}/\sigma_{\min})}` and the marginal is
    :math:`x_t = x_0 + \sigma(t)\epsilon` (:math:`s = 1`) when the process starts at
    :math:`t = 0` from the data blurred by :math:`\sigma_{\min}` (Song et al. use
    :math:`\sigma_{\min} = 0.01`, below what the eye or a metric resolves).
    """

    sigma_min: float = 0.01  #: σ(0)
    sigma_max: float = 50.0  #: σ(1): larger than the largest distance between data points
    t_end: float = 0.0  #: samplers stop here (σ = σ_min)

    def __post_init__(self) -> None:
        check_positive("sigma_min", self.sigma_min)
        check_positive("sigma_max", self.sigma_max)
        check_real("t_end", self.t_end, 0.0, 1.0, high_open=True)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={self.sigma_min}, "
                             f"sigma_max={self.sigma_max}")

    def sigma(self, t: float) -> float:
        """:math:`\\sigma(t)` for :math:`t \\in [0, 1]`."""
        t = _check_time(t)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """:math:`f = 0`."""
        check_points("x", x)
        _check_time(t)
        return torch.zeros_like(x)

    def diffusion(self, t: float) -> float:
        """:math:`g(t) = \\sigma(t)\\sqrt{2 \\ln(\\sigma_{\\max}/\\sigma_{\\min})}`."""
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def schedule(self) -> NoiseSchedule:
        """Its row of the table: :math:`s = 1`, :math:`\\sigma(t)` geometric."""
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        return NoiseSchedule(
            "VE SDE", s=torch.ones_like, sigma=lambda t: self.sigma_min * torch.exp(t * log_ratio),
            s_dot=torch.zeros_like, sigma_dot=lambda t: self.sigma_min * log_ratio * torch.exp(t * log_ratio),
            sigma_inv=lambda sigma: torch.log(sigma / self.sigma_min) / log_ratio,
        )


SDE = VPSDE | VESDE


def _marginal(sde: SDE, t: float) -> tuple[float, float]:
    schedule = sde.schedule()
    time = torch.tensor(t, dtype=torch.float64)
    return schedule.s(time).item(), schedule.sigma(time).item()


def _time_grid(sde: SDE, n_steps: int) -> list[float]:
    if not isinstance(sde, VPSDE | VESDE):
        raise TypeError(f"sde must be a VPSDE or a VESDE, got {type(sde).__name__}")
    check_int("n_steps", n_steps)
    return torch.linspace(1.0, sde.t_end, n_steps + 1, dtype=torch.float64).tolist()


def _prior(sde: SDE, noise: torch.Tensor) -> torch.Tensor:
    s, sigma = _marginal(sde, 1.0)
    noise = check_finite("noise", check_points("noise", noise))
    return noise * (s * sigma)  # x_1 ≈ s(1)σ(1)·n: the data are negligible


# --------------------------------------------------------------------------------------------
# 3. samplers: Euler–Maruyama on the reverse SDE, Euler/Heun on the probability-flow ODE
# --------------------------------------------------------------------------------------------
def reverse_sde_sample(sde: SDE, denoiser: Denoiser, noise: torch.Tensor, n_steps: int = 500,
                       generator: torch.Generator | None = None,
                       return_path: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""Euler–Maruyama on the reverse-time SDE, from :math:`t = 1` to ``sde.t_end`` on a uniform grid.

    With :math:`h = t_i - t_{i+1} > 0`:

    .. math::  x_{i+1} = x_i - h\big[f(x_i, t_i) - g(t_i)^2\, \nabla\log p_{t_i}(x_i)\big]
               + g(t_i)\sqrt h\, z_i, \qquad z_i \sim \mathcal N(0, I).

    Args:
        sde: :class:`VPSDE` or :class:`VESDE`.
        denoiser: ``D(x_hat, sigma)``; the score comes from :func:`score_from_denoiser`.
        noise: unit Gaussian ``(B, d)``; the start is :math:`s(1)\sigma(1)` times it.
        n_steps: number of steps (= network evaluations).
        generator: for the noise :math:`z_i`.
        return_path: also return the ``n_steps + 1`` iterates.

    Returns:
        Samples at ``sde.t_end`` ``(B, d)`` (and the path).
    """
    times = _time_grid(sde, n_steps)
    x = _prior(sde, noise)
    path = [x]
    for t, t_next in itertools.pairwise(times):
        h = t - t_next
        s, sigma = _marginal(sde, t)
        g = sde.diffusion(t)
        score = score_from_denoiser(denoiser, x, s, sigma)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x - h * (sde.drift(x, t) - g**2 * score) + g * math.sqrt(h) * z
        path.append(x)
    return (x, path) if return_path else x


def probability_flow_drift(sde: SDE, denoiser: Denoiser, x: torch.Tensor, t: float) -> torch.Tensor:
    r"""The right-hand side of the probability-flow ODE, :math:`f(x,t) - \tfrac12 g(t)^2 \nabla\log p_t(x)`.

    It equals :func:`tutorlib.edm.ode_drift` for ``sde.schedule()``: two ways to write one ODE.
    """
    if not isinstance(sde, VPSDE | VESDE):
        raise TypeError(f"sde must be a VPSDE or a VESDE, got {type(sde).__name__}")
    check_finite("x", check_points("x", x))
    _check_time(t)
    return _probability_flow_drift(sde, denoiser, x, t)


def _probability_flow_drift(sde: SDE, denoiser: Denoiser, x: torch.Tensor, t: float) -> torch.Tensor:
    """:func:`probability_flow_drift` without the NaN scan (called at every solver step)."""
    s, sigma = _marginal(sde, t)
    return sde.drift(x, t) - 0.5 * sde.diffusion(t) ** 2 * score_from_denoiser(denoiser, x, s, sigma)


def probability_flow_sample(sde: SDE, denoiser: Denoiser, noise: torch.Tensor, n_steps: int = 100,
                            solver: str = "euler",
                            return_path: bool = False,
                            ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""Solve the probability-flow ODE from :math:`t = 1` to ``sde.t_end`` on a uniform grid.

    Same start as :func:`reverse_sde_sample`, same marginals, but no noise after the start: each
    sample is a deterministic function of its starting point.

    Args:
        sde, denoiser, noise, n_steps, return_path: as in :func:`reverse_sde_sample`.
        solver: ``"euler"`` (``n_steps`` evaluations) or ``"heun"`` (``2 n_steps``).

    Returns:
        Samples ``(B, d)`` (and the path).
    """
    check_choice("solver", solver, ("euler", "heun"))
    times = _time_grid(sde, n_steps)
    x = _prior(sde, noise)
    path = [x]
    for t, t_next in itertools.pairwise(times):
        slope = _probability_flow_drift(sde, denoiser, x, t)
        x_next = x + (t_next - t) * slope
        if solver == "heun":
            slope_next = _probability_flow_drift(sde, denoiser, x_next, t_next)
            x_next = x + (t_next - t) * 0.5 * (slope + slope_next)
        x = x_next
        path.append(x)
    return (x, path) if return_path else x
