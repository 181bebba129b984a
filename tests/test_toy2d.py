"""tutorlib.toy2d: the 2-D toy data have the densities we claim, and the ring is gan's ring.

References are independent of the code under test: densities from scipy.stats and scipy's
quadrature, samples from scikit-learn's ``make_moons``.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp
from sklearn.datasets import make_moons

from tutorlib import toy2d as fl


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """Tight tolerances need float64; restore the default afterwards for the other modules."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def numpy_ring(modes: int, radius: float) -> np.ndarray:
    """The centres r (cos 2 pi k / K, sin 2 pi k / K) in float64, by numpy."""
    angle = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angle), np.sin(angle)], 1)


@pytest.mark.parametrize("name", fl.TOY_DATASETS)
def test_toy_densities_integrate_to_one_and_support_the_samples(name):
    n = {"checkerboard": 800, "8gaussians": 400, "moons": 160}[name]  # the moons' density is costly
    grid = torch.linspace(-5, 5, n + 1)[:-1] + 5 / n  # cell midpoints, none on a square's edge
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    p = fl.toy_log_prob(name, torch.stack([xx.ravel(), yy.ravel()], 1)).exp()
    assert p.sum().item() * (grid[1] - grid[0]).item() ** 2 == pytest.approx(1.0, abs=1e-4)
    x = fl.sample_2d(name, 2000, torch.Generator().manual_seed(0)).double()
    assert torch.isfinite(fl.toy_log_prob(name, x)).all()


def test_eight_gaussians_density_matches_scipy():
    x = torch.randn(50, 2) * 2
    comps = [stats.multivariate_normal(c, fl.EIGHT_GAUSSIANS_STD**2 * np.eye(2)).logpdf(x.numpy())
             for c in numpy_ring(8, fl.EIGHT_GAUSSIANS_RADIUS)]
    # the float32 centres of the samples are within 5e-7 of the exact ones
    np.testing.assert_allclose(fl.toy_log_prob("8gaussians", x).numpy(), logsumexp(comps, axis=0) - np.log(8),
                               rtol=0, atol=1e-4)


def test_moons_density_matches_scipy_quadrature():
    s = 2 * fl.MOONS_NOISE
    pts = fl.sample_2d("moons", 6, torch.Generator().manual_seed(0)).double().numpy()
    pts[:3] += 0.15  # some points off the curve too

    def density(p):
        def upper(t):
            c = (np.array([np.cos(t), np.sin(t)]) - [0.5, 0.25]) * 2
            return stats.multivariate_normal(c, s**2 * np.eye(2)).pdf(p)

        def lower(t):
            c = (np.array([1 - np.cos(t), 0.5 - np.sin(t)]) - [0.5, 0.25]) * 2
            return stats.multivariate_normal(c, s**2 * np.eye(2)).pdf(p)

        halves = [integrate.quad(f, 0, np.pi, limit=200, epsabs=1e-14)[0] for f in (upper, lower)]
        return 0.5 / np.pi * sum(halves)

    expected = np.array([density(p) for p in pts])
    ours = fl.toy_log_prob("moons", torch.tensor(pts)).exp().numpy()
    assert expected.min() > 1e-3
    np.testing.assert_allclose(ours, expected, rtol=1e-8)


def test_moons_have_the_distribution_of_scikit_learn_make_moons():
    ours = fl.sample_2d("moons", 40_000, torch.Generator().manual_seed(0)).double().numpy()
    ref, _ = make_moons(40_000, noise=fl.MOONS_NOISE, random_state=0)
    ref = (ref - [0.5, 0.25]) * 2
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(ours.T), np.cov(ref.T), atol=0.04)
    for j in range(2):
        assert stats.ks_2samp(ours[:, j], ref[:, j]).pvalue > 1e-4


