"""Self-supervised contrastive learning: the code behind the chapter ``book/contrastive.md``.

A self-supervised learner makes its own labels from the data: "predict any part of the input
from any observed part" (LeCun). Contrastive learning turns that into classification. Two
*views* of the same image (a positive pair) must be recognised among the views of other images
(the negatives). With a critic (score) :math:`f(x, y)` and a batch of :math:`K` pairs
:math:`(x_i, y_i)`, the InfoNCE loss of Oord et al. (2018) is the cross-entropy of picking the
right partner:

.. math::  \\mathcal{L}_K = -\\frac{1}{K}\\sum_{i=1}^{K}
           \\log \\frac{e^{f(x_i, y_i)}}{\\sum_{j=1}^{K} e^{f(x_i, y_j)}},
           \\qquad I(X; Y) \\ge \\log K - \\mathcal{L}_K .

SimCLR (Chen et al., 2020) uses cosine similarity over a temperature as the critic,
:math:`f = \\cos(z, z') / \\tau`, and its symmetric NT-Xent loss lets each of the :math:`2N`
views of a batch find its partner among the other :math:`2N - 1`.

Legend (code name -> symbol): ``scores`` -> :math:`f(x_i, y_j)`, ``temperature`` ->
:math:`\\tau`, ``z1, z2`` -> projections :math:`z, z'` of the two views, ``rho`` ->
:math:`\\rho`, ``dim`` -> :math:`d`, ``h`` -> the representation :math:`h` (before the head).

The data, augmentations, networks, training recipes and the linear probe of the chapter are in
:mod:`tutorlib.contrastive_models`.

References:
    Oord, Li & Vinyals (2018), Representation Learning with Contrastive Predictive Coding.
    Gutmann & Hyvärinen (2010), Noise-contrastive estimation.
    Chen, Kornblith, Norouzi & Hinton (2020), A Simple Framework for Contrastive Learning (SimCLR).
    Poole, Ozair, van den Oord, Alemi & Tucker (2019), On Variational Bounds of Mutual Information.
    Wang & Isola (2020), Understanding Contrastive Representation Learning through Alignment
    and Uniformity on the Hypersphere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tutorlib.validation import check_int, check_positive, check_real, check_tensor

__all__ = [
    "alignment",
    "correlated_gaussians",
    "gaussian_critic",
    "gaussian_mutual_information",
    "info_nce",
    "info_nce_bound",
    "info_nce_from_scores",
    "nt_xent",
    "positive_negative_similarities",
    "uniformity",
]


def _check_temperature(temperature: object) -> float:
    return check_positive("temperature", temperature)


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


# --------------------------------------------------------------------------------------------
# 1. the losses
# --------------------------------------------------------------------------------------------
def info_nce_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE loss from a score matrix whose positives sit on the diagonal.

    .. math::  \\mathcal{L}_K = -\\frac{1}{K}\\sum_i \\Big[s_{ii} - \\log\\sum_j e^{s_{ij}}\\Big]

    Row :math:`i` is a :math:`K`-way classification: which of the :math:`K` candidates
    :math:`y_j` is the partner of :math:`x_i`? So the loss is the cross-entropy with target
    :math:`i` in row :math:`i`, computed here with a log-sum-exp.

    Args:
        scores: ``(K, K)`` critic values :math:`s_{ij} = f(x_i, y_j)`, ``K >= 1``.

    Returns:
        a scalar tensor, the mean over rows. ``0 <= loss``; ``loss = log K`` for constant scores.
    """
    scores = check_tensor("scores", scores, ("K", "K"))
    if scores.shape[0] < 1:
        raise ValueError("scores must have shape (K, K) with K >= 1, got (0, 0)")
    return (torch.logsumexp(scores, dim=1) - scores.diagonal()).mean()


