"""tutorlib.cnf: the ODE solver, the divergences and the continuous flow against references.

References are independent of the code under test: ODE solutions from scipy.integrate and
scipy.linalg.expm, traces from full autograd Jacobians, Gaussian densities from scipy.stats, and
the closed-form density of a Gaussian mixture carried along a straight-line path (checked
against scipy and against the continuity equation by finite differences).
"""

import itertools

import numpy as np
import pytest
import torch
from scipy import integrate, linalg, stats
from scipy.special import logsumexp
from torch import nn

from tutorlib import cnf as fl


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """Tight tolerances need float64; restore the default afterwards for the other modules."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_rk4_matches_scipy_and_converges_at_fourth_order():
    def f(t, y):
        return torch.stack([y[1], -y[0] + torch.sin(torch.as_tensor(3 * t))])

    y0 = torch.tensor([1.0, 0.0])
    exact = integrate.solve_ivp(lambda t, y: [y[1], -y[0] + np.sin(3 * t)], (0, 2), [1, 0],
                                rtol=1e-12, atol=1e-12).y[:, -1]
    errors = {m: [np.abs(fl.odeint(f, y0, 0.0, 2.0, n, m)[-1].numpy() - exact).max() for n in (20, 40)]
              for m in ("rk4", "euler")}
    assert errors["rk4"][1] < 1e-6
    assert 12 < errors["rk4"][0] / errors["rk4"][1] < 20  # 2^4 = 16
    assert 1.6 < errors["euler"][0] / errors["euler"][1] < 2.4  # 2^1 = 2
    back = fl.odeint(f, fl.odeint(f, y0, 0.0, 2.0, 200)[-1], 2.0, 0.0, 200)[-1]
    torch.testing.assert_close(back, y0, atol=1e-9, rtol=0)


def test_exact_divergence_is_the_trace_of_the_jacobian():
    torch.manual_seed(0)
    net = fl.VelocityField(3, hidden=16)
    z = torch.randn(4, 3, requires_grad=True)
    div = fl.divergence_exact(net(z, 0.3), z)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: net(v[None], 0.3)[0], z[i].detach())
        assert div[i].item() == pytest.approx(torch.trace(jac).item(), abs=1e-12)


def test_hutchinson_averaged_over_all_sign_vectors_is_exact():
    torch.manual_seed(1)
    dim = 3
    net = fl.VelocityField(dim, hidden=16)
    z = torch.randn(5, dim, requires_grad=True)
    v = net(z, 0.7)
    signs = [torch.tensor(s, dtype=torch.float64) for s in itertools.product([-1, 1], repeat=dim)]
    mean = sum(fl.divergence_hutchinson(v, z, s.expand(5, dim)) for s in signs) / len(signs)
    torch.testing.assert_close(mean, fl.divergence_exact(v, z), atol=1e-12, rtol=0)


def test_continuous_flow_of_a_linear_field_gives_the_gaussian_scipy_computes():
    a = np.array([[0.3, -0.8], [0.5, -0.4]])

    class Linear(nn.Module):
        dim = 2

        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(a))

        def forward(self, z, t):
            return z @ self.a.T

    cnf = fl.ContinuousFlow(Linear(), n_steps=40)
    x = torch.randn(10, 2)
    m = linalg.expm(a)  # z_1 = e^A z_0 with z_0 ~ N(0, I)
    expected = stats.multivariate_normal(np.zeros(2), m @ m.T).logpdf(x.numpy())
    np.testing.assert_allclose(cnf.log_prob(x).detach().numpy(), expected, atol=1e-8)
    hutch = [cnf.log_prob(x, trace="hutchinson", eps=torch.tensor(s).expand(10, 2))
             for s in ([1.0, 1.0], [1.0, -1.0])]
    np.testing.assert_allclose(((hutch[0] + hutch[1]) / 2).detach().numpy(), expected, atol=1e-8)


def test_continuous_flow_density_integrates_to_one_and_hutchinson_is_unbiased():
    torch.manual_seed(3)
    cnf = fl.ContinuousFlow(fl.VelocityField(2, hidden=16), n_steps=4)
    grid = torch.linspace(-7, 7, 101)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([xx.ravel(), yy.ravel()], 1)
    p = cnf.log_prob(pts).exp()
    assert p.sum().item() * (grid[1] - grid[0]).item() ** 2 == pytest.approx(1.0, abs=5e-3)
    x = torch.randn(6, 2)
    exact = cnf.log_prob(x)
    pair = [cnf.log_prob(x, trace="hutchinson", eps=torch.tensor(s).expand(6, 2))
            for s in ([1.0, 1.0], [1.0, -1.0])]
    torch.testing.assert_close((pair[0] + pair[1]) / 2, exact, atol=1e-12, rtol=0)


def test_continuous_flow_trains_through_the_divergence():
    torch.manual_seed(0)
    cnf = fl.ContinuousFlow(fl.VelocityField(2, hidden=8), n_steps=2)
    loss = -cnf.log_prob(torch.randn(16, 2) * 0.5).mean()
    loss.backward()
    grads = [p.grad for p in cnf.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_continuous_flow_refuses_bad_arguments():
    cnf = fl.ContinuousFlow(fl.VelocityField(2, hidden=4))
    with pytest.raises(ValueError, match="trace must be 'exact' or 'hutchinson'"):
        fl.ContinuousFlow(fl.VelocityField(2), trace="skilling")
    with pytest.raises(ValueError, match="method must be 'euler' or 'rk4'"):
        fl.ContinuousFlow(fl.VelocityField(2), method="dopri5")
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        cnf.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="must be finite"):
        cnf.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="eps must be a tensor of the shape of x"):
        cnf.log_prob(torch.zeros(3, 2), trace="hutchinson", eps=torch.ones(2, 2))
    with pytest.raises(ValueError, match="takes none"):
        cnf.log_prob(torch.zeros(3, 2), trace="exact", eps=torch.ones(3, 2))
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        fl.odeint(lambda t, y: y, torch.zeros(2), 0.0, 1.0, n_steps=0)
    with pytest.raises(ValueError, match="eps must have the shape of z"):
        z = torch.zeros(3, 2, requires_grad=True)
        fl.divergence_hutchinson(z * 2, z, torch.ones(3, 3))


def test_odeint_and_divergences_check_their_arguments():
    with pytest.raises(ValueError, match="t1 must be a finite number"):
        fl.odeint(lambda t, y: y, torch.zeros(2), 0.0, float("nan"))
    with pytest.raises(ValueError, match="y0 must be finite"):
        fl.odeint(lambda t, y: y, torch.tensor([float("nan")]), 0.0, 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        fl.odeint(lambda t, y: y, torch.zeros(2), 0.0, 1.0, method="midpoint")
    z = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match="f must be computed from z with autograd"):
        fl.divergence_exact(torch.zeros(3, 2), z)
    with pytest.raises(ValueError, match=r"f must have the shape of z \(3, 2\)"):
        fl.divergence_exact((2 * z)[:, :1], z)
    with pytest.raises(ValueError, match="eps must be finite"):
        fl.divergence_hutchinson(2 * z, z, torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="n must be >= 1"):
        fl.ContinuousFlow(fl.VelocityField(2, hidden=4)).sample(0)


# --------------------------------------------------------------------------------------------
# a field whose density is known at every time
# --------------------------------------------------------------------------------------------
def ring(k: int = 5, radius: float = 2.0) -> torch.Tensor:
    angle = 2 * np.pi * np.arange(k) / k
    return torch.tensor(radius * np.stack([np.cos(angle), np.sin(angle)], 1))


def test_mixture_path_density_is_the_scipy_mixture_and_starts_at_the_base():
    means, w = ring(), torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15])
    path = fl.GaussianMixturePath(means, 0.3, w)
    x = torch.randn(30, 2) * 2
    for t in (0.0, 0.4, 1.0):
        var = (1 - t) ** 2 + (0.3 * t) ** 2
        comps = [np.log(wk) + stats.multivariate_normal(t * m, var * np.eye(2)).logpdf(x.numpy())
                 for wk, m in zip(w.numpy(), means.numpy(), strict=True)]
        np.testing.assert_allclose(path.log_prob(x, t).numpy(), logsumexp(comps, axis=0), rtol=1e-12)
    base = stats.multivariate_normal(np.zeros(2)).logpdf(x.numpy())
    np.testing.assert_allclose(path.log_prob(x, 0.0).numpy(), base)


@pytest.mark.parametrize("t", [0.05, 0.5, 0.9])
def test_mixture_path_satisfies_the_continuity_equation(t):
    """d/dt log p_t + v . grad log p_t + div v = 0, with d/dt by central differences."""
    path = fl.GaussianMixturePath(ring(), 0.25, torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15]))
    x = (torch.randn(20, 2) * 1.5).requires_grad_(True)
    h = 1e-5
    dlogp_dt = (path.log_prob(x, t + h) - path.log_prob(x, t - h)).detach() / (2 * h)
    (grad_logp,) = torch.autograd.grad(path.log_prob(x, t).sum(), x)
    v = path(x, t)
    div_autograd = fl.divergence_exact(v, x)
    residual = dlogp_dt + (v * grad_logp).sum(1) + div_autograd
    assert residual.abs().max().item() < 1e-6
    torch.testing.assert_close(path.divergence(x, t), div_autograd, atol=1e-10, rtol=0)


def test_mixture_path_velocity_is_the_flow_matching_regression_target():
    """v(z, t) = E[x - z_0 | z_t = z]: a Monte Carlo estimate by kernel weights agrees."""
    path = fl.GaussianMixturePath(ring(3, 1.5), 0.4)
    g = torch.Generator().manual_seed(0)
    n, t = 400_000, 0.6
    k = torch.randint(0, 3, (n,), generator=g)
    x1 = path.means[k] + 0.4 * torch.randn(n, 2, generator=g)
    z0 = torch.randn(n, 2, generator=g)
    zt = (1 - t) * z0 + t * x1
    query = torch.tensor([[0.3, 0.2]])
    near = ((zt - query) ** 2).sum(1) < 0.06**2  # samples of z_t in a small disc
    estimate = (x1 - z0)[near].mean(0)
    se = (x1 - z0)[near].std(0) / near.sum().sqrt()
    assert near.sum() > 300
    assert ((estimate - path(query, t)[0]).abs() < 4 * se + 0.02).all()


def test_continuous_flow_of_the_mixture_path_gives_the_mixture_density_at_fourth_order():
    path = fl.GaussianMixturePath(ring(), 0.3)
    x = path.means[torch.arange(40) % 5] + 0.3 * torch.randn(40, 2)
    truth = path.log_prob(x, 1.0)
    with torch.no_grad():
        errors = [(fl.ContinuousFlow(path, n_steps=n).log_prob(x) - truth).abs().max().item()
                  for n in (16, 32)]
    assert errors[1] < 1e-3
    assert 8 < errors[0] / errors[1] < 64  # RK4: 2^4 = 16, within a factor of 2 or so
    samples = fl.ContinuousFlow(path, n_steps=32).sample(4000, torch.Generator().manual_seed(1))
    nearest = torch.cdist(samples, path.means).min(1).values
    assert (nearest < 4 * 0.3).float().mean() > 0.99  # the path ends on the mixture


def test_mixture_path_refuses_bad_arguments():
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        fl.GaussianMixturePath(ring(), 0.0)
    with pytest.raises(ValueError, match="weights must be positive and sum to one"):
        fl.GaussianMixturePath(ring(), 0.3, torch.full((5,), 0.3))
    with pytest.raises(ValueError, match=r"weights must have shape \(5,\)"):
        fl.GaussianMixturePath(ring(), 0.3, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match=r"means must have shape \(K, D\)"):
        fl.GaussianMixturePath(torch.zeros(3), 0.3)
    path = fl.GaussianMixturePath(ring(), 0.3)
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\]"):
        path(torch.zeros(3, 2), 1.5)
    with pytest.raises(ValueError, match=r"z must have shape \(N, 2\)"):
        path.log_prob(torch.zeros(3, 3), 0.5)
