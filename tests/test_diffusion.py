"""tutorlib.diffusion: the shared time-conditioned network, schedules, the forward process, DDPM and DDIM."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib import diffusion as D
from tutorlib.diffusion import TimeMLP, time_embedding

pytestmark = pytest.mark.usefixtures("one_thread")


def test_time_embedding_is_cos_and_sin_of_geometric_frequencies():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    emb = time_embedding(t, dim=6, max_frequency=100.0)
    omega = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)  # 100^(k/2), k = 0, 1, 2
    expected = torch.cat([torch.cos(t[:, None] * omega), torch.sin(t[:, None] * omega)], dim=1)
    torch.testing.assert_close(emb, expected, rtol=1e-12, atol=1e-12)
    assert emb[0, :3].tolist() == [1.0, 1.0, 1.0] and emb[0, 3:].abs().max() == 0
    assert emb[2, 0].item() == pytest.approx(math.cos(1.0))


def test_time_mlp_shapes_and_scalar_time():
    torch.manual_seed(0)
    net = TimeMLP(dim=3, hidden=16, depth=2, embed_dim=8)
    x = torch.randn(5, 3)
    out = net(x, torch.full((5,), 0.4))
    assert out.shape == (5, 3)
    torch.testing.assert_close(net(x, 0.4), out)
    torch.testing.assert_close(net(x, torch.tensor(0.4)), out)
    assert not torch.allclose(net(x, 0.9), out)  # the output depends on t


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: time_embedding(torch.zeros(2, 1), 4), "1-D tensor"),
        (lambda: time_embedding(torch.zeros(2), 5), "dim must be even"),
        (lambda: time_embedding(torch.zeros(2), 4, max_frequency=0.5), "max_frequency"),
        (lambda: TimeMLP(embed_dim=7), "embed_dim must be even"),
        (lambda: TimeMLP(dim=2)(torch.zeros(4, 3), 0.1), r"x must have shape \(B, 2\)"),
        (lambda: TimeMLP(dim=2)(torch.zeros(4, 2), torch.zeros(3)), r"t must have shape \(4,\)"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_time_mlp_rejects_a_non_int_width():
    with pytest.raises(TypeError, match="hidden"):
        TimeMLP(hidden=12.5)


# ============================================================================================
# Diffusion I: schedules, the forward process, the epsilon loss, DDPM and DDIM samplers
# ============================================================================================


def _numpy_free_cumprod(values):
    """A plain-Python running product: an implementation independent of torch.cumprod."""
    out, running = [], 1.0
    for v in values:
        running *= 1.0 - v
        out.append(running)
    return out


def test_linear_schedule_matches_ddpm_endpoints_and_spacing():
    betas = D.linear_beta_schedule(1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    # evenly spaced: beta_t = 1e-4 + t * (0.02 - 1e-4) / 999
    expected = [1e-4 + t * (0.02 - 1e-4) / 999 for t in range(1000)]
    torch.testing.assert_close(betas, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)
    # the often-quoted end point of DDPM's schedule: alpha_bar_T is about 4.04e-5
    assert D.alpha_bars(betas)[-1].item() == pytest.approx(_numpy_free_cumprod(expected)[-1], rel=1e-10)
    assert D.alpha_bars(betas)[-1].item() == pytest.approx(4.04e-5, rel=0.01)


@pytest.mark.parametrize("T", [10, 1000, 4000])
def test_cosine_schedule_matches_nichol_dhariwal(T):
    """Written independently from eq. 17 of Nichol & Dhariwal (2021), as diffusers' betas_for_alpha_bar."""

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    expected = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    betas = D.cosine_beta_schedule(T)
    torch.testing.assert_close(betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    # where no beta is capped, alpha_bar is exactly f((t + 1) / T) / f(0)
    alpha_bar = D.alpha_bars(betas)
    uncapped = T - 1  # only the very last beta reaches the cap
    target = torch.tensor([f((t + 1) / T) / f(0) for t in range(uncapped)], dtype=torch.float64)
    torch.testing.assert_close(alpha_bar[:uncapped], target, rtol=1e-9, atol=1e-12)
    assert betas[-1].item() == 0.999


@given(st.integers(2, 300), st.floats(1e-5, 1e-2), st.floats(1.0, 50.0))
@settings(max_examples=30, deadline=None)
def test_alpha_bar_is_strictly_decreasing_in_zero_one(T, start, ratio):
    for betas in (D.linear_beta_schedule(T, start, min(start * ratio, 0.5)), D.cosine_beta_schedule(T)):
        alpha_bar = D.alpha_bars(betas)
        assert (alpha_bar > 0).all() and (alpha_bar < 1).all()
        assert (alpha_bar[1:] < alpha_bar[:-1]).all()
        torch.testing.assert_close(
            alpha_bar, torch.tensor(_numpy_free_cumprod(betas.tolist()), dtype=torch.float64)
        )


def test_posterior_variance_formula_and_ddim_eta_one():
    betas = D.linear_beta_schedule(50, 1e-3, 0.2)
    ab = _numpy_free_cumprod(betas.tolist())
    expected = [0.0] + [(1 - ab[t - 1]) / (1 - ab[t]) * betas[t].item() for t in range(1, 50)]
    torch.testing.assert_close(D.posterior_variance(betas), torch.tensor(expected, dtype=torch.float64))
    # DDIM's sigma with eta = 1 between consecutive steps is DDPM's posterior standard deviation
    for t in range(1, 50):
        assert D.ddim_sigma(ab[t], ab[t - 1], 1.0) ** 2 == pytest.approx(expected[t], rel=1e-12)
        assert D.ddim_sigma(ab[t], ab[t - 1], 0.0) == 0.0
        assert D.ddim_sigma(ab[t], ab[t - 1], 0.5) ** 2 == pytest.approx(0.25 * expected[t], rel=1e-12)
    assert D.ddim_sigma(ab[0], 1.0, 1.0) == 0.0  # the last jump to clean data adds no noise


def test_q_sample_marginal_mean_and_variance():
    """Monte Carlo: x_t | x0 ~ N(sqrt(ab) x0, (1 - ab) I), per step t."""
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(1000))
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for t in (0, 100, 500, 999):
        x0 = torch.full((n, 1), 1.5, dtype=torch.float64)
        noise = torch.randn(n, 1, generator=g, dtype=torch.float64)
        x_t = D.q_sample(x0, t, noise, alpha_bar)
        ab = alpha_bar[t].item()
        assert x_t.mean().item() == pytest.approx(1.5 * math.sqrt(ab), abs=5 * math.sqrt((1 - ab) / n))
        assert x_t.var().item() == pytest.approx(1 - ab, rel=0.02, abs=1e-6)