def info_nce_bound(scores: torch.Tensor) -> torch.Tensor:
    """The InfoNCE lower bound on mutual information, :math:`\\log K - \\mathcal{L}_K` (nats).

    For pairs drawn from :math:`p(x, y)` and any critic, its expectation is at most
    :math:`I(X; Y)` (Oord et al. 2018; Poole et al. 2019). It can never exceed :math:`\\log K`,
    since :math:`\\mathcal{L}_K \\ge 0`: with :math:`K` candidates the bound saturates.

    Args:
        scores: ``(K, K)`` critic values with positives on the diagonal.

    Returns:
        a scalar tensor.
    """
    scores = check_tensor("scores", scores, ("K", "K"))
    return math.log(scores.shape[0]) - info_nce_from_scores(scores)


def info_nce(
    queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.1, *, normalize: bool = True
) -> torch.Tensor:
    """One-directional InfoNCE with a cosine (or dot-product) critic over a temperature.

    :math:`s_{ij} = \\hat q_i \\cdot \\hat k_j / \\tau`, with :math:`\\hat q = q / \\lVert q\\rVert`
    when ``normalize`` (else the raw vectors), then :func:`info_nce_from_scores`.

    Args:
        queries: ``(K, D)``; ``keys``: ``(K, D)``, ``keys[i]`` is the positive of ``queries[i]``
            and every other row is a negative.
        temperature: :math:`\\tau > 0`; small values sharpen the softmax.
        normalize: use cosine similarity (SimCLR, MoCo) instead of the dot product.

    Returns:
        a scalar tensor.
    """
    dims: dict[str, int] = {}
    queries = check_tensor("queries", queries, ("K", "D"), dims=dims)
    keys = check_tensor("keys", keys, ("K", "D"), dims=dims)
    temperature = _check_temperature(temperature)
    if normalize:
        queries, keys = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    return info_nce_from_scores(queries @ keys.T / temperature)  # (K, K)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's symmetric NT-Xent loss (normalised temperature-scaled cross-entropy).

    Stack the two views, :math:`z = [z^{(1)}; z^{(2)}]` of shape ``(2N, D)``, normalise each row
    and let :math:`s_{ab} = \\hat z_a \\cdot \\hat z_b / \\tau`. View :math:`a` must find its
    partner :math:`p(a) = a \\pm N` among the :math:`2N - 1` other views (itself excluded):

    .. math::  \\mathcal{L} = \\frac{1}{2N}\\sum_{a=1}^{2N}
               -\\log\\frac{e^{s_{a,p(a)}}}{\\sum_{b \\ne a} e^{s_{ab}}}.

    Each view has :math:`2N - 2` negatives, so a batch of :math:`N` images gives a
    :math:`(2N - 1)`-way classification per view.

    Args:
        z1: ``(N, D)`` projections of the first views; ``z2``: ``(N, D)`` of the second views.
        temperature: :math:`\\tau > 0`.

    Returns:
        a scalar tensor.
    """
    dims: dict[str, int] = {}
    z1 = check_tensor("z1", z1, ("N", "D"), dims=dims)
    z2 = check_tensor("z2", z2, ("N", "D"), dims=dims)
    temperature = _check_temperature(temperature)
    n = z1.shape[0]
    if n < 1:
        raise ValueError("z1 must have at least one row, got shape (0, D)")
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    sim = z @ z.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # a view is not its own candidate
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # (2N,)
    log_den = torch.logsumexp(sim, dim=1)
    return (log_den - sim[torch.arange(2 * n, device=z.device), partner]).mean()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola's alignment: :math:`\\mathbb{E}\\,\\lVert \\hat z - \\hat z'\\rVert^\\alpha`
    over positive pairs (lower = views of one image land closer). Inputs ``(N, D)``, normalised
    here; returns a scalar in ``[0, 2^alpha]``."""
    dims: dict[str, int] = {}
    z1 = check_tensor("z1", z1, ("N", "D"), dims=dims)
    z2 = check_tensor("z2", z2, ("N", "D"), dims=dims)
    alpha = check_positive("alpha", alpha)
    diff = F.normalize(z1, dim=1) - F.normalize(z2, dim=1)
    return diff.norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's uniformity: :math:`\\log \\mathbb{E}_{a \\ne b}\\, e^{-t\\lVert \\hat z_a -
    \\hat z_b\\rVert^2}` over distinct pairs (lower = spread more evenly on the sphere).
    ``z``: ``(N, D)`` with ``N >= 2``; returns a scalar ``<= 0``."""
    z = check_tensor("z", z, ("N", "D"))
    if z.shape[0] < 2:
        raise ValueError(f"z must have at least 2 rows, got shape {tuple(z.shape)}")
    t = check_positive("t", t)
    zn = F.normalize(z, dim=1)
    sq = torch.pdist(zn).pow(2)  # (N (N - 1) / 2,) each unordered pair once
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


def positive_negative_similarities(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities of positive pairs ``(N,)`` and of all cross-view negatives
    ``(N (N - 1),)``: ``cos(z1[i], z2[i])`` and ``cos(z1[i], z2[j])``, ``i != j``."""
    dims: dict[str, int] = {}
    z1 = check_tensor("z1", z1, ("N", "D"), dims=dims)
    z2 = check_tensor("z2", z2, ("N", "D"), dims=dims)
    cos = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T  # (N, N)
    off = ~torch.eye(cos.shape[0], dtype=torch.bool)
    return cos.diagonal().clone(), cos[off]


# --------------------------------------------------------------------------------------------
# 2. the InfoNCE bound on Gaussians with known mutual information
# --------------------------------------------------------------------------------------------
def gaussian_mutual_information(dim: int, rho: float) -> float:
    """:math:`I(X; Y) = -\\tfrac{d}{2}\\log(1 - \\rho^2)` nats for :math:`d` independent
    coordinate pairs, each a standard bivariate normal with correlation :math:`\\rho`."""
    dim = check_int("dim", dim)
    rho = check_real("rho", rho, -1.0, 1.0, low_open=True, high_open=True)
    return -0.5 * dim * math.log1p(-rho * rho)


def correlated_gaussians(
    n: int, dim: int, rho: float, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pairs :math:`y = \\rho x + \\sqrt{1 - \\rho^2}\\,\\varepsilon`,
    :math:`x, \\varepsilon \\sim \\mathcal N(0, I_d)`; returns ``x, y`` of shape ``(n, dim)``
    (float64)."""
    n = check_int("n", n)
    dim = check_int("dim", dim)
    rho = check_real("rho", rho, -1.0, 1.0, low_open=True, high_open=True)
    generator = _check_generator(generator)
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return x, rho * x + math.sqrt(1.0 - rho * rho) * eps


def gaussian_critic(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """The optimal critic, the pointwise mutual information
    :math:`f(x_i, y_j) = \\log p(y_j \\mid x_i) - \\log p(y_j)`:

    .. math::  f = \\sum_{c=1}^{d} \\Big[ -\\frac{(y_{jc} - \\rho x_{ic})^2}{2(1 - \\rho^2)}
               + \\frac{y_{jc}^2}{2} - \\tfrac12\\log(1 - \\rho^2) \\Big].

    Args:
        x: ``(K, d)``; y: ``(K, d)``; rho: the correlation used to generate them.

    Returns:
        ``(K, K)`` scores, positives on the diagonal.
    """
    dims: dict[str, int] = {}
    x = check_tensor("x", x, ("K", "d"), dims=dims)
    y = check_tensor("y", y, ("K", "d"), dims=dims)
    rho = check_real("rho", rho, -1.0, 1.0, low_open=True, high_open=True)
    one_m = 1.0 - rho * rho
    diff = y[None, :, :] - rho * x[:, None, :]  # (K, K, d): row i = x_i, column j = y_j
    quad = -(diff**2).sum(-1) / (2 * one_m) + 0.5 * (y**2).sum(-1)[None, :]
    return quad - 0.5 * x.shape[1] * math.log(one_m)
