"""Continuous normalizing flows: a neural ODE and the instantaneous change of variables.

Let :math:`z` flow along a velocity field from the base distribution at :math:`t = 0` to the
data at :math:`t = 1` (the time convention of Chen et al. 2018 and FFJORD; the diffusion chapters
run time the other way, with the data at :math:`t = 0`):

.. math::  \\frac{dz_t}{dt} = v(z_t, t), \\qquad
           \\frac{d \\log p_t(z_t)}{dt} = -\\nabla \\cdot v(z_t, t) .

:class:`ContinuousFlow` integrates both with :func:`odeint`, the divergence computed exactly
(:func:`divergence_exact`, :math:`D` backward passes) or estimated (:func:`divergence_hutchinson`,
one). :class:`VelocityField` is a small network :math:`v_\\theta`; :class:`GaussianMixturePath`
is a field known in closed form, whose density :math:`p_t` is known at every :math:`t`: the
reference that the instantaneous change of variables must reproduce.

Legend (code name -> symbol): ``velocity`` -> :math:`v(z, t)`, ``eps`` -> :math:`\\epsilon`
(Hutchinson's probe), ``a`` -> :math:`\\int_t^1 \\nabla\\cdot v\\, ds`.

References:
    Chen, Rubanova, Bettencourt, Duvenaud (2018), "Neural ordinary differential equations".
    Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud (2019), "FFJORD".
    Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix".
    Lipman, Chen, Ben-Hamu, Nickel, Le (2023), "Flow matching for generative modeling";
    Liu, Gong, Liu (2023), "Flow straight and fast" (the straight-line path of
    :class:`GaussianMixturePath`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from tutorlib.validation import check_choice, check_int, check_positive, check_real, check_tensor

__all__ = [
    "ContinuousFlow",
    "GaussianMixturePath",
    "VelocityField",
    "divergence_exact",
    "divergence_hutchinson",
    "odeint",
]


def _normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over features: (N, D) -> (N,)."""
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# continuous normalizing flows
# --------------------------------------------------------------------------------------------
def _check_field_and_point(f: object, z: object) -> None:
    """``f`` (N, D) computed from ``z`` (N, D) with autograd on; shapes and dtypes only (no NaN scan:
    these run inside every ODE step)."""
    for name, t in (("f", f), ("z", z)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (N, D), got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
        if t.ndim != 2:
            raise ValueError(f"{name} must have shape (N, D), got {tuple(t.shape)}")
    if f.shape != z.shape:
        raise ValueError(f"f must have the shape of z {tuple(z.shape)}, got {tuple(f.shape)}")
    if not z.requires_grad or f.grad_fn is None:
        raise ValueError("f must be computed from z with autograd on (z.requires_grad_(True) first)")


def divergence_exact(f: torch.Tensor, z: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """:math:`\\nabla \\cdot f = \\operatorname{tr}(\\partial f / \\partial z)`, exactly.

    One vector-Jacobian product per dimension (:math:`D` backward passes): fine for
    :math:`D = 2`, slow for images.

    Args:
        f: the velocity ``(N, D)``, computed from ``z`` with autograd on.
        z: ``(N, D)``, with ``requires_grad``.
        create_graph: keep the graph (to train through the divergence).

    Returns:
        ``(N,)``.
    """
    _check_field_and_point(f, z)
    div = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for j in range(z.shape[1]):
        (grad_j,) = torch.autograd.grad(f[:, j].sum(), z, create_graph=create_graph, retain_graph=True)
        div = div + grad_j[:, j]  # ∂f_j / ∂z_j
    return div


def divergence_hutchinson(f: torch.Tensor, z: torch.Tensor, eps: torch.Tensor,
                          create_graph: bool = False) -> torch.Tensor:
    """Hutchinson's unbiased estimate :math:`\\operatorname{tr}(A) \\approx \\epsilon^\\top A \\epsilon`.

    For any :math:`\\epsilon` with :math:`E[\\epsilon\\epsilon^\\top] = I` (Rademacher or
    Gaussian), :math:`E[\\epsilon^\\top A \\epsilon] = \\operatorname{tr}(A)`. With
    :math:`A = \\partial f/\\partial z`, :math:`\\epsilon^\\top A` is *one* vector-Jacobian
    product, whatever :math:`D`.

    Args:
        f, z: as in :func:`divergence_exact`.
        eps: the probe, ``(N, D)``.

    Returns:
        ``(N,)``.
    """
    _check_field_and_point(f, z)
    check_tensor("eps", eps)
    if eps.shape != z.shape:
        raise ValueError(f"eps must have the shape of z {tuple(z.shape)}, got {tuple(eps.shape)}")
    (vjp,) = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=create_graph, retain_graph=True)
    return (vjp * eps).sum(dim=1)


def odeint(func: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, t0: float,
           t1: float, n_steps: int = 8, method: str = "rk4") -> list[torch.Tensor]:
    """Integrate :math:`dy/dt = \\text{func}(t, y)` from ``t0`` to ``t1`` with fixed steps.

    ``"euler"``: :math:`y \\leftarrow y + h\\,k_1`. ``"rk4"``, the classical Runge-Kutta method:
    :math:`k_1 = F(t, y)`, :math:`k_2 = F(t + h/2, y + h k_1/2)`,
    :math:`k_3 = F(t + h/2, y + h k_2/2)`, :math:`k_4 = F(t + h, y + h k_3)`,
    :math:`y \\leftarrow y + h (k_1 + 2k_2 + 2k_3 + k_4)/6`. ``t1 < t0`` integrates backwards.

    Returns:
        The states :math:`[y(t_0), y(t_0 + h), \\dots, y(t_1)]`, ``n_steps + 1`` tensors.
    """
    check_int("n_steps", n_steps, 1)
    check_choice("method", method, ("euler", "rk4"))
    if not callable(func):
        raise TypeError(f"func must be callable as func(t, y), got {type(func).__name__}")
    t0, t1 = check_real("t0", t0), check_real("t1", t1)
    check_tensor("y0", y0)
    h = (t1 - t0) / n_steps
    ys, y, t = [y0], y0, t0
    for i in range(n_steps):
        t = t0 + i * h
        k1 = func(t, y)
        if method == "euler":
            y = y + h * k1
        else:
            k2 = func(t + h / 2, y + h / 2 * k1)
            k3 = func(t + h / 2, y + h / 2 * k2)
            k4 = func(t + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
    return ys


class VelocityField(nn.Module):
    """A time-dependent vector field :math:`v_\\theta(z, t)`: an MLP on :math:`(z, t)`.

    Shapes: ``z`` (N, D), ``t`` a float -> (N, D). ``tanh`` keeps it smooth, which the ODE
    solver and the divergence both like.
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_int("hidden", hidden, 1)
        check_int("depth", depth, 1)
        layers: list[nn.Module] = []
        width = dim + 1
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, z: torch.Tensor, t: float) -> torch.Tensor:
        if (not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.ndim != 2
                or z.shape[1] != self.dim):
            raise ValueError(f"z must be a floating-point tensor (N, {self.dim}), got "
                             f"{getattr(z, 'shape', type(z).__name__)}")
        check_real("t", t)
        tt = torch.full((z.shape[0], 1), float(t), dtype=z.dtype, device=z.device)
        return self.net(torch.cat([z, tt], dim=1))


class ContinuousFlow(nn.Module):
    """A continuous normalizing flow: a neural ODE from the base (:math:`t=0`) to data (:math:`t=1`).

    .. math::  \\frac{dz}{dt} = v_\\theta(z, t), \\qquad
               \\frac{d \\log p_t(z_t)}{dt} = -\\nabla \\cdot v_\\theta(z_t, t)

    (the instantaneous change of variables, Chen et al. 2018, Thm. 1). The log-determinant of
    a discrete flow becomes the integral of a *trace*, which needs no triangular structure:
    :math:`v_\\theta` is any network. To evaluate :math:`\\log p_1(x)`, integrate
    :math:`z` backwards from :math:`z_1 = x` to :math:`z_0` while accumulating
    :math:`a(t) = \\int_t^1 \\nabla\\cdot v\\, ds`:

    .. math::  \\log p_1(x) = \\log p_0(z_0) - \\int_0^1 \\nabla \\cdot v_\\theta(z_t, t)\\, dt .

    Args:
        velocity: a :class:`VelocityField` (or any module ``(z, t) -> (N, D)``).
        n_steps: fixed steps of the integrator.
        method: ``"rk4"`` or ``"euler"`` (see :func:`odeint`).
        trace: ``"exact"`` (:func:`divergence_exact`) or ``"hutchinson"``
            (:func:`divergence_hutchinson` with one Rademacher probe per sample, the same
            along the path, as in FFJORD).
    """

    def __init__(self, velocity: nn.Module, n_steps: int = 8, method: str = "rk4",
                 trace: str = "exact") -> None:
        super().__init__()
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        if method not in ("euler", "rk4"):
            raise ValueError(f"method must be 'euler' or 'rk4', got {method!r}")
        self.velocity = velocity
        self.dim = check_int("velocity.dim", getattr(velocity, "dim", 0), 1)
        self.n_steps = check_int("n_steps", n_steps, 1)
        self.method, self.trace = method, trace

    def _augmented(self, eps: torch.Tensor | None) -> Callable[[float, torch.Tensor], torch.Tensor]:
        """The right-hand side of the ODE for the state :math:`(z, a)`, shape ``(N, D + 1)``."""
        train = torch.is_grad_enabled()

        def rhs(t: float, state: torch.Tensor) -> torch.Tensor:
            z = state[:, : self.dim]
            with torch.enable_grad():
                if not z.requires_grad:
                    z = z.detach().requires_grad_(True)
                v = self.velocity(z, t)
                if eps is None:
                    div = divergence_exact(v, z, create_graph=train)
                else:
                    div = divergence_hutchinson(v, z, eps, create_graph=train)
            if not train:
                v, div = v.detach(), div.detach()
            return torch.cat([v, -div[:, None]], dim=1)  # d(z, a)/dt with a(t) = ∫_t^1 div

        return rhs

    def log_prob(self, x: torch.Tensor, trace: str | None = None, eps: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """:math:`\\log p_1(x)` in nats, shape ``(N,)`` for ``x`` of shape ``(N, D)``.

        Args:
            x: data points.
            trace: ``"exact"`` or ``"hutchinson"``; default: the flow's own ``trace``.
            eps: the Hutchinson probe ``(N, D)``; default: Rademacher :math:`\\pm 1` drawn
                with ``generator``.
        """
        x = check_tensor("x", x, ("N", self.dim))
        trace = trace or self.trace
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        if trace == "exact" and eps is not None:
            raise ValueError("eps is the probe of trace='hutchinson'; the exact trace takes none")
        if trace == "hutchinson":
            if eps is None:
                eps = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x.dtype)  # ±1
            elif not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
                raise ValueError(f"eps must be a tensor of the shape of x {tuple(x.shape)}, "
                                 f"got {getattr(eps, 'shape', type(eps).__name__)}")
        state = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)  # (N, D + 1): z_1 = x, a(1) = 0
        final = odeint(self._augmented(eps), state, 1.0, 0.0, self.n_steps, self.method)[-1]
        z0, a0 = final[:, : self.dim], final[:, self.dim]
        return _normal_log_prob(z0) - a0

    def path(self, z0: torch.Tensor) -> list[torch.Tensor]:
        """The states :math:`z_t` at every solver step from :math:`t = 0` to :math:`t = 1`."""
        z0 = check_tensor("z0", z0, ("N", self.dim))
        with torch.no_grad():
            return odeint(lambda t, z: self.velocity(z, t), z0, 0.0, 1.0, self.n_steps, self.method)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples: :math:`z_0 \\sim N(0, I)` carried to :math:`t = 1`; shape ``(n, D)``."""
        check_int("n", n, 1)
        dtype = next(iter(self.parameters()), next(iter(self.buffers()), torch.empty(0))).dtype
        return self.path(torch.randn(n, self.dim, generator=generator).to(dtype))[-1]


class GaussianMixturePath(nn.Module):
    """The straight-line path from :math:`N(0, I)` to a Gaussian mixture, with its exact velocity.

    Noise :math:`z_0 \\sim N(0, I)` and data :math:`x \\sim \\sum_k w_k N(\\mu_k, s^2 I)` are
    joined by :math:`z_t = (1 - t) z_0 + t x` (rectified flow / conditional flow matching, in
    this module's time: noise at :math:`t = 0`). Given the component :math:`k`, :math:`z_t` is
    Gaussian, :math:`N(t\\mu_k, \\sigma_t^2 I)` with :math:`\\sigma_t^2 = (1 - t)^2 + t^2 s^2`,
    so the density of the noised data is known at every time,

    .. math::  p_t(z) = \\sum_k w_k\\, N(z;\\, t\\mu_k, \\sigma_t^2 I) ,

    and so is a velocity that transports it. Each component moves by the affine field
    :math:`v_k(z, t) = \\mu_k + \\frac{\\dot\\sigma_t}{\\sigma_t}(z - t\\mu_k)`, which carries
    :math:`N(t\\mu_k, \\sigma_t^2 I)` along; the mixture moves by their average weighted with
    the posterior :math:`r_k(z, t) \\propto w_k N(z; t\\mu_k, \\sigma_t^2 I)`,

    .. math::  v(z, t) = \\sum_k r_k(z, t)\\, v_k(z, t) ,

    because then :math:`p_t v = \\sum_k w_k N_k v_k` and the continuity equations of the
    components add up. (This :math:`v` is also :math:`E[x - z_0 \\mid z_t = z]`, the field flow
    matching regresses onto.) :math:`p_0 = N(0, I)` and :math:`p_1` is the mixture, so a
    :class:`ContinuousFlow` of this field must give :meth:`log_prob` at :math:`t = 1` exactly.

    Args:
        means: :math:`\\mu_k`, shape ``(K, D)``.
        std: :math:`s > 0`, the components' standard deviation.
        weights: :math:`w_k` ``(K,)``, positive, summing to one; default equal.

    Shapes: ``forward(z (N, D), t) -> (N, D)``; ``log_prob(z (N, D), t) -> (N,)``.
    """

    def __init__(self, means: torch.Tensor, std: float, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        means = check_tensor("means", means, ("K", "D"))
        if means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D) with K, D >= 1, got {tuple(means.shape)}")
        self.std = check_positive("std", std)
        if weights is None:
            weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=means.dtype)
        weights = check_tensor("weights", weights, (means.shape[0],))
        if (weights <= 0).any() or abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to one, got {weights.tolist()}")
        self.register_buffer("means", means.clone())
        self.register_buffer("log_weights", weights.to(means.dtype).log())
        self.dim = means.shape[1]

    def _check(self, z: object, t: object) -> tuple[torch.Tensor, float]:
        z = check_tensor("z", z, ("N", self.dim), finite=False)
        t = check_real("t", t)
        if not -1e-9 <= t <= 1 + 1e-9:  # a solver's last step may overshoot by round-off
            raise ValueError(f"t must be a finite number in [0, 1], got {t}")
        return z, min(max(t, 0.0), 1.0)

    def _scale(self, t: float) -> tuple[float, float]:
        """:math:`\\sigma_t^2` and the rate
        :math:`\\dot\\sigma_t / \\sigma_t = \\tfrac12 \\frac{d}{dt}\\log\\sigma_t^2`."""
        var = (1 - t) ** 2 + (t * self.std) ** 2
        return var, (t * self.std**2 - (1 - t)) / var

    def _log_components(self, z: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``log w_k N(z; t mu_k, var I)`` ``(N, K)`` and the offsets ``z - t mu_k`` ``(N, K, D)``."""
        var, _ = self._scale(t)
        offset = z[:, None, :] - t * self.means.to(z.dtype)[None]  # (N, K, D)
        log_n = -0.5 * (offset**2).sum(-1) / var - 0.5 * self.dim * math.log(2 * math.pi * var)
        return self.log_weights.to(z.dtype)[None] + log_n, offset

    def forward(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """The velocity :math:`v(z, t)`, shape ``(N, D)``."""
        z, t = self._check(z, t)
        log_comp, offset = self._log_components(z, t)
        _, rate = self._scale(t)
        resp = torch.softmax(log_comp, dim=1)  # r_k(z, t), (N, K)
        v_k = self.means.to(z.dtype)[None] + rate * offset  # (N, K, D)
        return (resp[:, :, None] * v_k).sum(1)

    def log_prob(self, z: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        """:math:`\\log p_t(z)` in closed form, shape ``(N,)``."""
        z, t = self._check(z, t)
        return torch.logsumexp(self._log_components(z, t)[0], dim=1)

    def divergence(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """:math:`\\nabla\\cdot v` in closed form, shape ``(N,)``.

        With :math:`g_k = -(z - t\\mu_k)/\\sigma_t^2`, :math:`\\nabla r_k = r_k (g_k - \\bar g)`,
        :math:`\\bar g = \\sum_j r_j g_j`, so
        :math:`\\nabla\\cdot v = D\\,\\dot\\sigma_t/\\sigma_t + \\sum_k r_k (g_k - \\bar g)\\cdot v_k`.
        """
        z, t = self._check(z, t)
        log_comp, offset = self._log_components(z, t)
        var, rate = self._scale(t)
        resp = torch.softmax(log_comp, dim=1)[:, :, None]  # (N, K, 1)
        grad = -offset / var  # g_k, (N, K, D)
        mean_grad = (resp * grad).sum(1, keepdim=True)
        v_k = self.means.to(z.dtype)[None] + rate * offset
        return self.dim * rate + (resp * (grad - mean_grad) * v_k).sum((1, 2))