def test_q_sample_equals_t_single_steps():
    """The closed form (one jump) has the moments of t+1 small Markov steps x <- sqrt(1-b) x + sqrt(b) z."""
    betas = D.linear_beta_schedule(200, 1e-3, 0.05)
    alpha_bar = D.alpha_bars(betas)
    g = torch.Generator().manual_seed(1)
    x0 = torch.tensor([2.0, -1.0], dtype=torch.float64).repeat(100_000, 1)  # (N, 2)
    x = x0.clone()
    for t in range(120):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
    jump = D.q_sample(x0, 119, torch.randn(x0.shape, generator=g, dtype=x0.dtype), alpha_bar)
    torch.testing.assert_close(x.mean(0), jump.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(x.var(0), jump.var(0), atol=0.02, rtol=0)
    torch.testing.assert_close(jump.var(0), (1 - alpha_bar[119]).expand(2), atol=0.02, rtol=0)


def test_q_sample_per_sample_steps_and_predictions_invert_it():
    alpha_bar = D.alpha_bars(D.cosine_beta_schedule(100))
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 5, 17, 50, 98, 99])
    x_t = D.q_sample(x0, t, noise, alpha_bar)
    for i in range(6):
        ab = alpha_bar[t[i]]
        torch.testing.assert_close(x_t[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * noise[i])
    torch.testing.assert_close(D.predict_x0(x_t, noise, alpha_bar[t]), x0)
    torch.testing.assert_close(D.predict_eps(x_t, x0, alpha_bar[t]), noise)


def test_ddim_timesteps():
    torch.testing.assert_close(D.ddim_timesteps(1000, 1000), torch.arange(1000))
    assert D.ddim_timesteps(1000, 10).tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert D.ddim_timesteps(10, 1).tolist() == [9]


@given(st.integers(2, 2000), st.data())
@settings(max_examples=50, deadline=None)
def test_ddim_timesteps_are_an_increasing_subsequence(T, data):
    S = data.draw(st.integers(2, T))
    tau = D.ddim_timesteps(T, S)
    assert tau.shape == (S,) and tau[0] == 0 and tau[-1] == T - 1
    assert (tau[1:] > tau[:-1]).all()


def _paper_quadratic(T: int, S: int) -> list[int]:
    """The DDIM paper's code (runners/diffusion.py, skip_type "quad"), repeats removed."""
    import numpy as np

    seq = [int(s) for s in list(np.linspace(0, np.sqrt(T * 0.8), S) ** 2)]
    return sorted(set(seq))


@pytest.mark.parametrize(("T", "S"), [(1000, 10), (1000, 16), (1000, 20), (1000, 50), (1000, 100), (100, 69),
                                      (4000, 16), (10, 3)])
def test_ddim_timesteps_quadratic_is_the_papers_spacing(T, S):
    tau = D.ddim_timesteps(T, S, spacing="quadratic")
    assert tau.tolist() == _paper_quadratic(T, S)  # (1000, 16) has the exact squares 288 and 512
    assert (tau[1:] > tau[:-1]).all() and tau[0] == 0 and tau[-1] == int(0.8 * T)


def test_ddim_timesteps_quadratic_drops_repeats_and_keeps_all_steps():
    assert D.ddim_timesteps(1000, 10, "quadratic").tolist() == [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
    assert len(D.ddim_timesteps(1000, 50, "quadratic")) == 49
    assert len(D.ddim_timesteps(1000, 100, "quadratic")) == 96
    torch.testing.assert_close(D.ddim_timesteps(1000, 1000, "quadratic"), torch.arange(1000))
    with pytest.raises(ValueError, match="spacing"):
        D.ddim_timesteps(1000, 10, "cubic")


def test_a_repeated_step_is_the_identity():
    """Why dropping the quadratic spacing's repeats changes nothing: DDIM from t to t is x_t itself."""
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(100))
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(20), dtype=torch.float64)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    ab = alpha_bar[7].item()
    # the DDIM update with prev = t (sigma is 0 there: 1 - ab / ab = 0); ddim_step refuses prev = t
    again = math.sqrt(ab) * D.predict_x0(x_T, eps, ab) + math.sqrt(1 - ab) * eps
    torch.testing.assert_close(again, x_T, rtol=1e-12, atol=1e-12)
    # and a step to the step just before is not the identity, so the test can tell
    assert (D.ddim_step(x_T, eps, ab, alpha_bar[6].item()) - x_T).abs().max() > 1e-4


