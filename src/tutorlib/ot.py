r"""tutorlib.ot: optimal transport, exact, entropic and dual (chapter "Optimal transport").

Everything here is checked against POT (``ot.emd2``, ``ot.sinkhorn2``, ``ot.wasserstein_1d``)
and SciPy in ``tests/test_ot.py``; the chapter ``book/optimal_transport.md`` teaches it.

Notation (legend from the chapter's symbols to the names in code):

==================================  =======================  ===============
math                                code                     shape
==================================  =======================  ===============
:math:`a \in \Delta_n`              ``a``, ``x_weights``     ``(n,)``
:math:`b \in \Delta_m`              ``b``, ``y_weights``     ``(m,)``
:math:`M_{ij} = c(x_i, y_j)`        ``M``                    ``(n, m)``
:math:`P` (a transport plan)        ``plan``                 ``(n, m)``
:math:`\varepsilon`                 ``reg``                  scalar
:math:`f, g` (dual potentials)      ``f``, ``g``             ``(n,)``, ``(m,)``
==================================  =======================  ===============

:math:`\Delta_n = \{a \in \mathbb{R}^n_{\ge 0} : \sum_i a_i = 1\}` is the probability simplex.
Functions that accept a batch take leading dimensions ``...`` in front of these shapes.

References:
    Peyré & Cuturi (2019), "Computational Optimal Transport", Foundations and Trends in ML.
    Cuturi (2013), "Sinkhorn distances: lightspeed computation of optimal transport", NeurIPS.
    Feydy et al. (2019), "Interpolating between optimal transport and MMD using Sinkhorn
    divergences", AISTATS.
    Gulrajani et al. (2017), "Improved training of Wasserstein GANs", NeurIPS.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import linprog
from torch import nn

from tutorlib.validation import (
    check_choice,
    check_fields,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
)

__all__ = [
    "ACTIVATIONS",
    "ConvergenceWarning",
    "Critic",
    "CriticConfig",
    "SinkhornResult",
    "c_transform",
    "cost_matrix",
    "critic_estimate",
    "displacement_interpolation",
    "dual_potentials",
    "emd",
    "emd_cost",
    "gaussian_map",
    "gradient_penalty",
    "lipschitz_on_support",
    "sinkhorn",
    "sinkhorn_barycenter",
    "sinkhorn_cost",
    "sinkhorn_divergence",
    "sinkhorn_solve",
    "train_critic",
    "wasserstein_1d",
]


#: A critic: any function from points ``(N, d)`` to values ``(N,)`` (an ``nn.Module`` or a closure).
CriticFn = Callable[[torch.Tensor], torch.Tensor]


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at its iteration limit before reaching its tolerance."""


# --------------------------------------------------------------------------------------------
# argument checks (the public boundary)
# --------------------------------------------------------------------------------------------
def _as_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got a tensor containing inf or nan")
    return x


def _check_critic(critic: object) -> None:
    if not callable(critic):
        raise TypeError(f"critic must be callable, (N, d) -> (N,), got {type(critic).__name__}")


def _sum_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a weight vector may sum: sqrt(machine epsilon) of its dtype."""
    return math.sqrt(torch.finfo(dtype).eps)


def _as_weights(w: object, name: str, size: int, batched: bool = True) -> torch.Tensor:
    """Check a probability vector of length ``size`` (``(..., size)`` if ``batched``)."""
    w = _as_tensor(w, name)
    expected = f"(..., {size})" if batched else f"({size},)"
    if w.ndim == 0 or w.shape[-1] != size or (not batched and w.ndim != 1):
        raise ValueError(f"{name} must have shape {expected} to match the points, got {tuple(w.shape)}")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative, got a minimum of {w.min().item():.3g}")
    total = w.sum(-1)
    bad = (total - 1).abs() > _sum_tolerance(w.dtype)
    if bad.any():
        raise ValueError(
            f"{name} must sum to 1 (a probability vector), got a sum of "
            f"{total[bad].flatten()[0].item():.6g}; divide it by its sum"
        )
    return w


def _check_reg(reg: object) -> float:
    if isinstance(reg, torch.Tensor) and reg.numel() == 1:
        reg = reg.item()
    if isinstance(reg, bool) or not isinstance(reg, int | float):
        raise TypeError(f"reg must be a positive number, got {type(reg).__name__}")
    if not math.isfinite(reg) or reg <= 0:
        raise ValueError(f"reg must be > 0 (the entropic regularisation ε), got {reg}")
    return float(reg)


def _check_problem(
    a: object, b: object, M: object, batched: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a transport problem: ``a`` ``(..., n)``, ``b`` ``(..., m)``, cost ``M`` ``(..., n, m)``."""
    M = _as_tensor(M, "M")
    if M.ndim < 2 or (not batched and M.ndim != 2):
        expected = "(..., n, m)" if batched else "(n, m)"
        raise ValueError(f"M must have shape {expected}, got {tuple(M.shape)}")
    n, m = M.shape[-2:]
    for name, w, size, axis in (("a", a, n, "rows"), ("b", b, m, "columns")):
        w = _as_tensor(w, name)
        if w.ndim == 0 or w.shape[-1] != size or (not batched and w.ndim != 1):
            raise ValueError(
                f"{name} has shape {tuple(w.shape)} but M has {size} {axis}: M must be (len(a), len(b))"
            )
    a = _as_weights(a, "a", n, batched)
    b = _as_weights(b, "b", m, batched)
    if a.dtype != M.dtype or b.dtype != M.dtype:
        raise TypeError(f"a, b and M must share a dtype, got {a.dtype}, {b.dtype} and {M.dtype}")
    return a, b, M