def test_checkerboard_samples_stay_on_the_black_squares():
    x = fl.sample_2d("checkerboard", 5000, torch.Generator().manual_seed(1))
    cells = torch.floor(x + 2).long()
    assert torch.all((cells[:, 0] + cells[:, 1]) % 2 == 0) and x.abs().max() <= 2
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    assert (counts > 0).sum() == 8
    # on a grid through the squares' edges the density still integrates to one
    grid = torch.arange(-96, 96) / 32  # left corners of exact 1/32 cells, every integer edge among them
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    p = fl.toy_log_prob("checkerboard", torch.stack([xx.ravel(), yy.ravel()], 1)).exp()
    assert p.sum().item() / 32**2 == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------------------------
# the ring of Gaussians (its one home; the GAN chapter's data): the random-number order is fixed
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("modes", "radius", "std"), [(8, 2.0, 0.02), (8, 2.0, 0.2), (5, 1.5, 0.1)])
def test_ring_draws_the_components_then_the_noise(modes, radius, std):
    """A seed gives the same data the GAN chapter was written with: randint first, then randn."""
    torch.set_default_dtype(torch.float32)  # the data sets' own dtype (this module runs in float64)
    try:
        ours = fl.ring_of_gaussians(300, modes, radius, std, torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        k = torch.randint(0, modes, (300,), generator=g)
        noise = torch.randn(300, 2, generator=g)
        angle = 2 * np.pi * k.numpy() / modes
        expected = radius * np.stack([np.cos(angle), np.sin(angle)], 1) + std * noise.numpy()
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)
        assert not torch.equal(fl.ring_of_gaussians(10), fl.ring_of_gaussians(10))  # global RNG moves on
    finally:
        torch.set_default_dtype(torch.float64)


def test_eight_gaussians_data_are_the_ring_and_its_density_matches_scipy():
    x = fl.sample_2d("8gaussians", 500, torch.Generator().manual_seed(3))
    ring = fl.ring_of_gaussians(500, 8, 2.0, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(x, ring)
    centres = numpy_ring(8, 2.0)
    np.testing.assert_allclose(fl.ring_centers(8, 2.0).double().numpy(), centres, atol=1e-6)
    # every sample sits within 5 std of its own centre, and the modes are equally used
    assert (torch.cdist(x.double(), torch.tensor(centres)).min(1).values < 5 * 0.2).all()
    pts = torch.randn(40, 2) * 1.5
    comps = [stats.multivariate_normal(c, 0.3**2 * np.eye(2)).logpdf(pts.numpy()) for c in numpy_ring(5, 1.5)]
    expected = logsumexp(comps, axis=0) - np.log(5)
    np.testing.assert_allclose(fl.ring_log_prob(pts, 5, 1.5, 0.3).numpy(), expected, rtol=0, atol=1e-5)


def test_ring_samples_have_the_mixture_moments():
    x = fl.ring_of_gaussians(40_000, 8, 2.0, 0.2, torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose(x.mean(0).numpy(), [0, 0], atol=0.03)
    # an equal mixture on a circle of radius r: covariance (r^2 / 2 + s^2) I
    np.testing.assert_allclose(np.cov(x.numpy().T), (2.0 + 0.04) * np.eye(2), atol=0.05)


def test_toy_data_refuse_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        fl.sample_2d("spirals", 10)
    with pytest.raises(ValueError, match="name must be one of"):
        fl.toy_log_prob("spirals", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        fl.toy_log_prob("moons", torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must be finite"):
        fl.toy_log_prob("8gaussians", torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="n_nodes must be >= 1"):
        fl.toy_log_prob("moons", torch.zeros(3, 2), n_nodes=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fl.ring_of_gaussians(0)
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        fl.ring_of_gaussians(5, std=-0.1)
    with pytest.raises(ValueError, match="radius must be finite and > 0"):
        fl.ring_centers(8, radius=0.0)
    with pytest.raises(TypeError, match="modes must be an int"):
        fl.ring_centers(8.5)
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        fl.ring_log_prob(torch.zeros(2, 2), std=float("nan"))
    assert math.isfinite(fl.ring_log_prob(torch.zeros(1, 2)).item())