# --- an exact noise predictor: data x0 ~ N(mu, s^2 I) ------------------------------------------
def _gaussian_eps(mu: float, s: float, alpha_bar: torch.Tensor):
    """E[eps | x_t] for Gaussian data: sqrt(1-ab) (x - sqrt(ab) mu) / (ab s^2 + 1 - ab)."""
    T = len(alpha_bar)

    def model(x, t_scaled):
        t = torch.round(t_scaled.double() * T).long()
        ab = alpha_bar[t].reshape(-1, *([1] * (x.ndim - 1))).to(x)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)

    return model


def _sigma(ab: float) -> float:
    return math.sqrt((1 - ab) / ab)


def test_ddim_eta0_on_gaussian_data_is_euler_in_sigma_space():
    """Derived independently: with xbar = x / sqrt(ab) and sigma = sqrt((1-ab)/ab), DDIM (eta=0) is Euler
    for d xbar / d sigma = eps, and for Gaussian data eps = sigma (xbar - mu) / (s^2 + sigma^2)."""
    mu, s = 0.7, 0.3
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(1000))
    model = _gaussian_eps(mu, s, alpha_bar)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for S in (3, 10, 100):
        tau = D.ddim_timesteps(1000, S).tolist()
        sigmas = [_sigma(alpha_bar[t].item()) for t in reversed(tau)] + [0.0]
        factor = 1.0
        for hi, lo in itertools.pairwise(sigmas):
            factor *= 1 + (lo - hi) * hi / (s**2 + hi**2)
        expected = mu + (x_T / math.sqrt(alpha_bar[-1].item()) - mu) * factor
        torch.testing.assert_close(D.ddim_sample(model, x_T, alpha_bar, S), expected, rtol=1e-10, atol=1e-12)


