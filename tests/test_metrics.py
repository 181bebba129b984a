"""tutorlib.metrics: the Fréchet distance, against closed forms, and the digits feature score."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from tutorlib import metrics


@given(st.integers(1, 6), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_frechet_distance_diagonal_closed_form(d, seed):
    """Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt s1 - sqrt s2)^2."""
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    got = metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_frechet_distance_is_w2_squared_in_1d():
    """In 1-D it is W2^2 between Gaussians; compare with SciPy's W1 of the quantile-matched samples."""
    rng = np.random.default_rng(0)
    q = (np.arange(200_000) + 0.5) / 200_000
    from scipy.stats import norm

    x, y = norm.ppf(q, 1.0, 2.0), norm.ppf(q, -0.5, 0.5)
    w2_sq = np.mean((x - y) ** 2)  # sorted quantiles: the monotone (optimal) coupling
    assert metrics.frechet_distance([1.0], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(w2_sq, rel=1e-4)
    # and W1 from SciPy bounds it: W1^2 <= W2^2
    assert wasserstein_distance(x, y) ** 2 <= w2_sq + 1e-9
    del rng


def test_frechet_distance_zero_and_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 5))
    b = rng.normal(size=(50, 5)) * 2
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) < 1e-8
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        metrics.frechet_distance(mu2, s2, mu1, s1), rel=1e-8
    )


def test_gaussian_fit_matches_numpy():
    f = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    mu, sigma = metrics.gaussian_fit(f)
    np.testing.assert_allclose(mu, f.double().numpy().mean(0), rtol=1e-12)
    # the unbiased covariance written out, not the np.cov that gaussian_fit calls
    centred = f.double() - f.double().mean(0)
    by_hand = sum(torch.outer(row, row) for row in centred) / (len(f) - 1)
    np.testing.assert_allclose(sigma, by_hand.numpy(), rtol=1e-10)


def _halves():
    x, _ = metrics.load_digits_tensor()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:898]], x[perm[898:]]


def test_classifier_is_deterministic_and_accurate():
    x, y = metrics.load_digits_tensor()
    state = torch.random.get_rng_state()
    net = metrics.digits_classifier()
    assert torch.equal(state, torch.random.get_rng_state()), "must not touch the global RNG"
    assert (net(x / 16).argmax(1) == y).float().mean() > 0.97
    assert metrics.digits_classifier() is net  # cached in-process


def test_digits_fd_small_between_halves_and_grows_with_noise():
    a, b = _halves()
    g = torch.Generator().manual_seed(1)
    base = metrics.digits_frechet_distance(a, b)
    scores = [base] + [
        metrics.digits_frechet_distance(a, (b + s * torch.randn(b.shape, generator=g)).clamp(0, 16))
        for s in (1.0, 2.0, 4.0, 8.0)
    ]
    assert all(s1 < s2 for s1, s2 in itertools.pairwise(scores)), scores
    noise = metrics.digits_frechet_distance(a, 16 * torch.rand(898, 64, generator=g))
    assert base < 0.05 * noise, (base, noise)


def test_digits_fd_accepts_8x8_images():
    a, b = _halves()
    assert metrics.digits_frechet_distance(a.reshape(-1, 8, 8), b) == pytest.approx(
        metrics.digits_frechet_distance(a, b), rel=1e-6
    )


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        ([[0.0] * 64] * 3, TypeError, "x must be"),
        (torch.zeros(3, 64, dtype=torch.int64), TypeError, "floating-point"),
        (torch.zeros(3, 63), ValueError, r"\(N, 64\)"),
        (torch.zeros(1, 64), ValueError, "N >= 2"),
        (torch.full((3, 64), float("nan")), ValueError, "finite"),
    ],
)
def test_bad_images(x, error, match):
    with pytest.raises(error, match=match):
        metrics.digits_frechet_distance(x, torch.zeros(3, 64))


