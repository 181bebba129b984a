"""tutorlib.sde: scores from denoisers, DSM, annealed Langevin, VP/VE SDEs, reverse SDE and PF-ODE."""

import math

import pytest
import torch
from scipy.integrate import quad

from tutorlib import edm, sde

pytestmark = pytest.mark.usefixtures("one_thread")

f64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=f64)
COV = torch.tensor([[0.8, 0.3], [0.3, 0.4]], dtype=f64)


def test_score_from_gaussian_denoiser_is_the_gaussian_score():
    """x_t = s(x0 + σε) ~ N(s μ, s²(Σ + σ²I)): score = -(s²(Σ+σ²I))^{-1}(x - s μ)."""
    x = torch.randn(7, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    s, sigma = 0.6, 0.9
    ours = sde.score_from_denoiser(edm.gaussian_denoiser(MEAN, COV), x, s, sigma)
    cov_t = s**2 * (COV + sigma**2 * torch.eye(2, dtype=f64))
    expected = -(x - s * MEAN) @ torch.linalg.inv(cov_t)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_score_from_denoiser_takes_one_level_per_point():
    """Per-point levels (as annealed Langevin passes them): row i is the Gaussian score at sigma_i."""
    x = torch.randn(5, 2, dtype=f64, generator=torch.Generator().manual_seed(2))
    s, sigmas = 0.6, torch.tensor([0.1, 0.5, 0.9, 2.0, 7.0], dtype=f64)
    ours = sde.score_from_denoiser(edm.gaussian_denoiser(MEAN, COV), x, s, sigmas)
    for i, sigma in enumerate(sigmas.tolist()):
        cov_t = s**2 * (COV + sigma**2 * torch.eye(2, dtype=f64))
        expected = -(x[i] - s * MEAN) @ torch.linalg.inv(cov_t)
        torch.testing.assert_close(ours[i], expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"sigma must be a float or have shape \(5,\)"):
        sde.score_from_denoiser(edm.gaussian_denoiser(MEAN, COV), x, s, sigmas[:3])


def test_dsm_loss_of_a_denoiser_is_its_x0_error_over_sigma_squared():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(50, 2, generator=g, dtype=f64)
    eps = torch.randn(50, 2, generator=g, dtype=f64)
    sigma = torch.rand(50, generator=g, dtype=f64) + 0.1
    denoiser = edm.gaussian_denoiser(torch.zeros(2, dtype=f64), 0.5 * torch.eye(2, dtype=f64))

    def score(x, level):
        return (denoiser(x, level) - x) / level[:, None] ** 2

    loss = sde.dsm_loss(score, x0, sigma, eps)
    expected = (((denoiser(x0 + sigma[:, None] * eps, sigma) - x0) ** 2).sum(1) / sigma**2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_the_true_score_minimises_dsm():
    g = torch.Generator().manual_seed(2)
    n = 200_000
    x0 = MEAN + torch.randn(n, 2, generator=g, dtype=f64) @ torch.linalg.cholesky(COV).T
    eps = torch.randn(n, 2, generator=g, dtype=f64)
    sigma = torch.full((n,), 0.7, dtype=f64)
    exact = edm.gaussian_denoiser(MEAN, COV)

    def score(scale):
        return lambda x, level: scale * (exact(x, level) - x) / level[:, None] ** 2

    losses = {scale: sde.dsm_loss(score(scale), x0, sigma, eps).item() for scale in (0.8, 1.0, 1.2)}
    assert losses[1.0] < losses[0.8] and losses[1.0] < losses[1.2]


def test_vp_sde_marginal_and_schedule():
    vp = sde.VPSDE(0.1, 20.0)
    schedule = vp.schedule()
    for t in (0.01, 0.3, 1.0):
        integral, _ = quad(vp.beta, 0, t)
        tt = torch.tensor(t, dtype=f64)
        assert schedule.s(tt).item() == pytest.approx(math.exp(-0.5 * integral), rel=1e-10)
        assert vp.diffusion(t) ** 2 == pytest.approx(vp.beta(t))


def test_ve_sde_diffusion_is_the_growth_of_the_variance():
    ve = sde.VESDE(0.01, 50.0)
    h = 1e-6
    for t in (0.1, 0.5, 0.9):
        d_var = (ve.sigma(t + h) ** 2 - ve.sigma(t - h) ** 2) / (2 * h)
        assert ve.diffusion(t) ** 2 == pytest.approx(d_var, rel=1e-6)
    assert ve.sigma(0.0) == pytest.approx(0.01) and ve.sigma(1.0) == pytest.approx(50.0)


@pytest.mark.parametrize("process", [sde.VPSDE(), sde.VESDE()])
def test_probability_flow_drift_is_karras_ode(process):
    """Song et al.'s f - g²/2 ∇log p and Karras et al.'s eq. 4 are one ODE."""
    denoiser = edm.gaussian_denoiser(MEAN, COV)
    x = torch.randn(9, 2, dtype=f64, generator=torch.Generator().manual_seed(3))
    for t in (0.05, 0.4, 0.95):
        ours = sde.probability_flow_drift(process, denoiser, x, t)
        karras = edm.ode_drift(denoiser, process.schedule(), x, t)
        torch.testing.assert_close(ours, karras, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("process", [sde.VPSDE(), sde.VESDE(sigma_max=100.0)])
def test_reverse_sde_and_probability_flow_reproduce_the_gaussian_marginal(process):
    """The prior ignores the data (x_1 ~ s σ_max n), an error the ODE shrinks by about std/σ_max."""
    denoiser = edm.gaussian_denoiser(MEAN, COV)
    noise = torch.randn(10_000, 2, dtype=f64, generator=torch.Generator().manual_seed(4))
    s, sigma = (v.item() for v in (process.schedule().s(torch.tensor(process.t_end, dtype=f64)),
                                   process.schedule().sigma(torch.tensor(process.t_end, dtype=f64))))
    mean_t, cov_t = s * MEAN, s**2 * (COV + sigma**2 * torch.eye(2, dtype=f64))
    x_sde = sde.reverse_sde_sample(process, denoiser, noise, n_steps=1000,
                                   generator=torch.Generator().manual_seed(5))
    x_ode = sde.probability_flow_sample(process, denoiser, noise, n_steps=100, solver="heun")
    for x in (x_sde, x_ode):
        torch.testing.assert_close(x.mean(0), mean_t, atol=0.03, rtol=0)
        torch.testing.assert_close(torch.cov(x.T), cov_t, atol=0.03, rtol=0.04)
    # same marginals, different paths: the two samplers send the same noise to different points
    assert (x_sde - x_ode).norm(dim=1).mean() > 0.3


def test_annealed_langevin_samples_a_gaussian():
    denoiser = edm.gaussian_denoiser(MEAN, COV)

    def score(x, level):
        return (denoiser(x, level) - x) / level[:, None] ** 2

    sigmas = torch.logspace(1, -2, 10, dtype=f64)
    noise = torch.randn(10_000, 2, dtype=f64, generator=torch.Generator().manual_seed(6))
    x = sde.annealed_langevin(score, sigmas, noise, steps_per_level=100, step_size=2e-5,
                              generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(x.mean(0), MEAN, atol=0.05, rtol=0)
    # the final Tweedie step shrinks by Σ(Σ + σ_L²)^-1: negligible at σ_L = 0.01
    torch.testing.assert_close(torch.cov(x.T), COV, atol=0.05, rtol=0.06)


def test_langevin_reaches_the_stationary_variance_of_the_discretised_chain():
    """ULA on N(μ, v I): x' - μ = (1 - α/2v)(x - μ) + √α z has stationary variance v / (1 - α/4v).

    With α = 0.5 and v = 1 that is 8/7, not 1: the test tells the exact discrete chain from a
    wrong step (e.g. α instead of α/2 on the drift gives 4/3; √(2α) noise gives 16/7).
    """
    mean, v, sigma = torch.tensor([1.0, -2.0], dtype=f64), 0.75, 0.5  # v + σ² = 1

    def score(x, level):
        return -(x - mean) / (v + level[:, None] ** 2)

    start = torch.zeros(20_000, 2, dtype=f64)
    x = sde.langevin(score, start, sigma, n_steps=100, step_size=0.5,
                     generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(x.var(0), torch.full((2,), 1 / (1 - 0.5 / 4), dtype=f64), atol=0.04, rtol=0)


def test_langevin_keeps_the_mode_shares_of_its_start_and_annealing_fixes_them():
    """Song & Ermon's Section 3.2 on a 20/80 mixture: one small σ keeps the start's 50/50 split."""
    means, weights = torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=f64), torch.tensor([0.2, 0.8], dtype=f64)
    denoiser = edm.gaussian_mixture_denoiser(means, std=1.0, weights=weights)

    def score(x, level):
        return (denoiser(x, level) - x) / level[:, None] ** 2

    noise = torch.randn(2000, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    plain = sde.langevin(score, 20 * noise, 0.1, 300, 0.05, torch.Generator().manual_seed(1))
    levels = torch.logspace(math.log10(20.0), -1, 10, dtype=f64)
    annealed = sde.annealed_langevin(score, levels, noise, 50, 0.002, torch.Generator().manual_seed(2))
    assert abs((plain.sum(1) > 0).double().mean().item() - 0.5) < 0.06
    assert abs((annealed.sum(1) > 0).double().mean().item() - 0.8) < 0.05


def test_langevin_checks_its_arguments():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="n_steps"):
        sde.langevin(lambda x, s: x, x, 0.1, 0, 0.1)
    with pytest.raises(ValueError, match="step_size"):
        sde.langevin(lambda x, s: x, x, 0.1, 5, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        sde.langevin(lambda x, s: x, x, -0.1, 5, 0.1)
    with pytest.raises(ValueError, match="x must be finite"):
        sde.langevin(lambda x, s: x, torch.full((3, 2), float("inf")), 0.1, 5, 0.1)
    with pytest.raises(TypeError, match="score"):
        sde.langevin("score", x, 0.1, 5, 0.1)
    with pytest.raises(TypeError, match="generator"):
        sde.langevin(lambda x, s: x, x, 0.1, 5, 0.1, generator=3)


def test_bad_arguments_raise_with_the_argument_name():
    denoiser = edm.gaussian_denoiser(MEAN, COV)
    noise = torch.zeros(4, 2, dtype=f64)
    with pytest.raises(ValueError, match="n_steps"):
        sde.reverse_sde_sample(sde.VPSDE(), denoiser, noise, n_steps=0)
    with pytest.raises(ValueError, match="solver"):
        sde.probability_flow_sample(sde.VPSDE(), denoiser, noise, solver="rk45")
    with pytest.raises(ValueError, match="beta_max"):
        sde.VPSDE(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        sde.VESDE(sigma_min=3.0, sigma_max=2.0)
    with pytest.raises(ValueError, match="steps_per_level"):
        sde.annealed_langevin(lambda x, s: x, torch.tensor([1.0]), noise, steps_per_level=0)
    with pytest.raises(ValueError, match="step_size"):
        sde.annealed_langevin(lambda x, s: x, torch.tensor([1.0]), noise, step_size=-1.0)
    with pytest.raises(ValueError, match="sigmas"):
        sde.annealed_langevin(lambda x, s: x, torch.tensor([0.1, 1.0]), noise)
    with pytest.raises(ValueError, match="noise"):
        sde.reverse_sde_sample(sde.VESDE(), denoiser, torch.zeros(4, dtype=f64))
    with pytest.raises(ValueError, match="eps must match"):
        sde.dsm_loss(lambda x, s: x, torch.zeros(3, 2), torch.ones(3), torch.zeros(2, 2))


def test_sdes_and_samplers_check_their_arguments():
    with pytest.raises(ValueError, match=r"t_end must be a finite number in \[0, 1\)"):
        sde.VPSDE(t_end=-1.0)
    vp = sde.VPSDE()
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\]"):
        vp.beta(float("nan"))
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\]"):
        sde.VESDE().sigma(2.0)
    with pytest.raises(ValueError, match="noise must be finite"):
        sde.probability_flow_sample(vp, lambda x, s: x, torch.full((2, 2), float("nan")), n_steps=2)
    with pytest.raises(TypeError, match="sde must be a VPSDE or a VESDE"):
        sde.reverse_sde_sample("vp", lambda x, s: x, torch.zeros(2, 2), n_steps=2)
    with pytest.raises(ValueError, match="solver must be one of"):
        sde.probability_flow_sample(vp, lambda x, s: x, torch.zeros(2, 2), solver="rk4")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sde.dsm_loss(lambda x, s: x, torch.zeros(2, 2), torch.tensor([1.0, 0.0]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="s must be finite and > 0"):
        sde.score_from_denoiser(lambda x, s: x, torch.zeros(2, 2), -1.0, 0.5)