def test_ddim_eta0_converges_to_the_exact_probability_flow_map():
    """The exact ODE keeps z = (xbar - mu) / sqrt(s^2 + sigma^2): x0 = mu + s z. Error shrinks with S."""
    mu, s = -0.5, 0.4
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(1000))
    model = _gaussian_eps(mu, s, alpha_bar)
    x_T = torch.randn(100, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sigma_T = _sigma(alpha_bar[-1].item())
    exact = mu + s * (x_T / math.sqrt(alpha_bar[-1].item()) - mu) / math.sqrt(s**2 + sigma_T**2)
    errors = [(D.ddim_sample(model, x_T, alpha_bar, S) - exact).abs().max().item() for S in (10, 100, 1000)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02 * s


def test_ddim_inversion_matches_its_sigma_space_recursion():
    """mu = 0: eps(x, t) = sigma_t xbar / (s^2 + sigma_t^2) with xbar = x / sqrt(ab_t).

    Inversion is Euler in sigma, upwards, with eps taken at the current point (at tau_1 for the clean start).
    """
    s = 0.5
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(1000))
    model = _gaussian_eps(0.0, s, alpha_bar)
    x0 = s * torch.randn(7, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tau = D.ddim_timesteps(1000, 20).tolist()
    sig = [_sigma(alpha_bar[t].item()) for t in tau]
    # up: the first step sees x0 as if it were x at tau_1; then xbar grows by 1 + (s_next - s) s / (s^2 + s^2)
    xbar = x0 + sig[0] * sig[0] * (x0 / math.sqrt(alpha_bar[tau[0]].item())) / (s**2 + sig[0] ** 2)
    for lo, hi in itertools.pairwise(sig):
        xbar = xbar * (1 + (hi - lo) * lo / (s**2 + lo**2))
    expected_T = xbar * math.sqrt(alpha_bar[-1].item())
    x_T = D.ddim_invert(model, x0, alpha_bar, 20)
    torch.testing.assert_close(x_T, expected_T, rtol=1e-10, atol=1e-12)


def test_ddim_inversion_round_trip_improves_with_steps():
    mu, s = 0.2, 0.5
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(1000))
    model = _gaussian_eps(mu, s, alpha_bar)
    x0 = mu + s * torch.randn(50, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    errors = []
    for S in (10, 50, 1000):
        x_T = D.ddim_invert(model, x0, alpha_bar, S)
        errors.append((D.ddim_sample(model, x_T, alpha_bar, S) - x0).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02 * s, errors
    # the exact probability-flow map sends x0 to sqrt(ab) mu + sqrt(ab s^2 + 1 - ab) (x0 - mu) / s
    ab_T = alpha_bar[-1].item()
    exact = math.sqrt(ab_T) * mu + math.sqrt(ab_T * s**2 + 1 - ab_T) * (x0 - mu) / s
    torch.testing.assert_close(D.ddim_invert(model, x0, alpha_bar, 1000), exact, atol=0.02, rtol=0)


def _random_eps_model(dim: int = 3):
    torch.manual_seed(0)
    net = TimeMLP(dim=dim, hidden=16, depth=2, embed_dim=8).double()
    return net


def test_ddim_eta1_over_all_steps_is_ddpm():
    """Same generator, same noise draws: DDIM(eta=1, S=T) and DDPM give the same samples."""
    betas = D.linear_beta_schedule(60, 1e-3, 0.2)
    alpha_bar = D.alpha_bars(betas)
    model = _random_eps_model()
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ddpm = D.ddpm_sample(model, x_T, betas, generator=torch.Generator().manual_seed(7))
    ddim = D.ddim_sample(model, x_T, alpha_bar, 60, eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)
    # with clipping too (both clip x0 hat before forming the posterior mean)
    ddpm = D.ddpm_sample(model, x_T, betas, generator=torch.Generator().manual_seed(7), clip_x0=0.5)
    ddim = D.ddim_sample(model, x_T, alpha_bar, 60, eta=1.0, generator=torch.Generator().manual_seed(7),
                         clip_x0=0.5)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)


def test_ddim_eta0_is_deterministic_and_draws_no_noise():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(100))
    model = _random_eps_model()
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    g = torch.Generator().manual_seed(9)
    state = g.get_state()
    a = D.ddim_sample(model, x_T, alpha_bar, 20, eta=0.0, generator=g)
    assert torch.equal(state, g.get_state())
    b = D.ddim_sample(model, x_T, alpha_bar, 20, eta=0.0, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, b)
    c = D.ddim_sample(model, x_T, alpha_bar, 20, eta=1.0, generator=torch.Generator().manual_seed(123))
    assert not torch.allclose(a, c)


def test_ddim_sample_custom_steps_and_trajectory():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(100))
    model = _random_eps_model()
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    a = D.ddim_sample(model, x_T, alpha_bar, 10)
    b, trajectory = D.ddim_sample(model, x_T, alpha_bar, D.ddim_timesteps(100, 10).tolist(),
                                  return_trajectory=True)
    torch.testing.assert_close(a, b)
    assert len(trajectory) == 11 and trajectory[0] is x_T and torch.equal(trajectory[-1], b)
    _, ddpm_trajectory = D.ddpm_sample(model, x_T, D.linear_beta_schedule(100), return_trajectory=True,
                                       generator=torch.Generator().manual_seed(0))
    assert len(ddpm_trajectory) == 101


