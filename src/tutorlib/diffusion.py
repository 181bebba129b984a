r"""tutorlib.diffusion: denoising diffusion models, the noise schedule kept apart from the network.

Taught in the chapter "Diffusion I: from DDPM to DDIM" (``book/diffusion.md``).

The network every diffusion chapter shares is :class:`TimeMLP`, an MLP that takes a point
:math:`x` and a noise level :math:`t` (one real number per sample) and returns a vector of the
same shape as :math:`x`. What that vector *means* (the noise :math:`\epsilon`, the clean point
:math:`x_0`, a velocity) is decided by the loss that trains it, not by the network, as in
diffusers where schedulers and models are separate objects.

Conventions (as in diffusers):

- steps are 0-indexed, :math:`t \in \{0, \dots, T-1\}`; ``betas[t]`` is Ho et al.'s
  :math:`\beta_{t+1}`;
- ``alpha_bar[t]`` :math:`= \bar\alpha_t = \prod_{s \le t} (1 - \beta_s)` decreases from about 1
  (clean) to about 0 (pure noise); "step :math:`-1`" is the clean data, :math:`\bar\alpha = 1`;
- the network is called as ``model(x_t, scale_t(t, T))``: it sees :math:`t / T \in [0, 1)`;
- samplers never own the network: a *step* takes the network's output and returns the next
  point, and the sampling loops call the network once per step.

Legend: ``alpha_bar`` :math:`\bar\alpha_t`, ``betas`` :math:`\beta_t`, ``eps`` :math:`\epsilon`,
``x0`` :math:`x_0`, ``x_t`` :math:`x_t`, ``eta`` :math:`\eta`, ``sigma`` :math:`\sigma_t(\eta)`.

References:
    Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models", NeurIPS.
    Song, Meng & Ermon (2021), "Denoising diffusion implicit models", ICLR.
    Nichol & Dhariwal (2021), "Improved denoising diffusion probabilistic models", ICML.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.validation import (
    check_choice,
    check_fields,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
)

__all__ = [
    "DiffusionConfig",
    "DigitsDenoiser",
    "TimeMLP",
    "alpha_bars",
    "cosine_beta_schedule",
    "ddim_invert",
    "ddim_sample",
    "ddim_sigma",
    "ddim_step",
    "ddim_sweep",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step",
    "digits_to_model",
    "epsilon_loss",
    "linear_beta_schedule",
    "make_schedule",
    "model_to_digits",
    "posterior_variance",
    "predict_eps",
    "predict_x0",
    "q_sample",
    "scale_t",
    "slerp",
    "time_embedding",
    "train_denoiser",
]

#: A noise predictor: ``model(x_t, t / T) -> eps_hat`` with the shape of ``x_t``.
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def time_embedding(t: torch.Tensor, dim: int, max_frequency: float = 1000.0) -> torch.Tensor:
    r"""Sinusoidal features of a noise level: :math:`[\cos(\omega_k t), \sin(\omega_k t)]_k`.

    .. math::  \omega_k = \omega_{\max}^{k / (K - 1)}, \quad k = 0, \dots, K-1, \quad K = \text{dim}/2,

    so the frequencies run geometrically from 1 to ``max_frequency`` (the Transformer's
    positional encoding, Vaswani et al. 2017, as DDPM uses it for the step, Ho et al. 2020).
    Pass :math:`t` on a scale of about :math:`[0, 1]` (e.g. the step :math:`t/T`, or EDM's
    :math:`\tfrac14 \ln \sigma`): then the slowest feature changes once over the range and the
    fastest resolves steps of about :math:`1/\omega_{\max}`.

    Args:
        t: noise levels ``(B,)``.
        dim: an even number of features.
        max_frequency: :math:`\omega_{\max} \ge 1`.

    Returns:
        ``(B, dim)``.
    """
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        raise ValueError(f"t must be a 1-D tensor of noise levels (B,), got {getattr(t, 'shape', type(t))}")
    if not t.is_floating_point():
        raise TypeError(f"t must be a floating-point tensor, got {t.dtype}")
    check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    check_real("max_frequency", max_frequency, 1.0)
    k = dim // 2
    exponents = torch.arange(k, dtype=t.dtype, device=t.device) / max(k - 1, 1)
    omega = torch.exp(exponents * math.log(max_frequency))  # (K,)
    angles = t[:, None] * omega[None, :]  # (B, K)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)  # (B, 2K)


class TimeMLP(nn.Module):
    r"""An MLP :math:`f_\theta(x, t)` for vectors: the shared denoiser/velocity network for 2-D data.

    The input is :math:`[x, \mathrm{emb}(t)]` (see :func:`time_embedding`), followed by
    ``depth`` layers of width ``hidden`` with SiLU, and a linear map back to ``dim``.

    Shapes: ``x`` ``(B, dim)``, ``t`` ``(B,)`` or a float (the same level for the whole batch)
    -> ``(B, dim)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, embed_dim: int = 32,
                 max_frequency: float = 1000.0) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("hidden", hidden)
        check_int("depth", depth)
        check_int("embed_dim", embed_dim, minimum=2)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        check_real("max_frequency", max_frequency, 1.0)
        self.dim, self.embed_dim, self.max_frequency = dim, embed_dim, float(max_frequency)
        layers: list[nn.Module] = []
        width = dim + embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(getattr(x, 'shape', ()))}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        if not isinstance(t, torch.Tensor):
            t = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
        emb = time_embedding(t.to(x.dtype), self.embed_dim, self.max_frequency)  # (B, E)
        return self.net(torch.cat([x, emb], dim=1))


