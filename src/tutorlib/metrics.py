r"""tutorlib.metrics: sample-quality scores for generative models, shared by the generative chapters.

The Fréchet distance between two sets of samples compares Gaussian fits of their *features*
(Heusel et al. 2017, the "FID" with an Inception network). Here the images are scikit-learn's
8×8 digits and the features come from a small MLP classifier trained on them once, in-process
(:func:`digits_classifier`), so nothing is downloaded.

.. math::  d_F^2 = \lVert \mu_1 - \mu_2 \rVert^2
           + \operatorname{tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big)

is the squared 2-Wasserstein distance between :math:`\mathcal N(\mu_1, \Sigma_1)` and
:math:`\mathcal N(\mu_2, \Sigma_2)`.

Images follow ``sklearn.datasets.load_digits``: pixel values in :math:`[0, 16]`, shape
``(N, 64)`` or ``(N, 8, 8)``.

References:
    Heusel et al. (2017), "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", NeurIPS.
    Dowson & Landau (1982), "The Fréchet distance between multivariate normal distributions".
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from scipy import linalg
from torch import nn

__all__ = [
    "digit_features",
    "digits_classifier",
    "digits_frechet_distance",
    "frechet_distance",
    "gaussian_fit",
    "load_digits_tensor",
    "sample_wasserstein",
]


def load_digits_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits: images ``(1797, 64)`` float32 in :math:`[0, 16]`, labels ``(1797,)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.data, dtype=torch.float32), torch.tensor(digits.target)


def _as_images(x: object, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point torch.Tensor or NumPy array, got {type(x).__name__}"
        )
    if x.ndim == 3 and x.shape[1:] == (8, 8):
        x = x.reshape(x.shape[0], 64)  # (N, 8, 8) -> (N, 64)
    if x.ndim != 2 or x.shape[1] != 64 or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, 64) or (N, 8, 8) with N >= 2, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got a tensor containing inf or nan")
    return x.float()


@functools.lru_cache(maxsize=1)
def digits_classifier() -> nn.Sequential:
    """An MLP ``64 -> 128 -> 64 -> 10`` trained on all 1797 digits; built once per process.

    Deterministic: its own seed (the global random state is left untouched), full-batch Adam,
    150 steps (one to a few seconds on one CPU core). Training accuracy is about 100 %; what matters
    for the Fréchet distance is that its hidden features separate the digit classes.
    Inputs are scaled by :math:`1/16` inside the network, so it takes raw pixel values.
    """
    x, y = load_digits_tensor()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(net(x / 16), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval().requires_grad_(False)


def digit_features(images: torch.Tensor) -> torch.Tensor:
    """The classifier's last hidden layer (after ReLU) on ``images`` ``(N, 64)``: ``(N, 64)``."""
    images = _as_images(images, "images")
    net = digits_classifier()
    return net[:4](images / 16)  # (N, 64): everything but the output layer


def gaussian_fit(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean :math:`\mu` ``(D,)`` and unbiased covariance :math:`\Sigma` ``(D, D)`` of features ``(N, D)``."""
    if not isinstance(features, torch.Tensor | np.ndarray):
        raise TypeError(f"features must be a tensor or array, got {type(features).__name__}")
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features must be finite, got an array containing NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    r"""Squared Fréchet distance between the Gaussians :math:`\mathcal N(\mu_i, \Sigma_i)`, :math:`i = 1, 2`.

    .. math::  \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
               - 2 \operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2}

    The matrix square root is ``scipy.linalg.sqrtm``; as in the reference FID code, a tiny
    ridge is added when the product is singular, and the imaginary round-off is dropped.

    Args:
        mu1, mu2: ``(D,)``; sigma1, sigma2: ``(D, D)`` symmetric positive semi-definite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"mu1 and mu2 must both have shape (D,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"sigma1 and sigma2 must have shape ({d}, {d}), got {sigma1.shape} and {sigma2.shape}"
        )
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} must be finite, got an array containing NaN or inf")
    for name, value in (("sigma1", sigma1), ("sigma2", sigma2)):
        scale = max(float(np.abs(value).max()), 1e-300)
        if np.abs(value - value.T).max() > 1e-8 * scale:
            raise ValueError(f"{name} must be a symmetric covariance matrix")
        lowest = float(np.linalg.eigvalsh(value).min())
        if lowest < -1e-6 * scale:  # a sample covariance is PSD up to round-off
            raise ValueError(f"{name} must be positive semi-definite, got an eigenvalue {lowest:.3g}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        ridge = np.eye(d) * 1e-6
        covmean = linalg.sqrtm((sigma1 + ridge) @ (sigma2 + ridge))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def digits_frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Fréchet distance between two sets of 8×8 digits in the classifier's feature space.

    Args:
        x, y: images ``(N, 64)`` / ``(M, 64)`` (or ``(N, 8, 8)``) with pixel values in :math:`[0, 16]`.
    """
    fx, fy = digit_features(_as_images(x, "x")), digit_features(_as_images(y, "y"))
    return frechet_distance(*gaussian_fit(fx), *gaussian_fit(fy))


def sample_wasserstein(x: torch.Tensor, y: torch.Tensor, p: int = 2) -> float:
    r"""The exact :math:`p`-Wasserstein distance between two equal-weight point clouds.

    .. math::  W_p(\hat\mu_x, \hat\mu_y) = \Big(\min_{P \in U(\frac1n \mathbf 1, \frac1m \mathbf 1)}
               \sum_{ij} P_{ij} \lVert x_i - y_j \rVert^p\Big)^{1/p}

    The sample-quality score for low-dimensional data (2-D toys): it is zero only when the two
    clouds coincide, and it sees both missing modes and blurred samples. Between two samples of
    the *same* distribution it is not zero but shrinks as :math:`n` grows (about
    :math:`n^{-1/2}` in 2-D), so compare it with that floor (score a held-out real sample too).
    Solved with POT's network simplex (``ot.emd2``); :mod:`tutorlib.ot` teaches the same linear
    program.

    Args:
        x: ``(n, d)``; y: ``(m, d)``; float tensors or arrays.
        p: 1 or 2.
    """
    import ot as pot

    xs = _as_points(x, "x")
    ys = _as_points(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got {xs.shape[1]} and {ys.shape[1]}")
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    M = pot.dist(xs, ys, metric="sqeuclidean" if p == 2 else "euclidean")
    cost = pot.emd2(np.full(len(xs), 1 / len(xs)), np.full(len(ys), 1 / len(ys)), M, numItermax=10**7)
    return float(cost) ** (1 / p)


def _as_points(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        kind = f"{type(x).__name__} of {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point torch.Tensor or NumPy array, got {kind}")
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.astype(np.float64)