def test_ddim_step_clipping_recomputes_eps():
    x_t = torch.tensor([[3.0, 0.1]], dtype=torch.float64)
    eps = torch.tensor([[-1.0, 0.2]], dtype=torch.float64)
    ab = 0.5
    # jumping to clean data returns the (clipped) prediction of x0
    clipped = D.ddim_step(x_t, eps, ab, 1.0, clip_x0=1.0)
    torch.testing.assert_close(clipped, D.predict_x0(x_t, eps, ab).clamp(-1, 1))
    # a step to an intermediate level keeps x_prev = sqrt(ab') x0 + sqrt(1-ab') eps consistent with the
    # clipped x0: the implied eps is the one recomputed from the clipped x0
    x_prev = D.ddim_step(x_t, eps, ab, 0.8, clip_x0=1.0)
    x0c = D.predict_x0(x_t, eps, ab).clamp(-1, 1)
    eps_c = D.predict_eps(x_t, x0c, ab)
    torch.testing.assert_close(x_prev, math.sqrt(0.8) * x0c + math.sqrt(0.2) * eps_c)
    # no effect when the prediction is inside the range
    torch.testing.assert_close(D.ddim_step(x_t, eps, ab, 0.8, clip_x0=100.0), D.ddim_step(x_t, eps, ab, 0.8))


def test_ddpm_on_gaussian_data_recovers_its_moments():
    mu, s = 1.0, 0.5
    betas = D.linear_beta_schedule(1000)
    model = _gaussian_eps(mu, s, D.alpha_bars(betas))
    g = torch.Generator().manual_seed(11)
    x = D.ddpm_sample(model, torch.randn(20_000, 1, generator=g, dtype=torch.float64), betas, generator=g)
    assert x.mean().item() == pytest.approx(mu, abs=0.02)
    assert x.std().item() == pytest.approx(s, rel=0.03)


def test_epsilon_loss_prefers_the_exact_predictor():
    mu, s = 0.3, 0.6
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(200))
    exact = _gaussian_eps(mu, s, alpha_bar)
    x0 = mu + s * torch.randn(20_000, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)

    def loss(model):
        return D.epsilon_loss(model, x0, alpha_bar, generator=torch.Generator().manual_seed(13)).item()

    assert loss(lambda x, t: torch.zeros_like(x)) == pytest.approx(1.0, abs=0.02)  # E[eps^2] = 1
    best = loss(exact)
    for scale in (0.9, 1.1):
        assert best < loss(lambda x, t, k=scale: k * exact(x, t))
    assert best < 0.5


