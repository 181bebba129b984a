"""2-D toy distributions with known densities: samplers and exact log-densities.

The data sets of ``book/flows.md`` (and of the diffusion chapters): two moons, a checkerboard and
the ring of eight Gaussians. Each has a sampler and a log-density that is exact (or, for the
moons, a quadrature accurate to many digits), so a model's KL divergence to the data can be
measured, not guessed.

The ring of Gaussians lives here, once: :func:`ring_centers` and :func:`ring_of_gaussians`
(the benchmark for mode collapse, Metz et al. 2017; Srivastava et al. 2017) serve the GAN chapter
with its thin modes (std 0.02) and the flows' ``"8gaussians"`` with broad ones (std 0.2).

Legend (code name -> symbol): ``centers`` -> :math:`\\mu_k`, ``radius`` -> :math:`r`,
``modes`` -> :math:`K`, ``std`` -> :math:`\\sigma`.
"""

from __future__ import annotations

import math

import torch

from tutorlib.validation import check_int, check_positive, check_tensor

__all__ = [
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "MOONS_NOISE",
    "TOY_DATASETS",
    "ring_centers",
    "ring_log_prob",
    "ring_of_gaussians",
    "sample_2d",
    "toy_log_prob",
]

#: The 2-D toy data sets of :func:`sample_2d`.
TOY_DATASETS = ("moons", "checkerboard", "8gaussians")
#: Centre radius and standard deviation of each component of the "8gaussians" data.
EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD = 2.0, 0.2
MOONS_NOISE = 0.05  #: noise of the "moons" before they are scaled by 2


# --------------------------------------------------------------------------------------------
# the ring of Gaussians
# --------------------------------------------------------------------------------------------
def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    r"""The centres :math:`\mu_k = r(\cos 2\pi k/K, \sin 2\pi k/K)`, :math:`k = 0..K-1`.

    Shape ``(K, 2)``, float32.
    """
    modes = check_int("modes", modes)
    radius = check_positive("radius", radius)
    angle = 2 * math.pi * torch.arange(modes, dtype=torch.float32) / modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def ring_of_gaussians(
    n: int,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Samples from :math:`\frac1K \sum_k \mathcal N(\mu_k, \sigma^2 I)`, the benchmark for mode collapse.

    Defaults (:math:`K = 8`, :math:`r = 2`, :math:`\sigma = 0.02`) are those of Metz et al. (2017)
    and Srivastava et al. (2017). Draws the component of every sample first (``randint``), then
    the noise (``randn``), from ``generator``.

    Returns:
        ``(n, 2)`` float32 tensor.
    """
    n = check_int("n", n)
    std = check_positive("std", std)
    centers = ring_centers(modes, radius)  # (K, 2)
    k = torch.randint(0, modes, (n,), generator=generator)
    return centers[k] + std * torch.randn(n, 2, generator=generator)


def ring_log_prob(x: torch.Tensor, modes: int = 8, radius: float = 2.0, std: float = 0.02) -> torch.Tensor:
    r""":math:`\log \frac1K \sum_k \mathcal N(x; \mu_k, \sigma^2 I)` at ``x`` ``(N, 2)``, shape ``(N,)``.

    The density :func:`ring_of_gaussians` samples (in the dtype of ``x``).
    """
    x = check_tensor("x", x, ("N", 2))
    std = check_positive("std", std)
    return _mixture_log_prob(x, ring_centers(modes, radius).to(x.dtype), std**2)


def _mixture_log_prob(x: torch.Tensor, centres: torch.Tensor, var: float) -> torch.Tensor:
    """Equal-weight mixture of N(c, var I) over the rows c of ``centres`` (M, 2), in chunks of x."""
    out = []
    for chunk in x.split(2048):
        d2 = ((chunk[:, None, :] - centres[None]) ** 2).sum(-1)  # (n, M) squared distances
        log_comp = -0.5 * d2 / var - math.log(2 * math.pi * var)
        out.append(torch.logsumexp(log_comp, dim=1) - math.log(len(centres)))
    return torch.cat(out) if out else x.new_zeros(0)


# --------------------------------------------------------------------------------------------
# the three data sets
# --------------------------------------------------------------------------------------------
def sample_2d(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of a 2-D toy distribution, shape ``(n, 2)``, float32.

    - ``"moons"``: two interleaving half circles (as ``sklearn.datasets.make_moons``), noise
      ``MOONS_NOISE``, then centred and scaled by 2;
    - ``"checkerboard"``: uniform on the 8 black squares of a 4×4 board on :math:`[-2, 2]^2`
      (total area 8);
    - ``"8gaussians"``: :func:`ring_of_gaussians` with 8 modes of std ``EIGHT_GAUSSIANS_STD``
      on a circle of radius ``EIGHT_GAUSSIANS_RADIUS``.
    """
    check_int("n", n, 1)
    if name == "moons":
        upper = torch.rand(n, generator=generator) < 0.5
        angle = torch.rand(n, generator=generator) * math.pi
        x = torch.stack([angle.cos(), angle.sin()], 1)
        x = torch.where(upper[:, None], x, torch.stack([1 - angle.cos(), 0.5 - angle.sin()], 1))
        x = x + MOONS_NOISE * torch.randn(n, 2, generator=generator)
        return (x - torch.tensor([0.5, 0.25])) * 2.0
    if name == "checkerboard":
        cell = torch.randint(0, 8, (n,), generator=generator)  # which black square
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)  # black squares: (row + col) even
        u = torch.rand(n, 2, generator=generator)
        return torch.stack([col + u[:, 0], row + u[:, 1]], 1) - 2.0
    if name == "8gaussians":
        return ring_of_gaussians(n, 8, EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD, generator)
    raise ValueError(f"name must be one of {TOY_DATASETS}, got {name!r}")