# --------------------------------------------------------------------------------------------
# Noise schedules: plain tensors, kept apart from the network (as diffusers' schedulers are).
# --------------------------------------------------------------------------------------------
def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    r"""DDPM's schedule: :math:`\beta_t` evenly spaced from ``beta_start`` to ``beta_end``.

    .. math::  \beta_t = \beta_{\text{start}} + \frac{t}{T-1} (\beta_{\text{end}} - \beta_{\text{start}}),
               \quad t = 0, \dots, T-1

    Ho et al. (2020) use :math:`T = 1000`, :math:`\beta \in [10^{-4}, 0.02]`.

    Returns:
        ``(T,)`` float64.
    """
    check_int("T", T, minimum=2)
    check_real("beta_start", beta_start, 0.0, 1.0, low_open=True, high_open=True)
    check_real("beta_end", beta_end, 0.0, 1.0, low_open=True, high_open=True)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""Nichol & Dhariwal's cosine schedule, defined through :math:`\bar\alpha` rather than :math:`\beta`.

    .. math::  \bar\alpha(u) = \frac{f(u)}{f(0)}, \quad
               f(u) = \cos^2\!\Big(\frac{u + s}{1 + s} \cdot \frac{\pi}{2}\Big), \quad
               \beta_t = \min\Big(1 - \frac{\bar\alpha((t+1)/T)}{\bar\alpha(t/T)},\ \beta_{\max}\Big)

    for :math:`t = 0, \dots, T-1`. The small offset :math:`s` keeps :math:`\beta_0` from being
    tiny; the cap :math:`\beta_{\max}` avoids :math:`\beta = 1` at the very end. The same
    formula as diffusers' ``betas_for_alpha_bar(T, alpha_transform_type="cosine")``.

    Returns:
        ``(T,)`` float64.
    """
    check_int("T", T, minimum=2)
    check_nonnegative("s", s)
    check_real("max_beta", max_beta, 0.0, 1.0, low_open=True, high_open=True)
    u = torch.arange(T + 1, dtype=torch.float64) / T  # (T + 1,) from 0 to 1
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def _check_betas(betas: object) -> torch.Tensor:
    if not isinstance(betas, torch.Tensor) or not betas.is_floating_point():
        raise TypeError(f"betas must be a floating-point torch.Tensor, got {type(betas).__name__}")
    if betas.ndim != 1 or len(betas) < 2:
        raise ValueError(f"betas must have shape (T,) with T >= 2, got {tuple(betas.shape)}")
    check_finite("betas", betas)
    if not ((betas > 0) & (betas < 1)).all():
        raise ValueError(
            f"betas must lie in (0, 1), got min {betas.min().item():.3g}, max {betas.max().item():.3g}"
        )
    return betas


def alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    r"""The share of the signal's variance left at step :math:`t`.

    .. math::  \bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s)

    Args:
        betas: ``(T,)`` values in :math:`(0, 1)`.

    Returns:
        ``(T,)`` float64, strictly decreasing.
    """
    betas = _check_betas(betas)
    return torch.cumprod(1 - betas.double(), dim=0)


def _check_alpha_bar(alpha_bar: object) -> torch.Tensor:
    if not isinstance(alpha_bar, torch.Tensor) or not alpha_bar.is_floating_point():
        raise TypeError(f"alpha_bar must be a floating-point torch.Tensor, got {type(alpha_bar).__name__}")
    if alpha_bar.ndim != 1 or len(alpha_bar) < 2:
        raise ValueError(f"alpha_bar must have shape (T,) with T >= 2, got {tuple(alpha_bar.shape)}")
    if not ((alpha_bar > 0) & (alpha_bar <= 1)).all() or not (alpha_bar[1:] < alpha_bar[:-1]).all():
        raise ValueError(
            "alpha_bar must be strictly decreasing in (0, 1] (index 0 = almost clean, T-1 = almost "
            "noise); build it with alpha_bars(betas)"
        )
    return alpha_bar


def posterior_variance(betas: torch.Tensor) -> torch.Tensor:
    r"""The variance of :math:`q(x_{t-1} \mid x_t, x_0)`, DDPM's :math:`\tilde\beta_t`.

    .. math::  \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t,
               \qquad \bar\alpha_{-1} = 1 \ (\text{so } \tilde\beta_0 = 0)

    Returns:
        ``(T,)`` float64.
    """
    betas = _check_betas(betas).double()
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])  # (T,) alpha_bar[t-1]
    return (1 - prev) / (1 - alpha_bar) * betas


def scale_t(t: torch.Tensor | int | float, T: int) -> torch.Tensor:
    r"""What the network sees of the step: :math:`t / T \in [0, 1)`, as a float32 tensor.

    ``t`` is a step or a tensor of steps in :math:`[0, T)`; a step outside is refused (it would
    extrapolate the network's input beyond what it was trained on).
    """
    check_int("T", T, minimum=2)
    if isinstance(t, bool) or not isinstance(t, int | float | list | tuple | torch.Tensor):
        raise TypeError(f"t must be a step (int) or a tensor of steps in [0, {T}), got {type(t).__name__}")
    values = torch.as_tensor(t, dtype=torch.float32)
    if values.numel() and not (bool(torch.isfinite(values).all()) and values.min() >= 0 and values.max() < T):
        raise ValueError(f"t must hold steps in [0, T={T}), got values in "
                         f"[{values.min().item():g}, {values.max().item():g}]")
    return values / T


# --------------------------------------------------------------------------------------------
# The forward process and the epsilon-prediction loss
# --------------------------------------------------------------------------------------------
def _as_steps(t: torch.Tensor | int, batch: int, T: int) -> torch.Tensor:
    if isinstance(t, bool) or not isinstance(t, int | torch.Tensor):
        raise TypeError(f"t must be an int or an integer tensor (B,), got {type(t).__name__}")
    if isinstance(t, int):
        t = torch.full((batch,), t, dtype=torch.long)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer steps, got dtype {t.dtype}")
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},) to match x0, got {tuple(t.shape)}")
    if batch and (t.min() < 0 or t.max() >= T):
        raise ValueError(f"t must lie in [0, {T - 1}], got values in [{t.min().item()}, {t.max().item()}]")
    return t.long()


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape ``(B,)`` -> ``(B, 1, ..., 1)`` so it broadcasts against ``like`` ``(B, ...)``."""
    return value.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(
    x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor, alpha_bar: torch.Tensor
) -> torch.Tensor:
    r"""Jump straight to step :math:`t` of the forward ("demolition") process.

    .. math::  x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,
               \qquad \epsilon \sim \mathcal N(0, I)

    so :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t} x_0, (1 - \bar\alpha_t) I)`
    (Ho et al. 2020, eq. 4).

    Args:
        x0: clean data ``(B, ...)``.
        t: steps ``(B,)`` (integers in :math:`[0, T)`) or one int for the whole batch.
        noise: :math:`\epsilon`, the shape of ``x0``.
        alpha_bar: ``(T,)`` from :func:`alpha_bars`.

    Returns:
        :math:`x_t`, the shape and dtype of ``x0``.
    """
    alpha_bar = _check_alpha_bar(alpha_bar)
    _check_same_shape(x0=x0, noise=noise)
    t = _as_steps(t, x0.shape[0], len(alpha_bar))
    ab = _per_sample(alpha_bar[t], x0)  # (B, 1, ..., 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def _check_same_shape(**tensors: object) -> None:
    """Float tensors of one shape (no broadcasting). No NaN scan: the steps run at every
    sampling and training step, and a NaN shows in their output; the loops check their
    inputs (``x_T``, the data) once."""
    names = list(tensors)
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    first = tensors[names[0]]
    for name in names[1:]:
        if tensors[name].shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {names[0]} {tuple(first.shape)}, "
                f"got {tuple(tensors[name].shape)}"
            )