def test_digits_denoiser_shapes_time_and_gradients():
    torch.manual_seed(0)
    net = D.DigitsDenoiser(channels=16, blocks=1, embed_dim=8, groups=4)
    x = torch.randn(5, 64)
    out = net(x, torch.full((5,), 0.3))
    assert out.shape == (5, 64)
    torch.testing.assert_close(net(x, 0.3), out)
    assert not torch.allclose(net(x, 0.9), out)
    D.epsilon_loss(net, x, D.alpha_bars(D.linear_beta_schedule(10))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_digits_scaling_round_trip():
    x = torch.linspace(0, 16, 17)
    torch.testing.assert_close(D.digits_to_model(x)[[0, 8, 16]], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(D.model_to_digits(D.digits_to_model(x)), x)
    assert D.model_to_digits(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 16.0]


def test_train_denoiser_learns_gaussian_data_and_is_deterministic():
    data = 0.5 + 0.2 * torch.randn(512, 2, generator=torch.Generator().manual_seed(14))
    config = D.DiffusionConfig(T=1000, steps=200, batch_size=128, lr=1e-2, ema=0.9)

    def run():
        torch.manual_seed(0)
        net = TimeMLP(dim=2, hidden=32, depth=2, embed_dim=8)
        return net, D.train_denoiser(net, data, config, progress=False)

    net, losses = run()
    _, again = run()
    assert losses == again
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    _, alpha_bar = D.make_schedule(config)
    samples = D.ddim_sample(net, torch.randn(2000, 2, generator=torch.Generator().manual_seed(15)),
                            alpha_bar, 50)
    torch.testing.assert_close(samples.median(0).values, torch.tensor([0.5, 0.5]), atol=0.1, rtol=0)
    # and the spread of the data (interquartile range 0.27), which a loss trained uphill would not give
    iqr = samples.quantile(0.75, dim=0) - samples.quantile(0.25, dim=0)
    assert 0.13 < iqr.min() and iqr.max() < 0.4  # measured 0.27 and 0.21


def test_ddim_sweep_runs_every_setting_from_the_same_noise():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(100))
    model = _random_eps_model()
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    sweep = D.ddim_sweep(model, x_T, alpha_bar, [5, 100], [0.0, 1.0], seed=3, progress=False)
    assert sorted(sweep) == [(5, 0.0), (5, 1.0), (100, 0.0), (100, 1.0)]
    torch.testing.assert_close(sweep[5, 0.0], D.ddim_sample(model, x_T, alpha_bar, 5))
    expected = D.ddim_sample(model, x_T, alpha_bar, 100, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sweep[100, 1.0], expected)
    with pytest.raises(ValueError, match="eta must be finite and >= 0"):
        D.ddim_sweep(model, x_T, alpha_bar, [5], [-1.0], progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        D.ddim_sweep(model, x_T, alpha_bar, [], [0.0], progress=False)


def test_ddim_sweep_with_the_quadratic_spacing():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(100))
    model = _random_eps_model()
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    sweep = D.ddim_sweep(model, x_T, alpha_bar, [10], [0.5], seed=3, progress=False, spacing="quadratic")
    tau = _paper_quadratic(100, 10)
    expected = D.ddim_sample(model, x_T, alpha_bar, tau, eta=0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sweep[10, 0.5], expected)
    with pytest.raises(ValueError, match="spacing"):
        D.ddim_sweep(model, x_T, alpha_bar, [10], [0.5], progress=False, spacing="log")


def test_train_denoiser_with_a_loss_fn_is_the_same_loop():
    """loss_fn sees the batch rows and the generator: the default loss passed by hand is bit-identical."""
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(22))
    config = D.DiffusionConfig(T=50, steps=20, batch_size=16, ema=0.5)
    seen = []

    def by_hand(model, index, alpha_bar, generator):
        seen.append(index)
        return D.epsilon_loss(model, data[index], alpha_bar, generator=generator)

    runs = []
    for loss_fn in (None, by_hand):
        torch.manual_seed(0)
        net = TimeMLP(dim=2, hidden=8, depth=1, embed_dim=4)
        losses = D.train_denoiser(net, data, config, progress=False, loss_fn=loss_fn)
        runs.append((losses, torch.cat([p.flatten() for p in net.parameters()])))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert len(seen) == 20 and all(i.shape == (16,) and i.dtype == torch.long for i in seen)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        D.train_denoiser(TimeMLP(dim=2, hidden=4, depth=1, embed_dim=4), data, config, progress=False,
                         loss_fn=lambda m, i, ab, g: m(data[i], D.scale_t(i % 50, 50).float()).pow(2))
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        D.train_denoiser(TimeMLP(dim=2), data, config, progress=False, loss_fn="mse")
    with pytest.raises(TypeError, match="desc must be a str"):
        D.train_denoiser(TimeMLP(dim=2), data, config, progress=False, desc=3)