def _moon_centres(n_nodes: int, dtype: torch.dtype) -> torch.Tensor:
    """Midpoints of ``n_nodes`` equal angle steps along both moons, in the scaled coordinates."""
    theta = (torch.arange(n_nodes, dtype=torch.float64) + 0.5) * (math.pi / n_nodes)
    upper = torch.stack([theta.cos(), theta.sin()], 1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], 1)
    return ((torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 2).to(dtype)


def toy_log_prob(name: str, x: torch.Tensor, n_nodes: int = 400) -> torch.Tensor:
    """The true log-density of the data of :func:`sample_2d` at ``x`` (N, 2), shape ``(N,)``.

    - ``"checkerboard"``: :math:`\\log(1/8)` on the black squares (half-open,
      :math:`[a, a+1) \\times [b, b+1)`), :math:`-\\infty` elsewhere;
    - ``"8gaussians"``: the mixture, exactly (:func:`ring_log_prob`);
    - ``"moons"``: a curve blurred by Gaussian noise, :math:`p(x) = \\frac12 \\sum_{m=1}^{2}
      \\frac1\\pi \\int_0^\\pi N(x; c_m(\\theta), \\sigma^2 I)\\, d\\theta`, by the midpoint
      rule with ``n_nodes`` angles per moon (nodes 0.016 apart against a noise of
      :math:`\\sigma = 0.1`, so the rule is accurate to many digits).

    With it the data's entropy :math:`h = -E\\log p(x)` is a Monte Carlo average, and a
    model's test NLL minus :math:`h` estimates :math:`\\mathrm{KL}(p_{\\text{data}} \\Vert
    p_\\theta) \\ge 0`.
    """
    x = check_tensor("x", x, ("N", 2))
    if name == "checkerboard":
        inside = ((x >= -2) & (x < 2)).all(dim=1)  # squares are [a, a + 1): no double edges
        col, row = torch.floor(x[:, 0] + 2), torch.floor(x[:, 1] + 2)
        black = torch.remainder(col + row, 2) == 0
        return torch.where(inside & black, x.new_tensor(-math.log(8.0)), x.new_tensor(-math.inf))
    if name == "8gaussians":
        return ring_log_prob(x, 8, EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD)
    if name == "moons":
        centres = _moon_centres(check_int("n_nodes", n_nodes, 1), x.dtype)
        return _mixture_log_prob(x, centres, (2 * MOONS_NOISE) ** 2)
    raise ValueError(f"name must be one of {TOY_DATASETS}, got {name!r}")
