"""tutorlib.rectified_flow: the loss, Euler sampling, straightness, reflow and distillation."""

import math

import pytest
import torch

from tutorlib import edm
from tutorlib import rectified_flow as rf
from tutorlib.diffusion import TimeMLP

pytestmark = pytest.mark.usefixtures("one_thread")

f64 = torch.float64


def gaussian_rectified_velocity(mean: float, std: float):
    """Independent coupling N(0, 1) -> N(mean, std²) in 1-D, worked out by hand.

    X_t = t X1 + (1-t) X0 and X1 - X0 are jointly Gaussian: E[X_t] = t m,
    Var X_t = (1-t)² + t² c², Cov(X1 - X0, X_t) = t c² - (1 - t), so
    v(x, t) = m + (t c² - (1-t)) / ((1-t)² + t² c²) (x - t m).
    """

    def velocity(x, t):
        t = t[:, None]
        return mean + (t * std**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * std**2) * (x - t * mean)

    return velocity


def test_velocity_from_denoiser_matches_the_hand_derived_gaussian_velocity():
    mean, std = 1.5, 0.5
    denoiser = edm.gaussian_denoiser(torch.tensor([mean], dtype=f64), torch.tensor([[std**2]], dtype=f64))
    x = torch.linspace(-3, 3, 13, dtype=f64)[:, None]
    for t in (0.1, 0.5, 0.9):
        tt = torch.full((13,), t, dtype=f64)
        torch.testing.assert_close(rf.velocity_from_denoiser(denoiser)(x, tt),
                                   gaussian_rectified_velocity(mean, std)(x, tt), rtol=1e-10, atol=1e-10)


def test_rectified_flow_transports_gaussian_to_gaussian():
    z0 = torch.randn(50_000, 1, dtype=f64, generator=torch.Generator().manual_seed(0))
    z1 = rf.sample_flow(gaussian_rectified_velocity(1.5, 0.5), z0, n_steps=200)
    assert z1.mean().item() == pytest.approx(1.5, abs=0.01)
    assert z1.std().item() == pytest.approx(0.5, abs=0.01)


def test_rf_loss_is_zero_for_the_velocity_of_a_deterministic_linear_coupling():
    """z1 = a z0 + b: the lines do not cross, v(x, t) = (a - 1)(x - t b)/((1 - t) + t a) + b."""
    a, b = 0.5, 2.0
    z0 = torch.randn(100, 1, dtype=f64, generator=torch.Generator().manual_seed(1))

    def velocity(x, t):
        t = t[:, None]
        return (a - 1) * (x - t * b) / ((1 - t) + t * a) + b

    loss = rf.rf_loss(velocity, z0, a * z0 + b, generator=torch.Generator().manual_seed(2))
    assert loss.item() < 1e-24
    assert rf.straightness(velocity, z0, n_steps=50) < 1e-20


def test_straightness_of_a_rotation_has_its_closed_form():
    """v = θ J x walks circles: S = |z0|² (θ² - (2 - 2 cos θ)); zero for straight lines."""
    theta = 1.2
    rot = torch.tensor([[0.0, -theta], [theta, 0.0]], dtype=f64)
    z0 = torch.randn(20, 2, dtype=f64, generator=torch.Generator().manual_seed(3))
    expected = (z0**2).sum(1).mean().item() * (theta**2 - (2 - 2 * math.cos(theta)))
    assert rf.straightness(lambda x, t: x @ rot.T, z0, n_steps=4000) == pytest.approx(expected, rel=2e-3)
    assert rf.straightness(lambda x, t: torch.ones_like(x), z0, n_steps=10) < 1e-24


def test_sample_flow_path_has_n_plus_one_points_and_constant_velocity_is_exact():
    z0 = torch.zeros(3, 2)
    z1, path = rf.sample_flow(lambda x, t: torch.full_like(x, 2.0), z0, n_steps=4, return_path=True)
    assert len(path) == 5
    torch.testing.assert_close(z1, torch.full((3, 2), 2.0))


def test_reflow_of_the_exact_gaussian_flow_is_straight():
    """1-rectified flow of independent Gaussians is curved; its coupling is linear, so reflow is straight."""
    mean, std = 1.5, 0.5
    z0 = torch.randn(20_000, 1, dtype=f64, generator=torch.Generator().manual_seed(4))
    first = gaussian_rectified_velocity(mean, std)
    s1 = rf.straightness(first, z0, n_steps=200)
    pairs = rf.reflow_pairs(first, z0, n_steps=400)
    slope = ((pairs[1] - pairs[1].mean()) * z0).mean() / (z0**2).mean()  # the linear map z1 = a z0 + b
    a, b = slope.item(), pairs[1].mean().item()

    def second(x, t):
        t = t[:, None]
        return (a - 1) * (x - t * b) / ((1 - t) + t * a) + b

    s2 = rf.straightness(second, z0, n_steps=200)
    assert s1 > 0.05 and s2 < 1e-3 * s1


def test_trained_reflow_reduces_straightness_and_improves_one_step_samples():
    """Two modes: the exact 1-rectified flow (from the mixture's denoiser) vs a net trained on its pairs."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    first = rf.velocity_from_denoiser(edm.gaussian_mixture_denoiser(means, 0.3))
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(4000, 2, generator=g)
    pairs = rf.reflow_pairs(first, z0, n_steps=100)
    torch.manual_seed(0)
    second = TimeMLP(2, 64, 2, 8, max_frequency=10.0)
    edm.fit(second, rf.rf_loss, pairs, edm.TrainConfig(steps=600, batch_size=256, lr=5e-3), progress=False)
    test = torch.randn(1000, 2, generator=g)
    s1, s2 = rf.straightness(first, test, 50), rf.straightness(second, test, 50)
    assert s2 < 0.5 * s1, (s1, s2)
    target = rf.sample_flow(first, test, 100)  # where the flow sends the test noise
    one_step = {name: ((rf.sample_flow(v, test, 1) - target) ** 2).sum(1).mean().item()
                for name, v in (("first", first), ("second", second))}
    assert one_step["second"] < 0.5 * one_step["first"], one_step


def test_distill_loss_is_zero_for_the_exact_jump():
    z0 = torch.randn(10, 2)
    z1 = z0 * 2 + 1
    assert rf.distill_loss(lambda x, t: x + 1 + 0 * t[:, None], z0, z1).item() == 0.0


def test_bad_arguments_raise_with_the_argument_name():
    v = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="z0 and z1"):
        rf.rf_loss(v, torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="z1"):
        rf.rf_loss(v, torch.zeros(4, 2), [[0.0, 0.0]])
    with pytest.raises(ValueError, match="n_steps"):
        rf.sample_flow(v, torch.zeros(4, 2), n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        rf.straightness(v, torch.zeros(4, 2), n_steps=0)
    with pytest.raises(ValueError, match="z0"):
        rf.sample_flow(v, torch.zeros(4))


def test_samplers_refuse_nan_noise_and_bad_velocities():
    with pytest.raises(ValueError, match="z0 must be finite"):
        rf.sample_flow(lambda x, t: x, torch.full((3, 2), float("nan")), n_steps=2)
    with pytest.raises(TypeError, match="velocity must be callable"):
        rf.straightness(None, torch.zeros(3, 2), n_steps=2)
    with pytest.raises(ValueError, match="z0 and z1 must have the same shape"):
        rf.rf_loss(lambda x, t: x, torch.zeros(3, 2), torch.zeros(4, 2))