# --- bad arguments --------------------------------------------------------------------------
_AB = D.alpha_bars(D.linear_beta_schedule(10))
_ZERO = TimeMLP(dim=2, hidden=4, depth=1, embed_dim=4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: D.ddim_timesteps(10, 11), ValueError, r"steps must be <= T=10"),
        (lambda: D.ddim_timesteps(10, 0), ValueError, "steps must be >= 1"),
        (lambda: D.ddim_timesteps(10, 2.5), TypeError, "steps must be an int"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, 20), ValueError, r"steps must be <= T=10"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, 5, eta=-0.1), ValueError,
         "eta must be finite and >= 0"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, 5, eta=float("nan")), ValueError, "eta"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, [3, 1]), ValueError, "strictly increasing"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, [0, 10]), ValueError, r"\[0, 9\]"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB, "all"), TypeError, "steps must be"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 3), _AB, 5), ValueError, r"x must have shape \(B, 2\)"),
        (lambda: D.ddim_sample(lambda x, t: x[:, :1], torch.zeros(3, 2), _AB, 5), ValueError,
         "model output must have the shape"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3), _AB, 5), ValueError, "x_T must be a batch"),
        (lambda: D.ddim_invert(_ZERO, torch.zeros(3, 2), _AB, 11), ValueError, "steps must be <= T"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), _AB.flip(0), 5), ValueError, "strictly decreasing"),
        (lambda: D.ddim_sample(_ZERO, torch.zeros(3, 2), [0.9, 0.5], 1), TypeError, "alpha_bar must be"),
        (lambda: D.q_sample(torch.zeros(3, 2), 0, torch.zeros(3, 3), _AB), ValueError,
         r"noise must have the shape of x0 \(3, 2\)"),
        (lambda: D.q_sample(torch.zeros(3, 2), 10, torch.zeros(3, 2), _AB), ValueError,
         r"t must lie in \[0, 9\]"),
        (lambda: D.q_sample(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), torch.zeros(3, 2), _AB),
         ValueError, r"t must have shape \(3,\)"),
        (lambda: D.q_sample(torch.zeros(3, 2), torch.zeros(3), torch.zeros(3, 2), _AB), TypeError, "integer"),
        (lambda: D.ddim_step(torch.zeros(3, 2), torch.zeros(2, 2), 0.5, 0.9), ValueError, "eps must have"),
        (lambda: D.ddim_step(torch.zeros(3, 2), torch.zeros(3, 2), 0.5, 0.9, eta=1.0), ValueError,
         "noise is required"),
        (lambda: D.ddim_step(torch.zeros(3, 2), torch.zeros(3, 2), 0.9, 0.5), ValueError,
         "alpha_bar_prev must be larger"),
        (lambda: D.ddim_step(torch.zeros(3, 2), torch.zeros(3, 2), 0.5, 0.9, clip_x0=0.0), ValueError,
         "clip_x0"),
        (lambda: D.ddpm_step(torch.zeros(3, 2), torch.zeros(3, 2), 0.1, 0.5, 0.9), ValueError,
         "noise is required"),
        (lambda: D.ddpm_step(torch.zeros(3, 2), torch.zeros(3, 2), 1.5, 0.5, 0.9), ValueError, "beta_t"),
        (lambda: D.ddim_sigma(0.5, 0.9, -1.0), ValueError, "eta must be finite and >= 0"),
        (lambda: D.ddim_sigma(0.0, 0.9, 1.0), ValueError, r"alpha_bar_t must be a finite number in \(0, 1\)"),
        (lambda: D.linear_beta_schedule(10, 0.1, 0.01), ValueError, "beta_start <= beta_end"),
        (lambda: D.linear_beta_schedule(1), ValueError, "T must be >= 2"),
        (lambda: D.cosine_beta_schedule(10, max_beta=1.0), ValueError, "max_beta"),
        (lambda: D.alpha_bars(torch.tensor([0.1, 1.0])), ValueError, r"betas must lie in \(0, 1\)"),
        (lambda: D.alpha_bars(torch.tensor([1, 2])), TypeError, "floating-point"),
        (lambda: D.make_schedule(D.DiffusionConfig(schedule="quadratic")), ValueError, "schedule must be"),
        (lambda: D.train_denoiser(_ZERO, torch.zeros(4, 2), D.DiffusionConfig(ema=1.0), progress=False),
         ValueError, r"ema must be a finite number in \[0, 1\)"),
        (lambda: D.train_denoiser(_ZERO, torch.zeros(4, 2), D.DiffusionConfig(steps=0), progress=False),
         ValueError, "steps must be >= 1"),
        (lambda: D.DigitsDenoiser()(torch.zeros(2, 8, 8), 0.1), ValueError, r"x must have shape \(B, 64\)"),
        (lambda: D.DigitsDenoiser(channels=30, groups=8), ValueError, "multiple of groups"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_slerp_endpoints_norm_and_orthogonal_closed_form():
    g = torch.Generator().manual_seed(17)
    a = torch.randn(5, 8, generator=g, dtype=torch.float64)
    b = torch.randn(5, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(D.slerp(a, b, 0.0), a)
    torch.testing.assert_close(D.slerp(a, b, 1.0), b)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms: the arc keeps them
    for w in (0.1, 0.5, 0.9):
        torch.testing.assert_close(D.slerp(a, b, w).norm(dim=1), a.norm(dim=1))
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    expected = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]])  # a third of the right angle
    torch.testing.assert_close(D.slerp(e1, e2, 1 / 3), expected)
    with pytest.raises(ValueError, match="parallel"):
        D.slerp(e1, 2 * e1, 0.5)
    with pytest.raises(ValueError, match=r"w must be a finite number in \[0, 1\]"):
        D.slerp(e1, e2, 1.5)
    with pytest.raises(ValueError, match="b must have the shape of a"):
        D.slerp(e1, torch.zeros(2, 2), 0.5)