def _check_alpha_value(
    name: str, value: float | torch.Tensor, *, allow_one: bool, batch: int | None = None
) -> None:
    if not isinstance(value, torch.Tensor):
        check_real(name, value, 0.0, 1.0, low_open=True, high_open=not allow_one)
        return
    if value.ndim > 1 or (value.ndim == 1 and batch is not None and value.shape != (batch,)):
        raise ValueError(f"{name} must be a number, a scalar tensor or a tensor ({batch},) with one "
                         f"value per sample, got shape {tuple(value.shape)}")
    v = value
    high_ok = (v <= 1).all() if allow_one else (v < 1).all()
    if not ((v > 0).all() and high_ok):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {v.flatten()[:4].tolist()}")


def _broadcast(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A float or a tensor ``(B,)`` as a tensor of ``like``'s dtype that broadcasts against it."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 1 and like.ndim > 1:
        return _per_sample(value, like)
    return value


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float | torch.Tensor) -> torch.Tensor:
    r"""Invert :func:`q_sample` for :math:`x_0` given a noise estimate:
    :math:`\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\, \hat\epsilon) / \sqrt{\bar\alpha_t}`.

    ``alpha_bar_t`` is a float or a tensor ``(B,)``; ``x_t`` and ``eps`` share their shape.
    """
    _check_same_shape(x_t=x_t, eps=eps)
    _check_alpha_value("alpha_bar_t", alpha_bar_t, allow_one=True, batch=x_t.shape[0])
    ab = _broadcast(alpha_bar_t, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def predict_eps(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: float | torch.Tensor) -> torch.Tensor:
    r"""The noise that takes ``x0`` to ``x_t``.

    .. math::  \epsilon = (x_t - \sqrt{\bar\alpha_t}\, x_0) / \sqrt{1 - \bar\alpha_t}
    """
    _check_same_shape(x_t=x_t, x0=x0)
    _check_alpha_value("alpha_bar_t", alpha_bar_t, allow_one=False, batch=x_t.shape[0])
    ab = _broadcast(alpha_bar_t, x_t)
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


def epsilon_loss(
    model: EpsModel, x0: torch.Tensor, alpha_bar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""DDPM's simplified training loss: predict the noise that was added.

    .. math::  L_{\text{simple}} = \mathbb E_{t, x_0, \epsilon}
               \big\lVert \epsilon
               - \epsilon_\theta(\sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t) \big\rVert^2,
               \quad t \sim \mathcal U\{0, \dots, T-1\}

    (Ho et al. 2020, eq. 14), averaged over the batch and the coordinates.

    Args:
        model: ``model(x_t, t / T) -> eps_hat``, shapes ``(B, ...)``, ``(B,)`` -> ``(B, ...)``.
        x0: a batch of clean data ``(B, ...)``.
        alpha_bar: ``(T,)``.
        generator: draws :math:`t` and :math:`\epsilon`.

    Returns:
        The scalar loss (with gradients to the model's parameters).
    """
    alpha_bar = _check_alpha_bar(alpha_bar)
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError(f"x0 must be a batch (B, ...) with at least 2 dims, got {getattr(x0, 'shape', x0)}")
    _check_x(x0, "x0")
    _check_model(model)
    _check_generator(generator)
    T = len(alpha_bar)
    t = torch.randint(0, T, (x0.shape[0],), generator=generator, device=x0.device)  # (B,)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = q_sample(x0, t, noise, alpha_bar.to(x0.device))
    eps_hat = model(x_t, scale_t(t, T).to(x0))
    if eps_hat.shape != x0.shape:
        raise ValueError(
            f"model output must have the shape of x0 {tuple(x0.shape)}, got {tuple(eps_hat.shape)}"
        )
    return (eps_hat - noise).pow(2).mean()


# --------------------------------------------------------------------------------------------
# Samplers: a step takes the network's output; the loops call the network.
# --------------------------------------------------------------------------------------------
def _check_eta(eta: float) -> float:
    """:math:`\\eta \\ge 0` (0: deterministic DDIM, 1: DDPM-like)."""
    return check_nonnegative("eta", eta)


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    r"""The noise scale of one DDIM step from :math:`t` to an earlier step ("prev").

    .. math::  \sigma_t(\eta) = \eta \sqrt{\frac{1 - \bar\alpha_{\text{prev}}}{1 - \bar\alpha_t}}
               \sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{\text{prev}}}}

    (Song et al. 2021, eq. 16). With :math:`\eta = 1` and prev :math:`= t - 1` this is DDPM's
    posterior variance :math:`\tilde\beta_t` (:func:`posterior_variance`); :math:`\eta = 0`
    makes the step deterministic.
    """
    eta = _check_eta(eta)
    _check_alpha_value("alpha_bar_t", alpha_bar_t, allow_one=False)
    _check_alpha_value("alpha_bar_prev", alpha_bar_prev, allow_one=True)
    if not alpha_bar_prev > alpha_bar_t:
        raise ValueError(
            f"alpha_bar_prev must be larger than alpha_bar_t (prev is less noisy), got "
            f"{alpha_bar_prev} <= {alpha_bar_t}"
        )
    return eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev))


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    alpha_bar_prev: float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    r"""One DDIM update from step :math:`t` to any earlier step (Song et al. 2021, eq. 12).

    .. math::  x_{\text{prev}} = \sqrt{\bar\alpha_{\text{prev}}}\, \hat x_0
               + \sqrt{1 - \bar\alpha_{\text{prev}} - \sigma_t^2}\, \hat\epsilon + \sigma_t z,
               \qquad \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\, \hat\epsilon}{\sqrt{\bar\alpha_t}}

    with :math:`\sigma_t = \sigma_t(\eta)` from :func:`ddim_sigma` and :math:`z \sim \mathcal N(0, I)`:
    "predict the clean point, point back towards where the noise came from, add fresh noise".

    ``clip_x0`` clips :math:`\hat x_0` to :math:`[-c, c]` and then recomputes
    :math:`\hat\epsilon` from the clipped :math:`\hat x_0`, so the two stay consistent
    (clipping :math:`\hat x_0` alone makes deterministic DDIM drift).

    Args:
        x_t, eps: ``(B, ...)``, the current point and the network's noise estimate.
        alpha_bar_t, alpha_bar_prev: floats, :math:`\bar\alpha_{\text{prev}} > \bar\alpha_t`;
            ``alpha_bar_prev = 1`` jumps to clean data.
        eta: :math:`\eta \ge 0`.
        noise: :math:`z`, the shape of ``x_t``; needed iff :math:`\sigma_t > 0`.
        clip_x0: ``None`` or :math:`c > 0`.
    """
    _check_same_shape(x_t=x_t, eps=eps)
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    if clip_x0 is not None:
        check_positive("clip_x0", clip_x0)
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1 - alpha_bar_t)
    direction = math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
    x_prev = math.sqrt(alpha_bar_prev) * x0 + direction
    if sigma > 0:
        if noise is None:
            raise ValueError(f"noise is required when sigma > 0 (eta={eta}, sigma={sigma:.3g})")
        _check_same_shape(x_t=x_t, noise=noise)
        x_prev = x_prev + sigma * noise
    return x_prev


def ddpm_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    beta_t: float,
    alpha_bar_t: float,
    alpha_bar_prev: float,
    noise: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    r"""One ancestral DDPM step :math:`x_t \to x_{t-1}` (Ho et al. 2020, eqs. 6–7).

    .. math::  x_{t-1} = \frac{\sqrt{\bar\alpha_{t-1}}\, \beta_t}{1 - \bar\alpha_t}\, \hat x_0
               + \frac{\sqrt{\alpha_t}\, (1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t
               + \sqrt{\tilde\beta_t}\, z, \qquad \alpha_t = 1 - \beta_t

    the mean and variance of the true posterior :math:`q(x_{t-1} \mid x_t, \hat x_0)`, with
    :math:`\hat x_0` from :func:`predict_x0` (clipped to :math:`[-c, c]` if ``clip_x0``).
    ``alpha_bar_prev = 1`` at :math:`t = 0`, where :math:`\tilde\beta_0 = 0` and no noise is added.
    """
    _check_same_shape(x_t=x_t, eps=eps)
    beta_t = check_real("beta_t", beta_t, 0.0, 1.0, low_open=True, high_open=True)
    _check_alpha_value("alpha_bar_t", alpha_bar_t, allow_one=False)
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    if clip_x0 is not None:
        check_positive("clip_x0", clip_x0)
        x0 = x0.clamp(-clip_x0, clip_x0)
    _check_alpha_value("alpha_bar_prev", alpha_bar_prev, allow_one=True)
    coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1 - alpha_bar_t)
    coef_xt = math.sqrt(1 - beta_t) * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t
    x_prev = coef_x0 * x0 + coef_xt * x_t
    if variance > 0:
        if noise is None:
            raise ValueError("noise is required for t > 0 (the posterior variance is positive)")
        _check_same_shape(x_t=x_t, noise=noise)
        x_prev = x_prev + math.sqrt(variance) * noise
    return x_prev


def ddim_timesteps(T: int, steps: int, spacing: str = "even") -> torch.Tensor:
    r"""The sub-sequence :math:`t_1 < \dots < t_S` of the training steps a DDIM sampler visits.

    ``spacing="even"``: :math:`t_i = \mathrm{round}(i (T-1)/(S-1))`, :math:`i = 0, \dots, S-1`
    (diffusers' "linspace" spacing). It always contains the noisiest step :math:`T-1` and the
    cleanest step :math:`0`; ``steps == T`` gives every step, ``steps == 1`` gives ``[T-1]``: one
    jump from noise to data.

    ``spacing="quadratic"``: :math:`t_i = \lfloor (i \sqrt{0.8\,T} / (S-1))^2 \rfloor`, the
    spacing of the DDIM paper's CIFAR-10 experiments (Song et al. 2021, appendix D.2 and its
    code): dense at low noise, ending at step :math:`0.8\,T`. For large :math:`S` the floor
    repeats a few small steps (:math:`T = 1000`: 49 distinct steps for :math:`S = 50`, 96 for
    :math:`S = 100`); a DDIM step from a step to itself is the identity, so the repeats are
    dropped and fewer than :math:`S` steps may come back. ``steps == T`` gives every step here
    too (the paper's :math:`S = T` row).

    Other spacings can be passed to :func:`ddim_sample` as a list.

    Returns:
        ``(S',)`` long, strictly increasing (:math:`S' = S` except for repeats dropped).
    """
    check_int("T", T, minimum=2)
    check_int("steps", steps, minimum=1)
    check_choice("spacing", spacing, ("even", "quadratic"))
    if steps > T:
        raise ValueError(f"steps must be <= T={T} (a sub-sequence of the {T} training steps), got {steps}")
    if steps == T:
        return torch.arange(T)
    if steps == 1:
        return torch.tensor([T - 1])
    if spacing == "quadratic":
        # numpy.linspace's arithmetic, as in the paper's code: the floor of an exact square such as
        # 288 must not land on 287.999...
        top = math.sqrt(0.8 * T)
        step = top / (steps - 1)
        tau = [math.floor((i * step) ** 2) for i in range(steps - 1)] + [math.floor(top**2)]
        return torch.unique_consecutive(torch.tensor(tau))
    return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()


def _resolve_steps(steps: int | Sequence[int] | torch.Tensor, T: int) -> torch.Tensor:
    if isinstance(steps, int) and not isinstance(steps, bool):
        return ddim_timesteps(T, steps)
    if isinstance(steps, torch.Tensor | Sequence) and not isinstance(steps, str):
        tau = torch.as_tensor(steps)
        if tau.is_floating_point() or tau.dtype == torch.bool or tau.ndim != 1 or len(tau) == 0:
            raise ValueError(f"steps must be an int or a non-empty 1-D sequence of ints, got {steps!r}")
        if tau.min() < 0 or tau.max() >= T or not (tau[1:] > tau[:-1]).all():
            raise ValueError(
                f"a custom steps sequence must be strictly increasing ints in [0, {T - 1}], "
                f"got {tau.tolist()}"
            )
        return tau.long()
    raise TypeError(f"steps must be an int or a sequence of ints, got {type(steps).__name__}")


def _check_x(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch (B, ...) with at least 2 dims, got {tuple(x.shape)}")
    return check_finite(name, x)


def _check_model(model: object) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t / T), got {type(model).__name__}")


def _eps(model: EpsModel, x: torch.Tensor, t: int, T: int) -> torch.Tensor:
    eps = model(x, scale_t(t, T).to(x).expand(x.shape[0]))
    if eps.shape != x.shape:
        raise ValueError(f"model output must have the shape of x {tuple(x.shape)}, got {tuple(eps.shape)}")
    return eps


def ddpm_sample(
    model: EpsModel,
    x_T: torch.Tensor,
    betas: torch.Tensor,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""DDPM's ancestral sampler: :math:`T` network calls, fresh noise at every step but the last.

    Runs :func:`ddpm_step` for :math:`t = T-1, \dots, 0` from :math:`x_{T-1} = ` ``x_T``
    (Ho et al. 2020, Algorithm 2, with :math:`\sigma_t^2 = \tilde\beta_t`).

    Args:
        model: ``model(x_t, t / T) -> eps_hat``.
        x_T: the starting noise ``(B, ...)``, usually :math:`\mathcal N(0, I)`.
        betas: ``(T,)``.
        generator: draws the noise added at each step.
        clip_x0: clip :math:`\hat x_0` to :math:`[-c, c]` (data scaled to :math:`[-1, 1]`: ``1.0``).
        return_trajectory: also return ``[x_T, ..., x_0]`` (``T + 1`` tensors).

    Returns:
        Samples with the shape of ``x_T`` (and the trajectory).
    """
    alpha_bar = alpha_bars(betas).tolist()
    x = _check_x(x_T, "x_T")
    _check_model(model)
    _check_generator(generator)
    if clip_x0 is not None:
        check_positive("clip_x0", clip_x0)
    T = len(alpha_bar)
    trajectory = [x]
    for t in range(T - 1, -1, -1):
        with torch.no_grad():
            eps = _eps(model, x, t, T)
        prev = alpha_bar[t - 1] if t > 0 else 1.0
        noise = None
        if t > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = ddpm_step(x, eps, float(betas[t]), alpha_bar[t], prev, noise=noise, clip_x0=clip_x0)
        if return_trajectory:
            trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def ddim_sample(
    model: EpsModel,
    x_T: torch.Tensor,
    alpha_bar: torch.Tensor,
    steps: int | Sequence[int] | torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    clip_x0: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""The DDIM sampler over a sub-sequence :math:`t_1 < \dots < t_S` of the training steps.

    Runs :func:`ddim_step` from :math:`t_S` to :math:`t_{S-1}`, ..., to :math:`t_1`, and
    finally to clean data (:math:`\bar\alpha = 1`): :math:`S` network calls (Song et al. 2021,
    section 4.2). :math:`\eta = 0` is deterministic: the same ``x_T`` always gives the same
    sample. :math:`\eta = 1` over all :math:`T` steps is DDPM's ancestral sampler.

    The first step divides by :math:`\sqrt{\bar\alpha_{t_S}}`. With the cosine schedule
    :math:`\bar\alpha_{T-1} \approx 2 \times 10^{-9}`, so pass ``clip_x0`` or a list of steps that
    ends below :math:`T-1`.

    Args:
        model: ``model(x_t, t / T) -> eps_hat``.
        x_T: the starting noise ``(B, ...)``.
        alpha_bar: ``(T,)``.
        steps: :math:`S` (the steps of :func:`ddim_timesteps`) or an increasing sequence of steps.
        eta: :math:`\eta \ge 0`.
        generator: draws :math:`z` (only in steps with :math:`\sigma > 0`).
        return_trajectory: also return ``[x_T, ..., x_0]`` (``S + 1`` tensors).
        clip_x0: see :func:`ddim_step`.

    Returns:
        Samples with the shape of ``x_T`` (and the trajectory).
    """
    alpha_bar = _check_alpha_bar(alpha_bar)
    eta = _check_eta(eta)
    x = _check_x(x_T, "x_T")
    _check_model(model)
    _check_generator(generator)
    if clip_x0 is not None:
        check_positive("clip_x0", clip_x0)
    T = len(alpha_bar)
    tau = _resolve_steps(steps, T).tolist()
    ab = alpha_bar.tolist()
    trajectory = [x]
    for i in range(len(tau) - 1, -1, -1):
        t = tau[i]
        prev = ab[tau[i - 1]] if i > 0 else 1.0
        with torch.no_grad():
            eps = _eps(model, x, t, T)
        noise = None
        if ddim_sigma(ab[t], prev, eta) > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = ddim_step(x, eps, ab[t], prev, eta=eta, noise=noise, clip_x0=clip_x0)
        if return_trajectory:
            trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def ddim_invert(
    model: EpsModel, x0: torch.Tensor, alpha_bar: torch.Tensor, steps: int | Sequence[int] | torch.Tensor
) -> torch.Tensor:
    r"""Run deterministic DDIM backwards: data :math:`\to` the noise :math:`x_T` that DDIM maps back to it.

    The :math:`\eta = 0` update read in the other direction, from clean data through
    :math:`t_1 < \dots < t_S`:

    .. math::  x_{t_{i+1}} = \sqrt{\bar\alpha_{t_{i+1}}}\, \hat x_0(x_{t_i})
               + \sqrt{1 - \bar\alpha_{t_{i+1}}}\, \epsilon_\theta(x_{t_i}, t_i)

    The network is evaluated at the current point (at :math:`t_1` for the clean start), an
    approximation that is exact as the steps shrink; :func:`ddim_sample` with ``eta=0`` and the
    same ``steps`` maps the result back to about ``x0``.

    Args:
        model: ``model(x_t, t / T) -> eps_hat``.
        x0: data ``(B, ...)``, in the model's scale.
        alpha_bar: ``(T,)``.
        steps: as in :func:`ddim_sample`.

    Returns:
        :math:`x_{t_S}` with the shape of ``x0``.
    """
    alpha_bar = _check_alpha_bar(alpha_bar)
    x = _check_x(x0, "x0")
    _check_model(model)
    T = len(alpha_bar)
    tau = _resolve_steps(steps, T).tolist()
    ab = alpha_bar.tolist()
    current_ab, current_t = 1.0, tau[0]
    for t in tau:
        with torch.no_grad():
            eps = _eps(model, x, current_t, T)
        x0_hat = (x - math.sqrt(1 - current_ab) * eps) / math.sqrt(current_ab)
        x = math.sqrt(ab[t]) * x0_hat + math.sqrt(1 - ab[t]) * eps
        current_ab, current_t = ab[t], t
    return x


def ddim_sweep(
    model: EpsModel,
    x_T: torch.Tensor,
    alpha_bar: torch.Tensor,
    steps: Sequence[int],
    etas: Sequence[float],
    seed: int = 0,
    clip_x0: float | None = None,
    progress: bool = True,
    spacing: str = "even",
) -> dict[tuple[int, float], torch.Tensor]:
    r"""Samples for every number of steps :math:`S` and every :math:`\eta`: the experiment of DDIM's Table 1.

    Every setting starts from the same ``x_T`` and draws its noise from a generator seeded with
    ``seed``, so the settings differ only in :math:`S` and :math:`\eta`.

    Args:
        model, x_T, alpha_bar, clip_x0: as in :func:`ddim_sample`.
        steps: the values of :math:`S`, e.g. ``[10, 20, 50, 100, 1000]``.
        etas: the values of :math:`\eta`, e.g. ``[0.0, 0.5, 1.0]``.
        seed: seeds the noise of the stochastic samplers.
        progress: a ``tqdm`` bar counting network evaluations.
        spacing: how the :math:`S` steps are spread (:func:`ddim_timesteps`).

    Returns:
        ``{(S, eta): samples}``, each with the shape of ``x_T``.
    """
    from tqdm.auto import tqdm

    alpha_bar = _check_alpha_bar(alpha_bar)
    _check_x(x_T, "x_T")
    _check_model(model)
    check_int("seed", seed, minimum=0)
    steps = [check_int("steps", S) for S in steps]
    etas = [_check_eta(eta) for eta in etas]
    if not steps or not etas:
        raise ValueError(f"steps and etas must be non-empty, got steps={steps}, etas={etas}")
    taus = {S: ddim_timesteps(len(alpha_bar), S, spacing) for S in steps}
    samples = {}
    with tqdm(total=sum(len(tau) for tau in taus.values()) * len(etas), desc="DDIM sweep (network calls)",
              disable=not progress, leave=False) as bar:
        for S in steps:
            for eta in etas:
                generator = torch.Generator(device=x_T.device).manual_seed(seed)
                samples[S, eta] = ddim_sample(model, x_T, alpha_bar, taus[S], eta=eta, generator=generator,
                                              clip_x0=clip_x0)
                bar.update(len(taus[S]))
    return samples


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    r"""Spherical interpolation between two batches of noise vectors, as DDIM interpolates codes.

    .. math::  \mathrm{slerp}(a, b; w) = \frac{\sin((1-w)\theta)}{\sin\theta}\, a
               + \frac{\sin(w\theta)}{\sin\theta}\, b,
               \qquad \cos\theta = \frac{a \cdot b}{\lVert a\rVert \lVert b\rVert}

    Gaussian noise in many dimensions lives near a sphere; a straight line between two noise
    vectors passes through shorter vectors that no real noise has, while the arc keeps the norm
    when :math:`\lVert a\rVert = \lVert b\rVert` (Song et al. 2021, section 5.3).

    Args:
        a, b: ``(B, D)``, not parallel.
        w: the weight in :math:`[0, 1]`; 0 gives ``a``, 1 gives ``b``.

    Returns:
        ``(B, D)``.
    """
    _check_same_shape(a=a, b=b)
    if a.ndim != 2:
        raise ValueError(f"a and b must have shape (B, D), got {tuple(a.shape)}")
    check_probability("w", w)
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))  # (B, 1)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if (torch.sin(theta) < 1e-6).any():
        raise ValueError("a and b must not be parallel (the arc between them is undefined)")
    return (torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b) / torch.sin(theta)


# --------------------------------------------------------------------------------------------
# A tiny convolutional denoiser for 8x8 digits, and the data scaling
# --------------------------------------------------------------------------------------------
def digits_to_model(x: torch.Tensor) -> torch.Tensor:
    """scikit-learn digit pixels :math:`[0, 16]` -> the model's scale :math:`[-1, 1]` (``x / 8 - 1``)."""
    _check_pixels("x", x)
    return x / 8 - 1


def _check_pixels(name: str, x: object, finite: bool = True) -> None:
    """Digit pixels (any shape), real (and finite)."""
    check_tensor(name, x, dtype="real", finite=finite)


def model_to_digits(x: torch.Tensor) -> torch.Tensor:
    """The model's scale back to pixels, clamped to :math:`[0, 16]`: ``clamp((x + 1) * 8, 0, 16)``."""
    _check_pixels("x", x, finite=False)  # a diverged sampler's NaN stays visible as NaN
    return ((x + 1) * 8).clamp(0, 16)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(nn.functional.silu(self.norm1(h)))  # (B, C, 8, 8)
        out = out + self.time(emb)[:, :, None, None]  # the step enters every block as a bias
        out = self.conv2(nn.functional.silu(self.norm2(out)))
        return h + out


class DigitsDenoiser(nn.Module):
    r"""A tiny conv net :math:`\epsilon_\theta(x, t)` for 8×8 digits, the shape of DDPM's U-Net without the U.

    ``(B, 64)`` pixels in :math:`[-1, 1]` are reshaped to ``(B, 1, 8, 8)`` plus two channels of
    pixel coordinates (a conv net cannot otherwise tell the centre from the border), lifted to
    ``channels`` by a 3×3 conv, passed through ``blocks`` residual blocks (GroupNorm, SiLU,
    3×3 conv, plus a per-channel bias from the time embedding), and projected back to one
    channel. The step enters as :func:`time_embedding` of :math:`t / T` through a small MLP.

    Shapes: ``x`` ``(B, 64)``, ``t`` ``(B,)`` or a float -> ``(B, 64)``.
    """

    def __init__(self, channels: int = 32, blocks: int = 2, embed_dim: int = 32, groups: int = 8) -> None:
        super().__init__()
        check_int("channels", channels)
        check_int("blocks", blocks)
        check_int("embed_dim", embed_dim, minimum=2)
        check_int("groups", groups)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups})")
        self.embed_dim = embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(embed_dim, channels), nn.SiLU(), nn.Linear(channels, channels)
        )
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(_ResBlock(channels, groups) for _ in range(blocks))
        self.norm_out = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, 1, 3, padding=1)
        grid = torch.linspace(-1, 1, 8)
        coords = torch.stack(torch.meshgrid(grid, grid, indexing="ij"))  # (2, 8, 8)
        self.register_buffer("coords", coords, persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 64:
            raise ValueError(f"x must have shape (B, 64), got {tuple(getattr(x, 'shape', ()))}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        B = x.shape[0]
        if not isinstance(t, torch.Tensor):
            t = torch.full((B,), float(t), dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},) to match x, got {tuple(t.shape)}")
        emb = self.time_mlp(time_embedding(t.to(x.dtype), self.embed_dim))  # (B, C)
        h = torch.cat([x.reshape(B, 1, 8, 8), self.coords.expand(B, 2, 8, 8)], dim=1)  # (B, 3, 8, 8)
        h = self.conv_in(h)  # (B, C, 8, 8)
        for block in self.blocks:
            h = block(h, emb)
        return self.conv_out(nn.functional.silu(self.norm_out(h))).reshape(B, 64)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class DiffusionConfig:
    """A training recipe for an epsilon-predictor (:func:`train_denoiser`)."""

    T: int = 1000  #: number of diffusion steps (DDPM: 1000)
    schedule: str = "linear"  #: "linear" (DDPM) or "cosine" (Nichol & Dhariwal)
    steps: int = 3000  #: optimiser steps
    batch_size: int = 256  #: samples per step
    lr: float = 2e-3  #: Adam's learning rate at the start
    lr_final: float = 0.05  #: cosine decay to lr * lr_final by the last step
    ema: float = 0.0  #: decay of an exponential moving average of the weights (0: none)
    grad_clip: float = 1.0  #: clip the gradient norm to this (diffusion losses are noisy)
    seed: int = 0  #: seeds the batches, the steps t and the noise

    def __post_init__(self) -> None:
        # a negative grad_clip would flip the gradient (clip_grad_norm_ scales by max_norm / norm)
        check_fields(self, {
            "T": (check_int, 2), "schedule": (check_choice, ("linear", "cosine")), "steps": check_int,
            "batch_size": check_int, "lr": check_positive, "lr_final": check_probability,
            "ema": _check_ema, "grad_clip": check_positive, "seed": (check_int, 0),
        })


def _check_ema(name: str, value: object) -> float:
    return check_probability(name, value, allow_one=False)


def _check_config(config: object) -> DiffusionConfig:
    if not isinstance(config, DiffusionConfig):
        raise TypeError(f"config must be a DiffusionConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    return config


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def make_schedule(config: DiffusionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(betas, alpha_bar)``, both ``(T,)`` float64, for ``config.schedule`` and ``config.T``."""
    _check_config(config)
    if config.schedule == "linear":
        betas = linear_beta_schedule(config.T)
    elif config.schedule == "cosine":
        betas = cosine_beta_schedule(config.T)
    else:
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {config.schedule!r}")
    return betas, alpha_bars(betas)


#: A per-batch loss for :func:`train_denoiser`: ``loss_fn(model, index, alpha_bar, generator)``.
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def train_denoiser(
    model: nn.Module,
    data: torch.Tensor,
    config: DiffusionConfig,
    progress: bool = True,
    loss_fn: BatchLoss | None = None,
    desc: str = "training the denoiser",
) -> list[float]:
    r"""Train ``model`` in place to predict the noise (:func:`epsilon_loss`) on ``data``.

    Adam with a cosine learning-rate decay and gradient clipping; minibatches drawn with
    replacement. If ``config.ema > 0`` the exponential moving average of the weights,
    :math:`\bar\theta \leftarrow \text{ema}\, \bar\theta + (1 - \text{ema})\, \theta`, is copied
    into ``model`` at the end (the averaged weights sample better than the last iterate).

    One generator, seeded with ``config.seed``, draws in this order at every step: the rows of
    the batch, then whatever the loss draws (:func:`epsilon_loss`: :math:`t`, then :math:`\epsilon`).

    Args:
        model: ``model(x_t, t / T) -> eps_hat``.
        data: training set ``(N, ...)`` in the model's scale (digits: :func:`digits_to_model`).
        config: the recipe.
        progress: show a ``tqdm`` progress bar.
        loss_fn: another loss on the same loop, e.g. one that also feeds class labels:
            ``loss_fn(model, index, alpha_bar, generator)`` gets the batch's row indices
            ``(B,)`` into ``data`` (and so into any array aligned with it) and returns a scalar.
            ``None``: ``epsilon_loss(model, data[index], alpha_bar, generator)``.
        desc: the progress bar's label.

    Returns:
        The loss at every step.
    """
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.ndim < 2:
        raise ValueError(
            f"data must be a float tensor (N, ...) with N >= 1, got {getattr(data, 'shape', data)}"
        )
    check_finite("data", data)
    _check_config(config)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, index, alpha_bar, generator) or None, "
                        f"got {type(loss_fn).__name__}")
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    from tqdm.auto import trange

    _, alpha_bar = make_schedule(config)
    generator = torch.Generator(device=data.device).manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.steps, eta_min=config.lr * config.lr_final
    )
    average = copy.deepcopy(model).requires_grad_(False) if config.ema > 0 else None
    losses = []
    model.train()
    for _ in trange(config.steps, desc=desc, disable=not progress, leave=False):
        index = torch.randint(0, len(data), (config.batch_size,), generator=generator, device=data.device)
        if loss_fn is None:
            loss = epsilon_loss(model, data[index], alpha_bar, generator=generator)
        else:
            loss = loss_fn(model, index, alpha_bar, generator)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise ValueError(f"loss_fn must return a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if average is not None:
            with torch.no_grad():
                for p_avg, p in zip(average.parameters(), model.parameters(), strict=True):
                    p_avg.lerp_(p, 1 - config.ema)
        losses.append(loss.item())
    if average is not None:
        model.load_state_dict(average.state_dict())
    model.eval()
    return losses
