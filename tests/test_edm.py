"""tutorlib.edm: the (s, sigma) table, EDM's preconditioning, the sigma schedule and the samplers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from tutorlib import diffusion, edm

pytestmark = pytest.mark.usefixtures("one_thread")

f64 = torch.float64
ALL_ROWS = [edm.edm_schedule, edm.ve_schedule, edm.vp_schedule, edm.flow_matching_schedule]


def _gaussian_2d():
    mean = torch.tensor([1.0, -2.0], dtype=f64)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=f64)
    return mean, cov


# --------------------------------------------------------------------------------------------
# the table: each classic noising formula from its (s, sigma)
# --------------------------------------------------------------------------------------------
def test_ddpm_row_reproduces_q_sample_exactly():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, generator=g, dtype=f64), torch.randn(6, 3, generator=g, dtype=f64)
    alpha_bar = diffusion.alpha_bars(diffusion.linear_beta_schedule(1000))
    t = torch.tensor([0, 10, 250, 500, 900, 999])
    s, sigma = edm.ddpm_s_sigma(alpha_bar[t])
    ours = edm.add_noise(x0, eps, s, sigma)
    ab = alpha_bar[t][:, None]
    torch.testing.assert_close(ours, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, diffusion.q_sample(x0, t, eps, alpha_bar), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 0.99))
def test_flow_matching_ve_and_edm_rows(t):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 2, generator=g, dtype=f64), torch.randn(4, 2, generator=g, dtype=f64)
    tt = torch.tensor(t, dtype=f64)
    fm = edm.flow_matching_schedule()
    torch.testing.assert_close(edm.add_noise(x0, eps, fm.s(tt), fm.sigma(tt)), (1 - t) * x0 + t * eps)
    ve = edm.ve_schedule()
    torch.testing.assert_close(edm.add_noise(x0, eps, ve.s(tt), ve.sigma(tt)), x0 + math.sqrt(t) * eps)
    ed = edm.edm_schedule()
    torch.testing.assert_close(edm.add_noise(x0, eps, ed.s(tt), ed.sigma(tt)), x0 + t * eps)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 1.0))
def test_vp_row_is_the_vp_sde_marginal(t):
    """s(t) = exp(-1/2 ∫β), and s² + (sσ)² = 1: x_t = s x0 + sqrt(1 - s²) ε."""
    beta_min, beta_d = 0.1, 19.9
    integral, _ = quad(lambda u: beta_min + beta_d * u, 0, t)
    vp = edm.vp_schedule(beta_min, beta_d)
    tt = torch.tensor(t, dtype=f64)
    s, sigma = vp.s(tt).item(), vp.sigma(tt).item()
    assert s == pytest.approx(math.exp(-0.5 * integral), rel=1e-12)
    assert s**2 + (s * sigma) ** 2 == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("make", ALL_ROWS)
def test_schedule_derivatives_and_inverse(make):
    schedule = make()
    t = torch.linspace(0.05, 0.9, 17, dtype=f64, requires_grad=True)
    for fn, dot in ((schedule.s, schedule.s_dot), (schedule.sigma, schedule.sigma_dot)):
        (grad,) = torch.autograd.grad((fn(t) + 0 * t).sum(), t)  # + 0 t: constant rows have no graph
        torch.testing.assert_close(dot(t.detach()), grad, rtol=1e-10, atol=1e-12)
    t = t.detach()
    torch.testing.assert_close(schedule.sigma_inv(schedule.sigma(t)), t, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# exact denoisers
# --------------------------------------------------------------------------------------------
def test_gaussian_denoiser_is_the_posterior_mean():
    mean, cov = _gaussian_2d()
    x = torch.tensor([[0.3, 0.7], [-1.0, 4.0]], dtype=f64)
    sigma = torch.tensor([0.5, 2.0], dtype=f64)
    out = edm.gaussian_denoiser(mean, cov)(x, sigma)
    for i in range(2):
        expected = mean + cov @ np.linalg.inv(cov + sigma[i] ** 2 * torch.eye(2, dtype=f64)) @ (x[i] - mean)
        torch.testing.assert_close(out[i], expected, rtol=1e-12, atol=1e-12)


def test_mixture_denoiser_with_one_component_is_the_gaussian_one():
    mean = torch.tensor([[0.5, -1.0]], dtype=f64)
    x = torch.randn(5, 2, dtype=f64, generator=torch.Generator().manual_seed(2))
    sigma = torch.linspace(0.1, 3, 5, dtype=f64)
    mix = edm.gaussian_mixture_denoiser(mean, 0.7)(x, sigma)
    gauss = edm.gaussian_denoiser(mean[0], 0.49 * torch.eye(2, dtype=f64))(x, sigma)
    torch.testing.assert_close(mix, gauss, rtol=1e-12, atol=1e-12)


def test_mixture_denoiser_matches_a_monte_carlo_posterior_mean():
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=f64)
    g = torch.Generator().manual_seed(3)
    n = 400_000
    comp = torch.randint(0, 2, (n,), generator=g)
    x0 = means[comp] + 0.3 * torch.randn(n, 2, generator=g, dtype=f64)
    x_hat = torch.tensor([[0.4, 0.0]], dtype=f64)
    sigma = 1.0
    # self-normalised importance weights p(x_hat | x0) = N(x_hat; x0, σ²)
    w = torch.exp(-0.5 * ((x_hat - x0) ** 2).sum(1) / sigma**2)
    mc = (w[:, None] * x0).sum(0) / w.sum()
    ours = edm.gaussian_mixture_denoiser(means, 0.3)(x_hat, torch.tensor([sigma], dtype=f64))[0]
    torch.testing.assert_close(ours, mc, atol=0.02, rtol=0)


# --------------------------------------------------------------------------------------------
# preconditioning and loss
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 5.0, 80.0])
def test_preconditioning_gives_unit_variance_input_and_target(sigma):
    """Karras et al., Appendix B.6: Var[c_in x̂] = 1 and Var[target] = 1 for data of std σ_data."""
    g = torch.Generator().manual_seed(4)
    n, sigma_data = 400_000, 0.5
    x0 = sigma_data * math.sqrt(3) * (2 * torch.rand(n, 1, generator=g, dtype=f64) - 1)  # uniform, std σ_data
    eps = torch.randn(n, 1, generator=g, dtype=f64)
    s = torch.full((n,), sigma, dtype=f64)
    _, _, c_in, _ = edm.preconditioning(s, sigma_data)
    assert (c_in[:, None] * (x0 + sigma * eps)).var().item() == pytest.approx(1.0, abs=0.01)
    assert edm.effective_target(x0, eps, s, sigma_data).var().item() == pytest.approx(1.0, abs=0.01)


def test_preconditioning_formulas():
    sigma = torch.tensor([0.5, 2.0], dtype=f64)
    c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma, 0.5)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)


def test_edm_loss_is_the_regression_of_f_onto_the_effective_target():
    torch.manual_seed(0)
    model = edm.EDMDenoiser(dim=2, sigma_data=1.3).double()
    x0 = torch.randn(64, 2, dtype=f64)
    loss = edm.edm_loss(model, x0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # replay the same draws
    sigma = (-1.2 + 1.2 * torch.randn(64, generator=g, dtype=f64)).exp()
    eps = torch.randn(64, 2, generator=g, dtype=f64)
    # EDM's Table 1, written out here rather than taken from the code under test
    total = sigma**2 + 1.3**2
    c_skip, c_out = 1.3**2 / total, sigma * 1.3 / total.sqrt()
    c_in, c_noise = 1 / total.sqrt(), sigma.log() / 4
    x_hat = x0 + sigma[:, None] * eps
    raw = model.net(c_in[:, None] * x_hat, c_noise)
    target = (x0 - c_skip[:, None] * x_hat) / c_out[:, None]
    expected = ((raw - target) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)


def test_fit_lowers_the_edm_loss_and_is_deterministic():
    data = torch.randn(2000, 2, generator=torch.Generator().manual_seed(6)) * torch.tensor([1.0, 0.2])
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = edm.EDMDenoiser(2, sigma_data=0.7, hidden=32, depth=2)
        runs.append(edm.fit(model, edm.edm_loss, [data], edm.TrainConfig(steps=200, batch_size=128),
                            progress=False))
    assert runs[0] == runs[1]
    assert np.mean(runs[0][-50:]) < np.mean(runs[0][:20])
    # a check a sign error would fail: the trained denoiser is close to the exact one of this
    # Gaussian data (mean squared gap 2e-4 .. 1.4e-3, against 8e-3 .. 7e-2 before training)
    exact = edm.gaussian_denoiser(torch.zeros(2), torch.diag(torch.tensor([1.0, 0.04])))
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(1000, 2, generator=g) * torch.tensor([1.0, 0.2])
    for level, bound in ((0.2, 5e-4), (0.5, 1e-3), (1.0, 3e-3)):
        sigma = torch.full((1000,), level)
        x_hat = x0 + level * torch.randn(1000, 2, generator=g)
        with torch.no_grad():
            assert (model(x_hat, sigma) - exact(x_hat, sigma)).pow(2).mean().item() < bound


# --------------------------------------------------------------------------------------------
# sigma schedule and samplers
# --------------------------------------------------------------------------------------------
def test_karras_sigmas_endpoints_and_rho():
    s = edm.karras_sigmas(10, 0.002, 80.0, rho=7.0)
    assert s.shape == (11,) and s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert s[-1].item() == 0.0 and bool((s[1:] < s[:-1]).all())
    linear = edm.karras_sigmas(5, 1.0, 3.0, rho=1.0)
    torch.testing.assert_close(linear[:-1], torch.linspace(3.0, 1.0, 5, dtype=f64))
    assert edm.nfe(10, "euler") == 10 and edm.nfe(10, "heun") == 19


def _ode_error(solver, n_steps, schedule):
    """1-D Gaussian data N(0, v): x̂(σ) = x̂(σ_max) sqrt(v + σ²)/sqrt(v + σ_max²) exactly.

    (With s != 1 the error constants of this problem change sign between 16 and 512 steps, so
    the clean log-log slopes are measured on the s = 1 rows.)
    """
    v, sigma_max, sigma_min = 0.5, 4.0, 0.3
    denoiser = edm.gaussian_denoiser(torch.zeros(1, dtype=f64), torch.tensor([[v]], dtype=f64))
    sigmas = torch.linspace(sigma_max, sigma_min, n_steps + 1, dtype=f64)
    noise = torch.tensor([[1.0], [-2.0]], dtype=f64)
    x = edm.sample_ode(denoiser, sigmas, noise, solver, schedule)
    s_end = schedule.s(schedule.sigma_inv(torch.tensor(sigma_min, dtype=f64)))
    exact = noise * sigma_max * math.sqrt(v + sigma_min**2) / math.sqrt(v + sigma_max**2)
    return (x / s_end - exact).abs().max().item()


@pytest.mark.parametrize("make", [edm.edm_schedule, edm.ve_schedule])
def test_heun_is_second_order_and_euler_first_order(make):
    schedule = make()
    for solver, order in (("euler", 1), ("heun", 2)):
        errors = [_ode_error(solver, n, schedule) for n in (16, 32, 64, 128)]
        slopes = np.diff(np.log(errors)) / np.log(2)
        assert np.allclose(slopes, -order, atol=0.15), (solver, errors)


@pytest.mark.parametrize("make", ALL_ROWS)
def test_ode_sampler_reproduces_a_gaussian(make):
    mean, cov = _gaussian_2d()
    noise = torch.randn(40_000, 2, generator=torch.Generator().manual_seed(7), dtype=f64)
    x = edm.sample_ode(edm.gaussian_denoiser(mean, cov), edm.karras_sigmas(256, 0.002, 200.0), noise,
                       "heun", make())
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.04, rtol=0.03)


def test_stochastic_sampler_reproduces_a_gaussian_and_churn_zero_is_heun():
    mean, cov = _gaussian_2d()
    denoiser = edm.gaussian_denoiser(mean, cov)
    noise = torch.randn(40_000, 2, generator=torch.Generator().manual_seed(8), dtype=f64)
    sigmas = edm.karras_sigmas(128, 0.002, 200.0)
    x = edm.sample_stochastic(denoiser, sigmas, noise, churn=40.0, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.04, rtol=0.03)
    coarse = sigmas[::8].contiguous()  # 16 steps, ending at 0
    torch.testing.assert_close(edm.sample_stochastic(denoiser, coarse, noise[:50], churn=0.0),
                               edm.sample_ode(denoiser, coarse, noise[:50], "heun"))


def test_ddim_is_euler_on_the_edm_ode():
    """Karras et al., Section 3: deterministic DDIM = Euler in x/s with s = 1, σ = t."""
    mean, cov = _gaussian_2d()
    denoiser = edm.gaussian_denoiser(mean, cov)
    alpha_bar = diffusion.alpha_bars(diffusion.linear_beta_schedule(1000))
    steps = diffusion.ddim_timesteps(1000, 10)
    _, sigma = edm.ddpm_s_sigma(alpha_bar[steps])
    sigmas = torch.cat([sigma.flip(0), torch.zeros(1, dtype=f64)])
    noise = torch.randn(100, 2, generator=torch.Generator().manual_seed(10), dtype=f64)
    x_T = noise * (1 - alpha_bar[steps[-1]]).sqrt()
    ddim = diffusion.ddim_sample(edm.eps_model_from_denoiser(denoiser, alpha_bar), x_T, alpha_bar, steps)
    euler = edm.sample_ode(denoiser, sigmas, noise, "euler")
    torch.testing.assert_close(ddim, euler, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------
def test_bad_arguments_raise_with_the_argument_name():
    d = edm.gaussian_denoiser(*_gaussian_2d())
    sig = edm.karras_sigmas(4)
    noise = torch.zeros(3, 2, dtype=f64)
    with pytest.raises(ValueError, match="n_steps"):
        edm.karras_sigmas(0)
    with pytest.raises(TypeError, match="n_steps"):
        edm.karras_sigmas(2.5)
    with pytest.raises(ValueError, match="sigma_min"):
        edm.karras_sigmas(4, sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="rho"):
        edm.karras_sigmas(4, rho=0.0)
    with pytest.raises(ValueError, match="churn"):
        edm.sample_stochastic(d, sig, noise, churn=-1.0)
    with pytest.raises(ValueError, match="solver"):
        edm.sample_ode(d, sig, noise, solver="rk4")
    with pytest.raises(ValueError, match="sigmas"):
        edm.sample_ode(d, sig.flip(0), noise)
    with pytest.raises(ValueError, match="noise"):
        edm.sample_ode(d, sig, torch.zeros(3, dtype=f64))
    with pytest.raises(ValueError, match="x0 and eps"):
        edm.add_noise(torch.zeros(3, 2), torch.zeros(4, 2), 1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_data"):
        edm.EDMDenoiser(sigma_data=0.0)
    with pytest.raises(ValueError, match="cov"):
        edm.gaussian_denoiser(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="alpha_bar"):
        edm.ddpm_s_sigma(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="tensors"):
        edm.fit(edm.EDMDenoiser(), edm.edm_loss, [torch.zeros(3, 2), torch.zeros(4, 2)], progress=False)


def test_eps_model_refuses_steps_outside_the_table():
    alpha_bar = torch.linspace(0.99, 0.01, 10, dtype=f64)
    exact = edm.gaussian_denoiser(torch.zeros(2, dtype=f64), torch.eye(2, dtype=f64))
    model = edm.eps_model_from_denoiser(exact, alpha_bar)
    x = torch.zeros(3, 2, dtype=f64)
    assert model(x, torch.full((3,), 0.5)).shape == (3, 2)
    for bad in (-0.1, 1.0):  # t = -1 used to wrap around to the noisiest step
        with pytest.raises(ValueError, match=r"t_scaled must be t / T with t in \[0, 10\)"):
            model(x, torch.tensor([bad]))
    with pytest.raises(ValueError, match="alpha_bar must be finite"):
        edm.eps_model_from_denoiser(lambda x, s: x, torch.tensor([0.5, float("nan")]))


def test_edm_helpers_check_their_arguments():
    with pytest.raises(ValueError, match=r"TrainConfig\.warmup must be >= 0"):
        edm.TrainConfig(warmup=-1)
    with pytest.raises(ValueError, match="sigma must be a number or a tensor"):
        edm.add_noise(torch.zeros(4, 2), torch.zeros(4, 2), 1.0, torch.ones(4, 1))
    with pytest.raises(ValueError, match=r"eps must have shape \(B, d\) with B = 4"):
        edm.effective_target(torch.zeros(4, 2), torch.zeros(3, 2), torch.ones(4), 1.0)
    with pytest.raises(TypeError, match="sigma must be a floating-point tensor"):
        edm.preconditioning(torch.tensor([1]), 1.0)
    with pytest.raises(ValueError, match="solver must be one of"):
        edm.nfe(3, "rk4")
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        edm.ode_drift(lambda x, s: x, "edm", torch.zeros(2, 2), 0.5)
    with pytest.raises(ValueError, match="p_std must be finite and > 0"):
        edm.edm_loss(edm.EDMDenoiser(), torch.zeros(4, 2), p_std=-1.0)