def test_bad_gaussians():
    with pytest.raises(ValueError, match="mu1 and mu2"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="sigma1 and sigma2"):
        metrics.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="features"):
        metrics.gaussian_fit(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="features"):
        metrics.gaussian_fit([[1.0]])


# --- sample_wasserstein: exact W_p between point clouds -------------------------------------
def test_sample_wasserstein_of_a_translation_is_its_length():
    # any coupling moves every point by the same vector, so W_p = |shift| for p = 1, 2
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert metrics.sample_wasserstein(x, x + shift, p=1) == pytest.approx(5.0, abs=1e-9)
    assert metrics.sample_wasserstein(x, x + shift, p=2) == pytest.approx(5.0, abs=1e-9)


def test_sample_wasserstein_matches_the_1d_sorted_formula():
    # in 1-D the optimal coupling pairs sorted samples (monotone rearrangement)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 1, generator=g), 2 * torch.rand(200, 1, generator=g)
    expected = (x.sort(0).values - y.sort(0).values).double().pow(2).mean().sqrt().item()
    assert metrics.sample_wasserstein(x, y) == pytest.approx(expected, rel=1e-9)


def test_sample_wasserstein_is_zero_on_itself_and_symmetric():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(2))
    y = torch.randn(20, 3, generator=torch.Generator().manual_seed(3))
    assert metrics.sample_wasserstein(x, x) == pytest.approx(0.0, abs=1e-7)
    assert metrics.sample_wasserstein(x, y) == pytest.approx(metrics.sample_wasserstein(y, x), rel=1e-9)


@pytest.mark.parametrize(
    ("x", "y", "p", "error", "match"),
    [
        (torch.zeros(3, 2), torch.zeros(3, 3), 2, ValueError, "same dimension"),
        (torch.zeros(3), torch.zeros(3, 1), 2, ValueError, "x must have shape"),
        (torch.zeros(3, 2), torch.zeros(3, 2), 3, ValueError, "p must be 1 or 2"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), 2, TypeError, "floating-point"),
        (torch.zeros(3, 2), torch.full((3, 2), float("nan")), 2, ValueError, "NaN"),
    ],
)
def test_sample_wasserstein_rejects_bad_input(x, y, p, error, match):
    with pytest.raises(error, match=match):
        metrics.sample_wasserstein(x, y, p=p)


def test_frechet_distance_refuses_what_is_not_a_covariance():
    eye = np.eye(2)
    # a negative-definite "covariance" used to give a plausible number
    with pytest.raises(ValueError, match="sigma2 must be positive semi-definite"):
        metrics.frechet_distance(np.zeros(2), eye, np.zeros(2), -eye)
    with pytest.raises(ValueError, match="sigma1 must be a symmetric covariance"):
        metrics.frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), eye)
    with pytest.raises(ValueError, match="mu1 must be finite"):
        metrics.frechet_distance(np.array([np.nan, 0.0]), eye, np.zeros(2), eye)
    # closed form for commuting covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    value = metrics.frechet_distance(np.array([1.0, 0.0]), np.diag([4.0, 1.0]),
                                     np.zeros(2), np.diag([1.0, 9.0]))
    assert value == pytest.approx(1.0 + (2 - 1) ** 2 + (1 - 3) ** 2, rel=1e-10)
    with pytest.raises(ValueError, match="features must be finite"):
        metrics.gaussian_fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def test_digit_features_feed_the_classifier_output_layer():
    x, y = metrics.load_digits_tensor()
    features = metrics.digit_features(x[:50])
    assert features.shape == (50, 64) and bool((features >= 0).all())  # after a ReLU
    net = metrics.digits_classifier()
    torch.testing.assert_close(net[4](features), net(x[:50] / 16))  # the rest of the network
    assert (net[4](features).argmax(1) == y[:50]).float().mean() > 0.95
    with pytest.raises(ValueError, match=r"images must have shape \(N, 64\)"):
        metrics.digit_features(torch.zeros(5, 63))
