r"""tutorlib.rectified_flow: straight paths from noise to data (Liu, Gong & Liu 2023).

The code behind the rectified-flow part of ``book/diffusion_unified.md`` ("Diffusion II").

Take any coupling of noise :math:`X_0 \sim \pi_0` and data :math:`X_1 \sim \pi_1` (to start,
independent pairs) and join each pair by a straight line, :math:`X_t = t X_1 + (1-t) X_0`. The
lines cross, so no ODE can follow them; the **rectified flow** is the ODE whose velocity is
their average direction through each point,

.. math::  \frac{dZ_t}{dt} = v(Z_t, t), \qquad
           v = \arg\min_v \int_0^1 \mathbb E\,\big\lVert (X_1 - X_0) - v(X_t, t)\big\rVert^2 dt,

(:func:`rf_loss`). Its paths do not cross, its marginals at every :math:`t` equal those of
:math:`X_t`, and the new coupling :math:`(Z_0, Z_1)` has lower transport cost. **Reflow** trains
a new flow on the pairs :math:`(Z_0, Z_1)` (:func:`reflow_pairs`); its paths are straighter, as
measured by (:func:`straightness`)

.. math::  S(Z) = \int_0^1 \mathbb E\,\big\lVert (Z_1 - Z_0) - \dot Z_t \big\rVert^2 dt,

which is zero exactly when every path is a straight line walked at constant speed, so that one
Euler step :math:`Z_1 = Z_0 + v(Z_0, 0)` is exact. **Distillation** (:func:`distill_loss`)
fits that single step directly.

In the table of :mod:`tutorlib.edm`, with time reversed (:math:`t_{\rm edm} = 1 - t`), the
straight interpolation is the flow-matching row, and the velocity of independent pairs is a
rescaled denoiser (:func:`velocity_from_denoiser`).

Legend (code name -> symbol): ``z0`` -> :math:`Z_0` (noise), ``z1`` -> :math:`Z_1` (data),
``velocity`` -> :math:`v(x, t)`.

References:
    Liu, Gong, Liu (2023), "Flow straight and fast: learning to generate and transfer data with
    rectified flow", ICLR.
    Lipman, Chen, Ben-Hamu, Nickel, Le (2023), "Flow matching for generative modeling", ICLR.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tutorlib.edm import Denoiser
from tutorlib.validation import check_finite, check_int

__all__ = [
    "distill_loss",
    "reflow_pairs",
    "rf_loss",
    "sample_flow",
    "straightness",
    "velocity_from_denoiser",
]

#: A velocity field: ``v(x (B, d), t (B,)) -> (B, d)``.
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_pairs(z0: object, z1: object) -> tuple[torch.Tensor, torch.Tensor]:
    for name, z in (("z0", z0), ("z1", z1)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, d), got {type(z).__name__}")
        if z.ndim != 2 or z.shape[0] == 0 or not z.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of shape (B, d), got {z.dtype} {tuple(z.shape)}")
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    return z0, z1


def _check_noise(z0: object) -> torch.Tensor:
    """The start of a sampler: checked once, NaN included (the losses run at every training
    step and leave the NaN scan to ``edm.fit``, which checks the data once)."""
    return check_finite("z0", _check_pairs(z0, z0)[0])


def _check_velocity(velocity: object) -> None:
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as v(x, t), got {type(velocity).__name__}")


def rf_loss(velocity: Velocity, z0: torch.Tensor, z1: torch.Tensor,
            generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The rectified-flow (= conditional flow-matching) loss on coupled pairs.

    .. math::  \mathcal L = \mathbb E_{t \sim U(0,1)}\,
               \big\lVert (z_1 - z_0) - v(t z_1 + (1-t) z_0,\ t)\big\rVert^2

    Args:
        velocity: ``v(x (B, d), t (B,))``.
        z0: noise ``(B, d)``; z1: the paired data ``(B, d)`` (independent for the first flow).
        generator: for :math:`t`.

    Returns:
        A scalar: the batch mean of the squared error, summed over dimensions.
    """
    z0, z1 = _check_pairs(z0, z1)
    t = torch.rand(len(z0), generator=generator, dtype=z0.dtype)  # (B,)
    x_t = t[:, None] * z1 + (1 - t[:, None]) * z0
    return ((z1 - z0 - velocity(x_t, t)) ** 2).sum(1).mean()