def _as_points(x: object, name: str) -> torch.Tensor:
    x = _as_tensor(x, name)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a point cloud of shape (N, D) with N >= 1, got {tuple(x.shape)}")
    return x


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------------------------
# 1. costs and the one-dimensional closed form
# --------------------------------------------------------------------------------------------
def cost_matrix(x: torch.Tensor, y: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    r"""Ground cost :math:`M_{ij} = \lVert x_i - y_j \rVert_2^p` between two point clouds.

    Args:
        x: points ``(n, d)``; y: points ``(m, d)``.
        p: exponent :math:`p > 0`; ``p=1`` is the Euclidean distance (the cost of :math:`W_1`),
            ``p=2`` the squared distance (of :math:`W_2^2`).

    Returns:
        ``(n, m)`` tensor, differentiable with respect to ``x`` and ``y`` (for ``p=2`` also
        where points coincide).
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got {x.shape[1]} and {y.shape[1]}")
    p = check_positive("p", p)
    diff = x[:, None, :] - y[None, :, :]  # (n, m, d)
    squared = diff.pow(2).sum(-1)  # (n, m)
    if p == 2:
        return squared
    return torch.linalg.vector_norm(diff, dim=-1).pow(p)


def wasserstein_1d(
    x: torch.Tensor,
    y: torch.Tensor,
    p: float = 1.0,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The p-Wasserstein distance between two distributions on the real line, in closed form.

    In one dimension the optimal plan is monotone: the :math:`q`-th quantile of one distribution
    goes to the :math:`q`-th quantile of the other. With :math:`F^{-1}, G^{-1}` the quantile
    functions of :math:`\mu = \sum_i a_i \delta_{x_i}` and :math:`\nu = \sum_j b_j \delta_{y_j}`,

    .. math::  W_p(\mu, \nu) = \Big( \int_0^1 \big|F^{-1}(q) - G^{-1}(q)\big|^p \, dq \Big)^{1/p}.

    Both quantile functions are step functions, so the integral is a finite sum over the
    intervals between the merged cumulative weights (no linear program, :math:`O((n+m)\log(n+m))`).

    Returns the distance :math:`W_p`, not its p-th power (``ot.wasserstein_1d`` returns
    :math:`W_p^p`; ``scipy.stats.wasserstein_distance`` returns :math:`W_1`).

    Args:
        x: support of :math:`\mu`, shape ``(..., n)``; y: support of :math:`\nu`, ``(..., m)``
            with the same leading (batch) shape.
        p: order :math:`p \ge 1`.
        x_weights: :math:`a`, shape ``(n,)``, non-negative, summing to 1; ``None`` for uniform.
        y_weights: :math:`b`, shape ``(m,)``; ``None`` for uniform.

    Returns:
        Tensor of shape ``(...)``: :math:`W_p` for each batch element. Differentiable with respect
        to the positions and the weights.

    References:
        Peyré & Cuturi (2019), "Computational Optimal Transport", Remark 2.30.
    """
    x, y = _as_tensor(x, "x"), _as_tensor(y, "y")
    if x.ndim == 0 or y.ndim == 0 or x.shape[-1] == 0 or y.shape[-1] == 0:
        raise ValueError(
            f"x and y must have shape (..., n) with n >= 1, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"x and y must have the same leading (batch) shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    # p = inf (W_infinity) is not the limit of this formula: refuse it rather than return 1
    p = check_real("p", p, 1.0)
    n, m = x.shape[-1], y.shape[-1]
    a = _uniform(n, x) if x_weights is None else _as_weights(x_weights, "x_weights", n, batched=False)
    b = _uniform(m, y) if y_weights is None else _as_weights(y_weights, "y_weights", m, batched=False)

    xs, ix = torch.sort(x, dim=-1)  # (..., n)
    ys, iy = torch.sort(y, dim=-1)  # (..., m)
    cx = torch.cumsum(a.expand_as(x).gather(-1, ix), dim=-1)  # F at the sorted points, (..., n)
    cy = torch.cumsum(b.expand_as(y).gather(-1, iy), dim=-1)  # G, (..., m)
    qs = torch.sort(torch.cat([cx, cy], dim=-1), dim=-1).values  # breakpoints, (..., n + m)
    dq = torch.diff(qs, dim=-1, prepend=torch.zeros_like(qs[..., :1]))  # interval lengths
    # On the interval (q_{k-1}, q_k] the quantile function of x is the first x whose cumulative
    # weight reaches q_k. Clamping absorbs round-off where the last cumsum is just below 1.
    levels = qs.detach().contiguous()
    qx = xs.gather(-1, torch.searchsorted(cx.detach().contiguous(), levels).clamp_max(n - 1))  # (..., n+m)
    qy = ys.gather(-1, torch.searchsorted(cy.detach().contiguous(), levels).clamp_max(m - 1))  # (..., n+m)
    return (dq * (qx - qy).abs().pow(p)).sum(-1).pow(1.0 / p)


# --------------------------------------------------------------------------------------------
# 2. the exact problem: a linear program
# --------------------------------------------------------------------------------------------
def _solve_lp(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve the Kantorovich LP with HiGHS; return the plan and the dual potentials (float64)."""
    n, m = M.shape
    a64 = a.detach().cpu().double().numpy()
    b64 = b.detach().cpu().double().numpy()
    a64, b64 = a64 / a64.sum(), b64 / b64.sum()  # exactly equal masses, or the LP is infeasible
    ones_m = sparse.csr_matrix(np.ones((1, m)))
    ones_n = sparse.csr_matrix(np.ones((1, n)))
    rows = sparse.kron(sparse.identity(n), ones_m)  # (n, n*m): sum_j P_ij
    cols = sparse.kron(ones_n, sparse.identity(m))  # (m, n*m): sum_i P_ij
    result = linprog(
        M.detach().cpu().double().numpy().ravel(),  # P flattened row-major: index i*m + j
        A_eq=sparse.vstack([rows, cols]).tocsr(),
        b_eq=np.concatenate([a64, b64]),
        bounds=(0, None),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if result.status != 0:  # pragma: no cover - a balanced transport LP is always feasible
        raise RuntimeError(f"the transport linear program failed: {result.message}")
    plan = np.clip(result.x.reshape(n, m), 0.0, None)
    duals = result.eqlin.marginals  # d(cost)/d(b_eq): the Kantorovich potentials
    return plan, duals[:n], duals[n:]


def emd(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    r"""The exact optimal transport plan (Kantorovich's problem) as a linear program.

    .. math::  P^\star \in \arg\min_{P \in U(a, b)} \langle P, M \rangle
               = \sum_{ij} P_{ij} M_{ij},
               \qquad U(a, b) = \{P \ge 0 : P\mathbf{1}_m = a,\; P^\top \mathbf{1}_n = b\}.

    The :math:`nm` unknowns :math:`P_{ij}` have :math:`n + m` equality constraints (the
    marginals) and are non-negative: a linear program, solved here by SciPy's HiGHS
    (``scipy.optimize.linprog(method="highs")``). A vertex of :math:`U(a, b)` has at most
    :math:`n + m - 1` non-zero entries, so the plan is sparse. POT's ``ot.emd`` solves the same
    problem with a network simplex, which is much faster for large problems.

    Args:
        a: source weights ``(n,)``; b: target weights ``(m,)``; each non-negative, summing to 1.
        M: cost matrix ``(n, m)``.

    Returns:
        The plan :math:`P^\star`, shape ``(n, m)``, with the dtype and device of ``M``. It is not
        differentiable (use :func:`emd_cost` for a cost with gradients).

    References:
        Kantorovich (1942); Peyré & Cuturi (2019), "Computational Optimal Transport", §3.1.
    """
    a, b, M = _check_problem(a, b, M, batched=False)
    plan, _, _ = _solve_lp(a, b, M)
    return torch.as_tensor(plan, dtype=M.dtype, device=M.device)


def emd_cost(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    r"""The optimal cost :math:`\min_{P \in U(a,b)} \langle P, M \rangle` (as ``ot.emd2``).

    Differentiable with respect to ``M``: the gradient is the optimal plan (Danskin's theorem:
    the minimum of linear functions of :math:`M` has the minimiser's plan as a (sub)gradient).
    For a point cloud, ``emd_cost(a, b, cost_matrix(x, y, p=1))`` is :math:`W_1` with gradients
    to ``x`` and ``y``.

    Returns:
        0-dim tensor.
    """
    plan = emd(a, b, M)
    return (plan * M).sum()


def dual_potentials(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float | None = None, **sinkhorn_kwargs: object
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Kantorovich potentials :math:`(f, g)`: the solution of the dual problem.

    Exact (``reg=None``), from the linear program's dual variables:

    .. math::  \max_{f \in \mathbb{R}^n, g \in \mathbb{R}^m} \langle a, f \rangle + \langle b, g \rangle
               \quad \text{s.t.} \quad f_i + g_j \le M_{ij}.

    At the optimum the value equals the primal cost (strong duality), and
    :math:`f_i + g_j = M_{ij}` wherever the optimal plan moves mass (complementary slackness).
    The potentials are not unique: at least :math:`(f + c, g - c)` is also optimal.

    Entropic (``reg=ε > 0``): the potentials of :func:`sinkhorn_solve`, which solve the smooth
    dual :math:`\max \langle a, f \rangle + \langle b, g \rangle
    - \varepsilon \langle a \otimes b, e^{(f \oplus g - M)/\varepsilon} - 1 \rangle`.

    Args:
        a: ``(n,)``; b: ``(m,)``; M: ``(n, m)`` (batched shapes as in :func:`sinkhorn` when
            ``reg`` is given).
        reg: ``None`` for the exact LP potentials, or :math:`\varepsilon > 0`.
        **sinkhorn_kwargs: ``max_iter``, ``tol`` for the entropic case.

    Returns:
        ``f`` of shape ``(n,)`` and ``g`` of shape ``(m,)``, dtype and device of ``M``.
    """
    if reg is not None:
        result = sinkhorn_solve(a, b, M, reg, **sinkhorn_kwargs)
        return result.f, result.g
    a, b, M = _check_problem(a, b, M, batched=False)
    _, f, g = _solve_lp(a, b, M)
    as_m = {"dtype": M.dtype, "device": M.device}
    return torch.as_tensor(f, **as_m), torch.as_tensor(g, **as_m)


# --------------------------------------------------------------------------------------------
# 3. the entropic problem: Sinkhorn in the log domain
# --------------------------------------------------------------------------------------------
@dataclass
class SinkhornResult:
    """The outcome of :func:`sinkhorn_solve`. Shapes for a batch ``...`` of problems."""

    plan: torch.Tensor  #: :math:`P_\varepsilon`, shape (..., n, m)
    f: torch.Tensor  #: dual potential on the source, (..., n)
    g: torch.Tensor  #: dual potential on the target, (..., m)
    cost: torch.Tensor  #: transport cost :math:`\langle P_\varepsilon, M\rangle` (= ``ot.sinkhorn2``), (...)
    #: entropic cost :math:`\mathrm{OT}_\varepsilon = \langle a, f\rangle + \langle b, g\rangle`, (...)
    value: torch.Tensor
    n_iter: int  #: iterations run
    converged: bool  #: marginal error below the tolerance before ``max_iter``
    #: L1 marginal error after each iteration (the largest over the batch)
    errors: list[float] = field(default_factory=list)


def _softmin(log_w: torch.Tensor, h: torch.Tensor, M: torch.Tensor, reg: float, dim: int) -> torch.Tensor:
    r""":math:`-\varepsilon \log \sum_k w_k e^{(h_k - M_{\cdot k})/\varepsilon}`, reduced over ``dim`` of M.

    ``log_w`` and ``h`` are indexed along ``dim`` of ``M`` (``dim=-1``: over columns j; ``dim=-2``:
    over rows i). Computed with logsumexp, so it never overflows whatever ``reg`` is.
    """
    if dim == -1:
        z = log_w[..., None, :] + (h[..., None, :] - M) / reg  # (..., n, m)
    else:
        z = log_w[..., :, None] + (h[..., :, None] - M) / reg  # (..., n, m)
    return -reg * torch.logsumexp(z, dim=dim)


def sinkhorn_solve(
    a: torch.Tensor,
    b: torch.Tensor,
    M: torch.Tensor,
    reg: float,
    max_iter: int = 1000,
    tol: float = 1e-9,
) -> SinkhornResult:
    r"""Entropic optimal transport by Sinkhorn's algorithm, in the log domain.

    Solves

    .. math::  \mathrm{OT}_\varepsilon(a, b) = \min_{P \in U(a, b)} \langle P, M \rangle
               + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b),
               \qquad \mathrm{KL}(P\|Q) = \sum_{ij} P_{ij} \log \frac{P_{ij}}{Q_{ij}}.

    (Since the marginals are fixed, this has the same minimiser as Cuturi's
    :math:`\langle P, M\rangle - \varepsilon H(P)` used by POT.) The minimiser has the form
    :math:`P_{ij} = a_i b_j \exp\big((f_i + g_j - M_{ij})/\varepsilon\big)`, and Sinkhorn
    alternately picks :math:`f` to fix the row sums and :math:`g` to fix the column sums:

    .. math::
        f_i &\leftarrow -\varepsilon \log \textstyle\sum_j b_j\, e^{(g_j - M_{ij})/\varepsilon}, \\
        g_j &\leftarrow -\varepsilon \log \textstyle\sum_i a_i\, e^{(f_i - M_{ij})/\varepsilon}.

    These are the multiplicative updates :math:`u \leftarrow a / (K v)`, :math:`v \leftarrow b / (K^\top u)`
    with :math:`K = e^{-M/\varepsilon}`, :math:`u = a\,e^{f/\varepsilon}`, written with
    logsumexp: :math:`K` underflows to 0 in float64 once :math:`M/\varepsilon > 745`, the
    potentials never do.

    Stopping: after each iteration the column sums are exact; the row sums of the current plan
    are :math:`a_i e^{(f_i - f_i^{\text{new}})/\varepsilon}`, which the next :math:`f`-update gives
    for free. The solver stops when their L1 error :math:`\lVert P\mathbf 1 - a\rVert_1` is at most
    ``tol`` (in float32 at most ``50 * eps`` is asked for: round-off makes smaller errors
    unreachable), and warns with :class:`ConvergenceWarning` if ``max_iter`` comes first.

    Gradients: the iterations run without autograd; then one more :math:`(f, g)` update is
    made with autograd on, from the converged potentials. By the envelope theorem this gives
    the exact gradient of ``value`` (:math:`\partial \mathrm{OT}_\varepsilon / \partial M = P`),
    and of everything else the gradient of that last update, at the memory cost of one
    iteration instead of ``n_iter``.

    Args:
        a: source weights ``(n,)`` or ``(..., n)``; b: target weights ``(m,)`` or ``(..., m)``;
            non-negative, summing to 1.
        M: cost ``(..., n, m)``; leading dimensions of ``a``, ``b``, ``M`` broadcast, and each
            problem of the batch is solved at once.
        reg: :math:`\varepsilon > 0`, in the units of ``M``.
        max_iter: most iterations (one iteration updates :math:`f` then :math:`g`).
        tol: tolerance on the L1 marginal error (the largest over the batch).

    Returns:
        :class:`SinkhornResult` with the plan, potentials, costs and the error history.

    References:
        Cuturi (2013), "Sinkhorn distances"; Peyré & Cuturi (2019), §4.2 and Remark 4.23
        (log-domain updates); Schmitzer (2019), "Stabilized sparse scaling algorithms".
    """
    a, b, M = _check_problem(a, b, M, batched=True)
    reg = _check_reg(reg)
    max_iter = check_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    tol_used = max(tol, 50 * torch.finfo(M.dtype).eps)  # below this, round-off dominates

    try:
        batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], M.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions of a {tuple(a.shape)}, b {tuple(b.shape)} and M {tuple(M.shape)} "
            "do not broadcast: use a (..., n), b (..., m), M (..., n, m) with matching leading dimensions"
        ) from None
    n, m = M.shape[-2:]
    log_a = torch.log(a).expand(*batch, n)  # log 0 = -inf: empty bins get no mass
    log_b = torch.log(b).expand(*batch, m)
    M = M.expand(*batch, n, m)

    errors: list[float] = []
    converged = False
    with torch.no_grad():
        f = torch.zeros(*batch, n, dtype=M.dtype, device=M.device)
        g = torch.zeros(*batch, m, dtype=M.dtype, device=M.device)
        la, lb, Md = log_a.detach(), log_b.detach(), M.detach()
        for _ in range(max_iter):
            f_new = _softmin(lb, g, Md, reg, dim=-1)
            # row sums of the plan (f, g) are a * exp((f - f_new)/reg): its marginal error
            err = (torch.exp(la + (f - f_new) / reg) - la.exp()).abs().sum(-1).max().item()
            errors.append(err)
            if err <= tol_used:
                converged = True
                break
            f = f_new
            g = _softmin(la, f, Md, reg, dim=-2)
    if not converged:
        warnings.warn(
            f"sinkhorn stopped after max_iter={max_iter} iterations with marginal error {errors[-1]:.2e} "
            f"> tol={tol_used:.1e}. Raise max_iter (small reg converges slowly: about 1/reg "
            f"iterations), raise reg (now {reg:g}), or loosen tol.",
            ConvergenceWarning,
            stacklevel=2,
        )

    # one differentiable update from the converged potentials (see "Gradients" above)
    f = _softmin(log_b, g.detach(), M, reg, dim=-1)
    g = _softmin(log_a, f, M, reg, dim=-2)
    log_plan = log_a[..., :, None] + log_b[..., None, :] + (f[..., :, None] + g[..., None, :] - M) / reg
    plan = torch.exp(log_plan)  # (..., n, m)
    value = (a * f).sum(-1) + (b * g).sum(-1)  # the dual objective; its last term is 0 here
    cost = (plan * M).sum((-2, -1))
    return SinkhornResult(
        plan=plan, f=f, g=g, cost=cost, value=value, n_iter=len(errors), converged=converged, errors=errors
    )


def sinkhorn(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float, max_iter: int = 1000, tol: float = 1e-9
) -> torch.Tensor:
    r"""The entropic optimal plan :math:`P_\varepsilon` (as ``ot.sinkhorn``), computed in the log domain.

    See :func:`sinkhorn_solve` for the math, the stopping rule and the gradients.

    Returns:
        ``(..., n, m)`` plan whose column sums are ``b`` and row sums ``a`` within ``tol``.
    """
    return sinkhorn_solve(a, b, M, reg, max_iter=max_iter, tol=tol).plan


def sinkhorn_cost(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float, max_iter: int = 1000, tol: float = 1e-9
) -> torch.Tensor:
    r"""The transport cost of the entropic plan :math:`\langle P_\varepsilon, M\rangle` (``ot.sinkhorn2``).

    It is at least the exact cost and, for uniform weights of sizes :math:`n, m`, at most
    :math:`\varepsilon \log \min(n, m)` above it.

    Returns:
        ``(...)`` tensor.
    """
    return sinkhorn_solve(a, b, M, reg, max_iter=max_iter, tol=tol).cost


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    reg: float,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    p: float = 2.0,
    max_iter: int = 1000,
    tol: float = 1e-9,
) -> torch.Tensor:
    r"""The debiased Sinkhorn divergence between two point clouds.

    .. math::  S_\varepsilon(\mu, \nu) = \mathrm{OT}_\varepsilon(\mu, \nu)
               - \tfrac12 \mathrm{OT}_\varepsilon(\mu, \mu) - \tfrac12 \mathrm{OT}_\varepsilon(\nu, \nu),

    with :math:`\mathrm{OT}_\varepsilon` the entropic cost (transport plus
    :math:`\varepsilon\,\mathrm{KL}`, the ``value`` of :func:`sinkhorn_solve`) for the cost
    :math:`\lVert x - y\rVert^p`. :math:`\mathrm{OT}_\varepsilon(\mu, \mu) > 0`: the blur biases
    it. Subtracting the self-terms removes the bias: :math:`S_\varepsilon(\mu, \mu) = 0`,
    :math:`S_\varepsilon \ge 0`, and :math:`S_\varepsilon \to` the exact cost as
    :math:`\varepsilon \to 0`. (POT's ``empirical_sinkhorn_divergence`` leaves out the entropic
    terms, Genevay et al. 2018, for which non-negativity is not guaranteed.)

    Args:
        x: ``(n, d)``; y: ``(m, d)``; reg: :math:`\varepsilon > 0`.
        x_weights, y_weights: ``(n,)``, ``(m,)`` probability vectors; ``None`` for uniform.
        p: cost exponent (2: squared Euclidean).
        max_iter: most Sinkhorn iterations for each of the three entropic costs.
        tol: tolerance on the L1 marginal error of each of the three solves
            (see :func:`sinkhorn_solve`).

    Returns:
        0-dim tensor, differentiable with respect to ``x`` and ``y``.

    References:
        Feydy et al. (2019), "Interpolating between optimal transport and MMD using Sinkhorn
        divergences", AISTATS; Genevay, Peyré & Cuturi (2018), AISTATS.
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    n, m = x.shape[0], y.shape[0]
    a = _uniform(n, x) if x_weights is None else _as_weights(x_weights, "x_weights", n, batched=False)
    b = _uniform(m, y) if y_weights is None else _as_weights(y_weights, "y_weights", m, batched=False)
    options = {"reg": reg, "max_iter": max_iter, "tol": tol}
    ab = sinkhorn_solve(a, b, cost_matrix(x, y, p), **options).value
    aa = sinkhorn_solve(a, a, cost_matrix(x, x, p), **options).value
    bb = sinkhorn_solve(b, b, cost_matrix(y, y, p), **options).value
    return ab - 0.5 * (aa + bb)


def sinkhorn_barycenter(
    hists: torch.Tensor,
    M: torch.Tensor,
    reg: float,
    weights: torch.Tensor | None = None,
    max_iter: int = 10_000,
    tol: float = 1e-9,
) -> torch.Tensor:
    r"""The entropic Wasserstein barycenter of ``K`` histograms on one grid (iterative Bregman projections).

    .. math::  p = \arg\min_{p \in \Delta_n} \sum_k w_k \min_{P_k \in U(a_k, p)}
               \langle P_k, M\rangle - \varepsilon H(P_k)

    Each plan has the form :math:`P_k = \mathrm{diag}(u_k)\, e^{-M/\varepsilon}\, \mathrm{diag}(v_k)`.
    One iteration fixes the first marginals, :math:`u_k = a_k / (K v_k)`, then replaces the
    second marginals :math:`q_k = v_k \odot K^\top u_k` by their weighted geometric mean
    :math:`p = \prod_k q_k^{w_k}` (:math:`v_k \leftarrow v_k \odot p / q_k`). Everything is
    done on logarithms (log-sum-exp), like :func:`sinkhorn_solve`. It stops when every
    :math:`q_k` is within ``tol`` of :math:`p` in L1, and warns with :class:`ConvergenceWarning`
    if ``max_iter`` comes first. Same iterations as POT's ``ot.bregman.barycenter``.

    Args:
        hists: ``(K, n)``, one probability vector per row: the :math:`a_k`.
        M: ``(n, n)`` cost between the grid points.
        reg: :math:`\varepsilon > 0`, in the units of ``M``.
        weights: ``(K,)`` barycentric weights :math:`w` (a probability vector); ``None``
            for uniform.
        max_iter: most iterations; tol: L1 tolerance on the disagreement of the :math:`q_k`.

    Returns:
        The barycenter :math:`p`, ``(n,)``.

    References:
        Agueh & Carlier (2011), "Barycenters in the Wasserstein space", SIAM J. Math. Anal.;
        Benamou, Carlier, Cuturi, Nenna & Peyré (2015), "Iterative Bregman projections for
        regularized transportation problems", SIAM J. Sci. Comput.
    """
    hists = _as_tensor(hists, "hists")
    if hists.ndim != 2 or hists.shape[0] < 1:
        raise ValueError(f"hists must have shape (K, n) with K >= 1 histograms, got {tuple(hists.shape)}")
    k, n = hists.shape
    M = _as_tensor(M, "M")
    if M.shape != (n, n):
        raise ValueError(f"M must have shape (n, n) = ({n}, {n}) to match hists, got {tuple(M.shape)}")
    hists = _as_weights(hists, "hists", n)
    lam = (torch.full((k,), 1 / k, dtype=hists.dtype) if weights is None
           else _as_weights(weights, "weights", k, batched=False))
    if hists.dtype != M.dtype or lam.dtype != M.dtype:
        raise TypeError(f"hists, weights and M must share a dtype, got {hists.dtype}, {lam.dtype}, {M.dtype}")
    reg = _check_reg(reg)
    check_int("max_iter", max_iter)
    tol = check_nonnegative("tol", tol)
    tol_used = max(tol, 50 * torch.finfo(M.dtype).eps)

    log_kernel = -M / reg  # (n, n)
    log_a = torch.log(hists)  # (K, n); log 0 = -inf: empty bins send no mass
    log_v = torch.zeros_like(log_a)
    converged, err = False, float("inf")
    with torch.no_grad():
        for _ in range(max_iter):
            log_u = log_a - torch.logsumexp(log_kernel[None] + log_v[:, None, :], dim=-1)  # a / (K v)
            log_q = log_v + torch.logsumexp(log_kernel[None] + log_u[:, :, None], dim=-2)  # v * K^T u
            log_p = (lam[:, None] * log_q).sum(0)  # weighted geometric mean, (n,)
            err = (log_q.exp() - log_p.exp()[None]).abs().sum(-1).max().item()
            if err <= tol_used:
                converged = True
                break
            log_v = log_v + log_p[None] - log_q
    if not converged:
        warnings.warn(
            f"sinkhorn_barycenter stopped after max_iter={max_iter} iterations with error {err:.2e} > "
            f"tol={tol_used:.1e}. Raise max_iter (small reg converges slowly), raise reg (now {reg:g}), "
            "or loosen tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return log_p.exp()


# --------------------------------------------------------------------------------------------
# 4. displacement interpolation (McCann)
# --------------------------------------------------------------------------------------------
def displacement_interpolation(
    x: torch.Tensor, y: torch.Tensor, plan: torch.Tensor, t: float, threshold: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""McCann's interpolation: move every bit of mass along a straight line, by the plan.

    .. math::  \mu_t = \sum_{ij} P_{ij}\, \delta_{(1-t)\,x_i + t\,y_j}, \qquad t \in [0, 1].

    With an optimal plan for the squared Euclidean cost, :math:`\mu_t` is the geodesic from
    :math:`\mu_0 = \mu` to :math:`\mu_1 = \nu` in :math:`W_2`:
    :math:`W_2(\mu_s, \mu_t) = |t - s|\, W_2(\mu, \nu)`.

    Args:
        x: ``(n, d)``; y: ``(m, d)``; plan: ``(n, m)`` with the masses to move.
        t: time in [0, 1].
        threshold: entries of the plan at or below it are dropped (empty particles).

    Returns:
        ``points`` ``(K, d)`` and their ``weights`` ``(K,)``, one per non-zero entry of the plan.
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    plan = _as_tensor(plan, "plan")
    if plan.shape != (x.shape[0], y.shape[0]):
        raise ValueError(
            f"plan must have shape (len(x), len(y)) = ({x.shape[0]}, {y.shape[0]}), got {tuple(plan.shape)}"
        )
    t = check_real("t", t, 0.0, 1.0)
    i, j = torch.nonzero(plan > threshold, as_tuple=True)
    return (1 - t) * x[i] + t * y[j], plan[i, j]


def _as_mean_cov(mean: object, cov: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    for label, value in ((f"mean_{name}", mean), (f"cov_{name}", cov)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{label} must be a floating-point torch.Tensor, got {type(value).__name__}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{label} must be finite (no NaN or inf)")
    d = mean.shape[0] if mean.ndim == 1 else -1  # type: ignore[union-attr]
    if d < 1:
        raise ValueError(f"mean_{name} must have shape (d,) with d >= 1, got {tuple(mean.shape)}")  # type: ignore
    if cov.shape != (d, d):  # type: ignore[union-attr]
        raise ValueError(f"cov_{name} must have shape (d, d) = ({d}, {d}), got {tuple(cov.shape)}")  # type: ignore
    cov = cov.double()  # type: ignore[union-attr]
    if not torch.allclose(cov, cov.T, rtol=1e-8, atol=1e-10):
        raise ValueError(f"cov_{name} must be symmetric")
    if torch.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"cov_{name} must be positive definite (a non-degenerate Gaussian)")
    return mean.double(), cov  # type: ignore[union-attr]


def _sqrtm_spd(S: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive (semi-)definite matrix, by eigh."""
    w, V = torch.linalg.eigh(S)
    return (V * w.clamp_min(0).sqrt()) @ V.T


def gaussian_map(
    mean_x: torch.Tensor, cov_x: torch.Tensor, mean_y: torch.Tensor, cov_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Brenier's optimal map for :math:`W_2` between two Gaussians: :math:`T(x) = A x + b`.

    .. math::  A = \Sigma_x^{-1/2} \big(\Sigma_x^{1/2} \Sigma_y \Sigma_x^{1/2}\big)^{1/2} \Sigma_x^{-1/2},
               \qquad b = m_y - A\, m_x.

    :math:`A` is symmetric positive definite, so :math:`T = \nabla\varphi` with the convex
    :math:`\varphi(x) = \tfrac12 x^\top A x + b^\top x` (Brenier's theorem), and
    :math:`A \Sigma_x A = \Sigma_y`: :math:`T` pushes :math:`\mathcal N(m_x, \Sigma_x)` onto
    :math:`\mathcal N(m_y, \Sigma_y)`. Its cost is
    :math:`W_2^2 = \lVert m_x - m_y\rVert^2 + \operatorname{tr}\big(\Sigma_x + \Sigma_y
    - 2(\Sigma_x^{1/2}\Sigma_y\Sigma_x^{1/2})^{1/2}\big)`, the Fréchet distance.

    Args:
        mean_x: ``(d,)``; cov_x: ``(d, d)`` symmetric positive definite; mean_y, cov_y: the same
            for the target.

    Returns:
        ``A`` ``(d, d)`` and ``b`` ``(d,)`` in float64; map points with ``x @ A.T + b`` (POT's
        ``ot.gaussian.bures_wasserstein_mapping`` returns the same pair).

    References:
        Brenier (1991), "Polar factorization and monotone rearrangement of vector-valued
        functions"; Peyré & Cuturi (2019), Remark 2.31.
    """
    mean_x, cov_x = _as_mean_cov(mean_x, cov_x, "x")
    mean_y, cov_y = _as_mean_cov(mean_y, cov_y, "y")
    if mean_x.shape != mean_y.shape:
        raise ValueError(f"mean_x and mean_y must have the same dimension, got {tuple(mean_x.shape)} "
                         f"and {tuple(mean_y.shape)}")
    root = _sqrtm_spd(cov_x)  # Σx^{1/2}
    w, V = torch.linalg.eigh(cov_x)
    inv_root = (V / w.sqrt()) @ V.T  # Σx^{-1/2}
    A = inv_root @ _sqrtm_spd(root @ cov_y @ root) @ inv_root
    A = 0.5 * (A + A.T)  # symmetric up to round-off
    return A, mean_y - A @ mean_x


# --------------------------------------------------------------------------------------------
# 5. the dual view: a 1-Lipschitz critic (Kantorovich–Rubinstein, WGAN-GP)
# --------------------------------------------------------------------------------------------
@dataclass
class CriticConfig:
    """Hyperparameters of :func:`train_critic` (defaults from WGAN-GP where they apply)."""

    hidden: int = 64  #: width of the two hidden (SiLU) layers of the :class:`Critic`
    steps: int = 500  #: full-batch Adam steps (enough for a few hundred 2-D points)
    lr: float = 1e-3  #: Adam learning rate
    betas: tuple[float, float] = (0.5, 0.9)  #: Adam betas of Gulrajani et al.'s toy script (Alg. 1: (0, 0.9))
    gp_weight: float = 10.0  #: λ, the weight of the gradient penalty (Gulrajani et al. 2017)

    def __post_init__(self) -> None:
        check_fields(self, {"hidden": check_int, "steps": check_int, "lr": check_positive,
                            "gp_weight": check_nonnegative, "betas": _check_betas})


def _check_betas(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be two numbers in [0, 1), got {value!r}")
    return tuple(check_real(f"{name} entries", b, 0.0, 1.0, high_open=True) for b in value)  # type: ignore


#: The hidden-layer activations :class:`Critic` offers.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}


class Critic(nn.Module):
    r"""An MLP critic or GAN discriminator :math:`f_\theta: \mathbb{R}^d \to \mathbb{R}`; ``(N, d) -> (N,)``.

    ``layers`` hidden layers of width ``hidden``, each a linear map and then ``activation``, and a
    linear output (a score for a WGAN critic, a logit for a classic discriminator). The one MLP
    critic of tutorlib: this chapter's :func:`train_critic` uses two SiLU layers (smooth, so the
    gradient penalty sees a smooth gradient), the GAN chapter uses ReLU layers as in Gulrajani et
    al.'s toy experiments (``tutorlib.gan.Critic`` is this class).

    Args:
        in_dim: :math:`d`, the dimension of the points.
        hidden: width of each hidden layer.
        layers: number of hidden layers (>= 1).
        activation: one of :data:`ACTIVATIONS` (``"silu"``, ``"relu"``, ``"leaky_relu"``).
    """

    def __init__(self, in_dim: int = 2, hidden: int = 64, layers: int = 2, activation: str = "silu") -> None:
        super().__init__()
        self.in_dim = check_int("in_dim", in_dim)
        check_int("hidden", hidden)
        check_int("layers", layers)
        act = ACTIVATIONS[check_choice("activation", activation, tuple(ACTIVATIONS))]
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), act()]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2
                or x.shape[1] != self.in_dim):
            raise ValueError(f"x must be a floating-point tensor (N, {self.in_dim}), got "
                             f"{getattr(x, 'shape', type(x).__name__)} {getattr(x, 'dtype', '')}")
        return self.net(x).squeeze(-1)  # (N, 1) -> (N,)


def critic_estimate(critic: CriticFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The Kantorovich–Rubinstein objective :math:`\frac1n\sum_i f(x_i) - \frac1m\sum_j f(y_j)`.

    For a 1-Lipschitz :math:`f` it is at most :math:`W_1(\mu, \nu)`, with equality at the best
    :math:`f` (Kantorovich–Rubinstein duality).
    """
    _check_critic(critic)
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got {x.shape[1]} and {y.shape[1]}")
    return critic(x).mean() - critic(y).mean()


def gradient_penalty(
    critic: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""WGAN-GP's soft Lipschitz constraint :math:`\mathbb{E}\,(\lVert\nabla f(\hat x)\rVert_2 - 1)^2`.

    :math:`\hat x = t\,x_i + (1-t)\,y_i` with :math:`t \sim U[0, 1]`, on random pairs: the optimal
    critic has gradient norm 1 on the segments along which the optimal plan moves mass.

    Args:
        critic: maps ``(N, d)`` to ``(N,)``.
        x: ``(n, d)``; y: ``(n, d)`` (the same number of points; pair them in any order).

    Returns:
        0-dim tensor, differentiable with respect to the critic's parameters.

    References:
        Gulrajani et al. (2017), "Improved training of Wasserstein GANs", Algorithm 1.
    """
    _check_critic(critic)
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape to be paired, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    t = torch.rand(x.shape[0], 1, generator=generator, dtype=x.dtype).to(x.device)
    x_hat = (t * x + (1 - t) * y).requires_grad_(True)  # (N, d)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # (N, d)
    return (grad.norm(dim=1) - 1).pow(2).mean()


def train_critic(
    x: torch.Tensor,
    y: torch.Tensor,
    config: CriticConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> tuple[Critic, list[float]]:
    r"""Train a critic to maximise :func:`critic_estimate` under the gradient penalty.

    Loss (minimised): :math:`-\big(\overline{f(x)} - \overline{f(y)}\big) + \lambda\,\mathrm{GP}`.
    This is the critic step of WGAN-GP with the generator frozen. The penalty is soft, so at
    the optimum its estimate is about :math:`W_1 (1 + W_1 / (2\lambda))` between the two samples
    (the optimal critic scaled by :math:`\kappa` minimises
    :math:`-\kappa W_1 + \lambda (\kappa - 1)^2` at :math:`\kappa = 1 + W_1/(2\lambda)`).

    Args:
        x: ``(n, d)``; y: ``(n, d)``.
        config: :class:`CriticConfig` (defaults if ``None``).
        generator: for the penalty's random points (the initialisation uses torch's global
            generator: seed it with ``tutorlib.seed_everything``).
        progress: show a tqdm progress bar.

    Returns:
        The trained critic (eval mode) and the estimate after every step.
    """
    from tqdm.auto import trange

    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    config = config or CriticConfig()
    if not isinstance(config, CriticConfig):
        raise TypeError(f"config must be a CriticConfig or None, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction
    critic = Critic(x.shape[1], config.hidden, layers=2, activation="silu").to(device=x.device, dtype=x.dtype)
    optimizer = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.betas)
    history = []
    for _ in trange(config.steps, desc="critic", disable=not progress, leave=False):
        estimate = critic_estimate(critic, x, y)
        loss = -estimate + config.gp_weight * gradient_penalty(critic, x, y, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(estimate.item())
    return critic.eval(), history


def c_transform(z: torch.Tensor, y: torch.Tensor, g: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    r"""The c-transform of a potential on :math:`y`: :math:`g^c(z) = \min_j \lVert z - y_j\rVert^p - g_j`.

    It turns the target potential :math:`g` into a source potential defined on the *whole*
    space, the best :math:`f` with :math:`f(z) + g_j \le c(z, y_j)`. For :math:`p = 1` it is a
    minimum of 1-Lipschitz functions, hence 1-Lipschitz everywhere; with the exact potential
    :math:`g` of :func:`dual_potentials` (cost :math:`\lVert x - y\rVert`), it is an optimal critic
    in the Kantorovich–Rubinstein formula:
    :math:`\frac1n\sum_i g^c(x_i) - \frac1m\sum_j g^c(y_j) = W_1`.

    Args:
        z: where to evaluate, ``(N, d)``; y: target points ``(m, d)``; g: potential ``(m,)``.
        p: cost exponent.

    Returns:
        ``(N,)`` tensor.
    """
    z, y = _as_points(z, "z"), _as_points(y, "y")
    if z.shape[1] != y.shape[1]:
        raise ValueError(f"z and y must have the same dimension d, got {z.shape[1]} and {y.shape[1]}")
    g = _as_tensor(g, "g")
    if g.shape != (y.shape[0],):
        raise ValueError(f"g must have shape (len(y),) = ({y.shape[0]},), got {tuple(g.shape)}")
    return (cost_matrix(z, y, p) - g[None, :]).min(dim=1).values  # (N, m) -> (N,)


def lipschitz_on_support(critic: CriticFn, points: torch.Tensor) -> float:
    r"""The largest slope :math:`\max_{u \ne v} |f(u) - f(v)| / \lVert u - v\rVert` over pairs of ``points``.

    For discrete measures only the support matters: if :math:`L` is this slope on the union of
    both supports, then :math:`f / L` is 1-Lipschitz there, and
    ``critic_estimate / L`` is a certified lower bound on :math:`W_1` (a soft penalty alone
    certifies nothing).

    Args:
        points: ``(N, d)``, e.g. ``torch.cat([x, y])``; at least two of them distinct.

    Raises:
        ValueError: all the points coincide, so there is no slope to measure.
    """
    points = _as_points(points, "points")
    _check_critic(critic)
    dist = torch.cdist(points.double(), points.double())  # (N, N)
    mask = dist > 0
    if not bool(mask.any()):
        raise ValueError(
            f"points must contain at least two distinct points to measure a slope, got {points.shape[0]} "
            "coincident point(s)"
        )
    with torch.no_grad():
        values = critic(points).double()  # (N,); slopes in float64 so round-off does not pass for slope
        gaps = (values[:, None] - values[None, :]).abs()  # (N, N)
        return (gaps[mask] / dist[mask]).max().item()