def test_scale_t_maps_steps_to_the_unit_interval_and_refuses_others():
    torch.testing.assert_close(D.scale_t(torch.tensor([0, 5, 9]), 10), torch.tensor([0.0, 0.5, 0.9]))
    assert D.scale_t(3, 4).dtype == torch.float32 and D.scale_t(3, 4).item() == 0.75
    for bad in ([50], -1, torch.tensor([10]), torch.tensor([float("nan")])):
        with pytest.raises(ValueError, match=r"t must hold steps in \[0, T=10\)"):
            D.scale_t(bad, 10)  # [50] used to give 5.0, far outside what the network was trained on
    with pytest.raises(TypeError, match="t must be a step"):
        D.scale_t("3", 10)


def test_config_refuses_a_negative_clip_norm_and_other_bad_fields():
    # clip_grad_norm_ with a negative max_norm multiplies the gradient by a negative number
    with pytest.raises(ValueError, match=r"DiffusionConfig\.grad_clip must be finite and > 0, got -1"):
        D.DiffusionConfig(grad_clip=-1.0)
    with pytest.raises(ValueError, match=r"DiffusionConfig\.schedule must be one of"):
        D.DiffusionConfig(schedule="sigmoid")
    with pytest.raises(TypeError, match=r"DiffusionConfig\.batch_size must be an int"):
        D.DiffusionConfig(batch_size=2.5)
    config = D.DiffusionConfig()
    config.grad_clip = -1.0  # set after construction: the trainer checks again
    with pytest.raises(ValueError, match="grad_clip"):
        D.train_denoiser(TimeMLP(dim=2), torch.zeros(4, 2), config, progress=False)
    with pytest.raises(ValueError, match="data must be finite"):
        D.train_denoiser(TimeMLP(dim=2), torch.full((4, 2), float("nan")), D.DiffusionConfig(),
                         progress=False)


def test_steps_refuse_nan_and_integer_tensors_and_bad_numbers():
    x, eps = torch.zeros(3, 2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"eps must have the shape of x_t \(3, 2\)"):
        D.ddim_step(x, torch.zeros(3, 1), 0.5, 0.9)  # no broadcasting
    with pytest.raises(TypeError, match="x_t must be a floating-point tensor"):
        D.ddpm_step(x.long(), eps, 0.1, 0.5, 0.9, noise=torch.zeros(3, 2))
    with pytest.raises(TypeError, match="alpha_bar_t must be a real number"):
        D.ddim_sigma("a", 0.9, 0.0)
    with pytest.raises(ValueError, match="clip_x0 must be finite and > 0"):
        D.ddim_step(x, eps, 0.5, 0.9, clip_x0=-1.0)
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10))
    with pytest.raises(ValueError, match="x_T must be finite"):
        D.ddim_sample(lambda x, t: x, torch.full((2, 2), float("nan")), alpha_bar, 5)
    with pytest.raises(TypeError, match="model must be callable"):
        D.ddim_sample(None, torch.zeros(2, 2), alpha_bar, 5)