def sample_flow(velocity: Velocity, z0: torch.Tensor, n_steps: int = 100,
                return_path: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    r"""Euler's method on :math:`dZ/dt = v(Z, t)` from :math:`t = 0` to :math:`1`, :math:`N` equal steps.

    .. math::  Z_{(k+1)/N} = Z_{k/N} + \tfrac1N\, v(Z_{k/N}, k/N)

    Args:
        velocity: ``v(x, t)``.
        z0: starting noise ``(B, d)``.
        n_steps: :math:`N \ge 1` (= network evaluations).
        return_path: also return the :math:`N + 1` iterates.

    Returns:
        :math:`Z_1` ``(B, d)`` (and the path).
    """
    z = _check_noise(z0)
    check_int("n_steps", n_steps)
    _check_velocity(velocity)
    path = [z]
    for k in range(n_steps):
        t = torch.full((len(z),), k / n_steps, dtype=z.dtype)
        with torch.no_grad():
            z = z + velocity(z, t) / n_steps
        path.append(z)
    return (z, path) if return_path else z


def reflow_pairs(velocity: Velocity, z0: torch.Tensor,
                 n_steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The coupling a flow defines: ``(z0, Z_1(z0))``, the training pairs of the next reflow round."""
    return z0, sample_flow(velocity, z0, n_steps)


def straightness(velocity: Velocity, z0: torch.Tensor, n_steps: int = 100) -> float:
    r"""How far the flow's paths are from straight lines.

    .. math::  S = \int_0^1 \mathbb E\,\lVert (Z_1 - Z_0) - v(Z_t, t)\rVert^2\, dt


    Evaluated along the Euler path of :func:`sample_flow` with the rectangle rule (the
    velocity is evaluated at the same :math:`N` points the solver uses):

    .. math::  S \approx \frac1N \sum_{k=0}^{N-1} \frac1B \sum_b
               \big\lVert (Z_1 - Z_0)_b - v(Z_{k/N}, k/N)_b \big\rVert^2.

    :math:`S = 0` if and only if every path is a straight line walked at constant speed.

    Args:
        velocity: ``v(x, t)``.
        z0: starting noise ``(B, d)``.
        n_steps: :math:`N \ge 1`.

    Returns:
        :math:`S` (same units as a squared distance).
    """
    z = _check_noise(z0)
    check_int("n_steps", n_steps)
    _check_velocity(velocity)
    slopes = []
    for k in range(n_steps):
        t = torch.full((len(z),), k / n_steps, dtype=z.dtype)
        with torch.no_grad():
            slope = velocity(z, t)
        slopes.append(slope)
        z = z + slope / n_steps
    displacement = z - z0  # = mean of the slopes
    return torch.stack([((displacement - v) ** 2).sum(1).mean() for v in slopes]).mean().item()


def distill_loss(velocity: Velocity, z0: torch.Tensor, z1: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One-step distillation (Liu et al., Section 2.3): fit the whole jump at :math:`t = 0`.

    .. math::  \mathcal L = \mathbb E\,\big\lVert (z_1 - z_0) - v(z_0, 0) \big\rVert^2

    on pairs of a (re)flow, so that one Euler step :math:`z_0 + v(z_0, 0)` lands on
    :math:`z_1`. ``generator`` is unused; it keeps the signature of :func:`rf_loss` for
    :func:`tutorlib.edm.fit`.
    """
    z0, z1 = _check_pairs(z0, z1)
    t = torch.zeros(len(z0), dtype=z0.dtype)
    return ((z1 - z0 - velocity(z0, t)) ** 2).sum(1).mean()


def velocity_from_denoiser(denoiser: Denoiser) -> Velocity:
    r"""The rectified-flow velocity of independent pairs, from a denoiser of the data.

    :math:`X_t = t X_1 + (1-t) X_0 = t\,(X_1 + \tfrac{1-t}{t} X_0)` is the table's form with
    :math:`s = t`, :math:`\sigma = (1-t)/t`, so :math:`D(X_t/t;\sigma) = \mathbb E[X_1 \mid X_t]`
    and :math:`\mathbb E[X_0 \mid X_t] = (X_t - t D)/(1-t)`. Their difference is

    .. math::  v(x, t) = \mathbb E[X_1 - X_0 \mid X_t = x] = \frac{D(x/t;\ (1-t)/t) - x}{1 - t},
               \qquad 0 < t < 1.

    Returns:
        ``v(x (B, d), t (B,)) -> (B, d)``.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).clamp(1e-6, 1 - 1e-6)[:, None]  # (B, 1): the formula needs 0 < t < 1
        return (denoiser(x / t, ((1 - t) / t)[:, 0]) - x) / (1 - t)

    return velocity
