"""tutorlib.ot: optimal transport, checked against POT and SciPy (the libraries a practitioner uses)."""

import math
import warnings

import numpy as np
import ot as pot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from scipy.stats import wasserstein_distance as scipy_w1

from tutorlib import ot as tot

f64 = torch.float64


def random_problem(seed: int, n: int, m: int, zeros: bool = False, d: int = 2):
    """Random weights (optionally with empty bins), points and a squared-Euclidean cost, in float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=f64) + 0.05
    b = torch.rand(m, generator=g, dtype=f64) + 0.05
    if zeros and n > 1:
        a[torch.randint(0, n, (1,), generator=g)] = 0.0
    if zeros and m > 1:
        b[torch.randint(0, m, (1,), generator=g)] = 0.0
    x = torch.randn(n, d, generator=g, dtype=f64)
    y = torch.randn(m, d, generator=g, dtype=f64) + 0.5
    return a / a.sum(), b / b.sum(), x, y, tot.cost_matrix(x, y)


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


# --------------------------------------------------------------------------------------------
# the cost matrix
# --------------------------------------------------------------------------------------------
def test_cost_matrix_matches_pot_dist():
    _, _, x, y, M = random_problem(0, 7, 5)
    np.testing.assert_allclose(np_(M), pot.dist(np_(x), np_(y), metric="sqeuclidean"), rtol=1e-12)
    np.testing.assert_allclose(np_(tot.cost_matrix(x, y, p=1)), pot.dist(np_(x), np_(y), metric="euclidean"),
                               rtol=1e-12)


# --------------------------------------------------------------------------------------------
# 1-D closed form
# --------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 15), st.integers(1, 15), st.sampled_from([1, 1.5, 2, 3]),
       st.booleans())
def test_wasserstein_1d_matches_pot_scipy_and_the_linear_program(seed, n, m, p, weighted):
    a, b, x, y, _ = random_problem(seed, n, m, zeros=weighted, d=1)
    x, y = x[:, 0], y[:, 0]
    xw, yw = (a, b) if weighted else (None, None)
    ours = tot.wasserstein_1d(x, y, p=p, x_weights=xw, y_weights=yw).item()
    xw_np, yw_np = (np_(xw), np_(yw)) if weighted else (None, None)
    ref = pot.wasserstein_1d(np_(x), np_(y), xw_np, yw_np, p=p)  # POT returns W_p^p
    assert ours**p == pytest.approx(ref, rel=1e-10, abs=1e-13)
    if p == 1:
        assert ours == pytest.approx(scipy_w1(np_(x), np_(y), xw_np, yw_np), rel=1e-10, abs=1e-13)
    # the closed form is the optimum of the linear program with cost |x - y|^p
    aw = torch.full((n,), 1 / n, dtype=f64) if xw is None else xw
    bw = torch.full((m,), 1 / m, dtype=f64) if yw is None else yw
    lp = tot.emd_cost(aw, bw, (x[:, None] - y[None, :]).abs() ** p).item()
    assert ours**p == pytest.approx(lp, rel=1e-8, abs=1e-12)


def test_wasserstein_1d_is_batched_over_leading_dimensions():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 4, 20, generator=g, dtype=f64), torch.randn(3, 4, 9, generator=g, dtype=f64)
    w = torch.rand(9, generator=g, dtype=f64)
    w = w / w.sum()
    batched = tot.wasserstein_1d(x, y, p=2, y_weights=w)
    assert batched.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            single = tot.wasserstein_1d(x[i, j], y[i, j], 2, None, w).item()
            assert batched[i, j].item() == pytest.approx(single, rel=1e-12)


def test_wasserstein_1d_of_a_shift_is_the_shift_and_is_symmetric():
    x = torch.randn(50, generator=torch.Generator().manual_seed(2), dtype=f64)
    for p in (1, 2, 4):
        assert tot.wasserstein_1d(x, x + 0.7, p=p).item() == pytest.approx(0.7, rel=1e-12)
    y = x**2
    assert tot.wasserstein_1d(x, y, 2).item() == pytest.approx(tot.wasserstein_1d(y, x, 2).item(), rel=1e-12)


def test_wasserstein_1d_gradients_flow_to_positions_and_weights():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, generator=g, dtype=f64, requires_grad=True)
    y = torch.randn(4, generator=g, dtype=f64) + 1
    w = torch.rand(6, generator=g, dtype=f64)
    w = (w / w.sum()).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x_: tot.wasserstein_1d(x_, y, p=2, x_weights=w.detach()), (x,))
    tot.wasserstein_1d(x, y, p=2, x_weights=w).backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# the exact problem (linear program)
# --------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 12), st.booleans())
def test_emd_matches_pot_and_has_the_right_marginals(seed, n, m, zeros):
    a, b, _, _, M = random_problem(seed, n, m, zeros=zeros)
    plan = tot.emd(a, b, M)
    assert plan.shape == (n, m) and plan.dtype == f64
    assert (plan >= 0).all()
    np.testing.assert_allclose(np_(plan.sum(1)), np_(a), atol=1e-9)
    np.testing.assert_allclose(np_(plan.sum(0)), np_(b), atol=1e-9)
    ref = pot.emd2(np_(a), np_(b), np_(M))
    assert (plan * M).sum().item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert tot.emd_cost(a, b, M).item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert int((plan > 1e-12).sum()) <= n + m - 1  # a vertex of the transport polytope


def test_emd_with_uniform_equal_sizes_is_an_assignment():
    *_, M = random_problem(4, 25, 25)
    u = torch.full((25,), 1 / 25, dtype=f64)
    plan = tot.emd(u, u, M)
    rows, cols = linear_sum_assignment(np_(M))
    assert (plan * M).sum().item() == pytest.approx(M[rows, cols].mean().item(), rel=1e-10)
    assert torch.allclose(plan * 25, (plan * 25).round(), atol=1e-8)  # a permutation matrix / n (Birkhoff)


def test_emd_cost_gradient_is_the_plan():
    a, b, _, _, M = random_problem(5, 6, 8)
    M = M.clone().requires_grad_(True)
    tot.emd_cost(a, b, M).backward()
    assert torch.allclose(M.grad, tot.emd(a, b, M.detach()))


def test_monge_cannot_split_a_point_but_kantorovich_can():
    one, halves = torch.ones(1, dtype=f64), torch.tensor([0.5, 0.5], dtype=f64)
    plan = tot.emd(one, halves, torch.tensor([[1.0, 2.0]], dtype=f64))
    assert torch.allclose(plan, torch.tensor([[0.5, 0.5]], dtype=f64))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 10), st.integers(1, 10))
def test_exact_dual_potentials_strong_duality_feasibility_and_slackness(seed, n, m):
    a, b, _, _, M = random_problem(seed, n, m)
    f, g = tot.dual_potentials(a, b, M)
    assert f.shape == (n,) and g.shape == (m,)
    ref = pot.emd2(np_(a), np_(b), np_(M))
    assert (a @ f + b @ g).item() == pytest.approx(ref, rel=1e-8, abs=1e-10)  # strong duality
    slack = M - f[:, None] - g[None, :]
    assert slack.min().item() >= -1e-8  # f_i + g_j <= M_ij
    plan = tot.emd(a, b, M)
    assert (slack[plan > 1e-10].abs().max().item()) < 1e-8  # complementary slackness


# --------------------------------------------------------------------------------------------
# Sinkhorn
# --------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 15), st.integers(2, 15), st.sampled_from([2.0, 0.5, 0.1]),
       st.booleans())
def test_sinkhorn_matches_pot(seed, n, m, reg, zeros):
    a, b, _, _, M = random_problem(seed, n, m, zeros=zeros)
    result = tot.sinkhorn_solve(a, b, M, reg, max_iter=100_000, tol=1e-12)
    assert result.converged
    # POT divides by the weights, so it gets the problem without the empty bins; they get no mass
    rows, cols = np_(a > 0), np_(b > 0)
    a_, b_, M_ = np_(a)[rows], np_(b)[cols], np_(M)[rows][:, cols]
    ref_plan = np.zeros((n, m))
    ref_plan[np.ix_(rows, cols)] = pot.sinkhorn(a_, b_, M_, reg, numItermax=100_000, stopThr=1e-13)
    np.testing.assert_allclose(np_(result.plan), ref_plan, atol=1e-11)
    ref_cost = pot.sinkhorn2(a_, b_, M_, reg, numItermax=100_000, stopThr=1e-13)
    assert result.cost.item() == pytest.approx(float(ref_cost), rel=1e-9)
    assert tot.sinkhorn_cost(a, b, M, reg, max_iter=100_000, tol=1e-12).item() == pytest.approx(
        float(ref_cost), rel=1e-9)
    np.testing.assert_allclose(np_(result.plan.sum(1)), np_(a), atol=1e-11)
    np.testing.assert_allclose(np_(result.plan.sum(0)), np_(b), atol=1e-11)


def test_sinkhorn_entropic_value_is_cost_plus_kl():
    a, b, _, _, M = random_problem(6, 9, 11)
    reg = 0.3
    result = tot.sinkhorn_solve(a, b, M, reg, max_iter=100_000, tol=1e-13)
    P = pot.sinkhorn(np_(a), np_(b), np_(M), reg, numItermax=100_000, stopThr=1e-14)
    kl = np.sum(P * np.log(P / np.outer(np_(a), np_(b))))
    assert result.value.item() == pytest.approx((P * np_(M)).sum() + reg * kl, rel=1e-10)


def separated_problem(n: int = 15):
    """Two tight clouds 5 apart: every cost is ~25, so exp(-M/reg) underflows for small reg."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 2, generator=g, dtype=f64) * 0.3
    y = torch.randn(n + 3, 2, generator=g, dtype=f64) * 0.3 + torch.tensor([5.0, 0.0], dtype=f64)
    a, b = torch.rand(n, generator=g, dtype=f64) + 0.05, torch.rand(n + 3, generator=g, dtype=f64) + 0.05
    return a / a.sum(), b / b.sum(), tot.cost_matrix(x, y)


def entropy(w: torch.Tensor) -> float:
    return -(w * w.log()).sum().item()


def test_sinkhorn_is_stable_in_the_log_domain_where_plain_sinkhorn_fails():
    a, b, M = separated_problem()
    reg = 0.02
    assert (torch.exp(-M / reg) == 0).all()  # the Gibbs kernel K = exp(-M/reg) is all zeros in float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = pot.sinkhorn2(np_(a), np_(b), np_(M), reg, numItermax=10_000)
    exact = pot.emd2(np_(a), np_(b), np_(M))
    assert not np.isfinite(plain) or abs(plain - exact) > 0.5 * exact  # POT's plain Sinkhorn fails
    result = tot.sinkhorn_solve(a, b, M, reg, max_iter=10_000, tol=1e-9)
    assert result.converged and torch.isfinite(result.plan).all()
    np.testing.assert_allclose(np_(result.plan.sum(0)), np_(b), atol=1e-12)
    np.testing.assert_allclose(np_(result.plan.sum(1)), np_(a), atol=1e-9)
    ref = pot.sinkhorn2(np_(a), np_(b), np_(M), reg, method="sinkhorn_log", numItermax=10_000, stopThr=1e-12)
    assert result.cost.item() == pytest.approx(float(ref), rel=1e-8)
    # entropic cost minus exact cost is in [0, reg * min(H(a), H(b))]
    assert 0 <= result.cost.item() - exact <= reg * min(entropy(a), entropy(b))


def test_sinkhorn_float32_small_reg_stays_finite_and_accurate():
    a, b, M = separated_problem()
    reg = 0.12  # M / reg > 120 everywhere: exp(-M/reg) underflows in float32 (below ~1e-45)
    a32, b32, M32 = a.float(), b.float(), M.float()
    assert (torch.exp(-M32 / reg) == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = pot.sinkhorn2(np_(a32), np_(b32), np_(M32), reg)
    ours64 = tot.sinkhorn_solve(a, b, M, reg, max_iter=10_000)
    assert not np.isfinite(plain) or abs(plain - ours64.cost.item()) > 0.5 * ours64.cost.item()
    ours32 = tot.sinkhorn_solve(a32, b32, M32, reg, max_iter=10_000)
    assert ours32.converged and torch.isfinite(ours32.plan).all()
    assert ours32.cost.item() == pytest.approx(ours64.cost.item(), rel=1e-5)
    np.testing.assert_allclose(np_(ours32.plan.sum(0)), np_(b32), atol=1e-5)


@pytest.mark.parametrize("reg", [1.0, 0.1, 0.01])
def test_sinkhorn_cost_is_within_reg_log_n_of_the_exact_cost(reg):
    *_, M = random_problem(9, 12, 18)
    a, b = torch.full((12,), 1 / 12, dtype=f64), torch.full((18,), 1 / 18, dtype=f64)
    exact = pot.emd2(np_(a), np_(b), np_(M))
    gap = tot.sinkhorn_cost(a, b, M, reg, max_iter=100_000).item() - exact
    assert -1e-9 <= gap <= reg * math.log(12) + 1e-9


def test_sinkhorn_is_batched_and_broadcasts():
    problems = [random_problem(s, 6, 7) for s in range(4)]
    a = torch.stack([p[0] for p in problems])  # (4, 6)
    b = torch.stack([p[1] for p in problems])  # (4, 7)
    M = torch.stack([p[4] for p in problems])  # (4, 6, 7)
    batched = tot.sinkhorn_solve(a, b, M, 0.2, tol=1e-12)
    assert batched.plan.shape == (4, 6, 7) and batched.cost.shape == (4,)
    for k, (ak, bk, _, _, Mk) in enumerate(problems):
        single = tot.sinkhorn(ak, bk, Mk, 0.2, tol=1e-12)
        np.testing.assert_allclose(np_(batched.plan[k]), np_(single), atol=1e-11)
    shared = tot.sinkhorn(problems[0][0], problems[0][1], M, 0.2)  # one (a, b) for every M
    assert shared.shape == (4, 6, 7)
    np.testing.assert_allclose(np_(shared[2].sum(0)), np_(problems[0][1]), atol=1e-12)


def test_sinkhorn_value_gradient_is_the_plan_and_matches_finite_differences():
    a, b, x, y, _ = random_problem(10, 5, 6)
    reg = 0.5
    M = tot.cost_matrix(x, y).requires_grad_(True)
    result = tot.sinkhorn_solve(a, b, M, reg, tol=1e-13, max_iter=10_000)
    result.value.backward()
    np.testing.assert_allclose(np_(M.grad), np_(result.plan), atol=1e-10)  # envelope theorem
    # and with respect to the points, against central differences
    def value(points):
        return tot.sinkhorn_solve(a, b, tot.cost_matrix(points, y), reg, tol=1e-13, max_iter=10_000).value

    x = x.clone().requires_grad_(True)
    value(x).backward()
    h, numeric = 1e-6, torch.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = torch.zeros_like(x)
        e[idx] = h
        numeric[idx] = (value(x.detach() + e) - value(x.detach() - e)) / (2 * h)
    np.testing.assert_allclose(np_(x.grad), np_(numeric), atol=1e-7)


def test_sinkhorn_warns_with_advice_when_it_stops_early():
    a, b, _, _, M = random_problem(11, 10, 10)
    with pytest.warns(tot.ConvergenceWarning, match=r"max_iter=3.*raise reg"):
        result = tot.sinkhorn_solve(a, b, M, 0.01, max_iter=3)
    assert not result.converged and result.n_iter == 3 and len(result.errors) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converging runs are silent
        tot.sinkhorn(a, b, M, 1.0)


def test_sinkhorn_errors_decrease_and_small_reg_needs_more_iterations():
    a, b, _, _, M = random_problem(12, 20, 20)
    iters = [tot.sinkhorn_solve(a, b, M / M.max(), reg, max_iter=100_000).n_iter for reg in (0.3, 0.1, 0.03)]
    assert iters[0] < iters[1] < iters[2]


def test_dual_potentials_entropic_are_the_sinkhorn_potentials():
    a, b, _, _, M = random_problem(13, 7, 9)
    f, g = tot.dual_potentials(a, b, M, reg=0.1, tol=1e-12, max_iter=10_000)
    plan = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - M) / 0.1)
    ref = pot.sinkhorn(np_(a), np_(b), np_(M), 0.1, numItermax=100_000, stopThr=1e-13)
    np.testing.assert_allclose(np_(plan), ref, atol=1e-11)


# --------------------------------------------------------------------------------------------
# Sinkhorn divergence and interpolation
# --------------------------------------------------------------------------------------------
def test_sinkhorn_divergence_matches_its_definition_with_pot_plans():
    _, _, x, y, _ = random_problem(14, 12, 9)
    reg = 0.4

    def ot_eps(u, v):  # <P, M> + reg * KL(P | a x b), from POT's plan
        a, b = np.full(len(u), 1 / len(u)), np.full(len(v), 1 / len(v))
        M = pot.dist(np_(u), np_(v))
        P = pot.sinkhorn(a, b, M, reg, numItermax=100_000, stopThr=1e-14)
        return (P * M).sum() + reg * np.sum(P * np.log(P / np.outer(a, b)))

    ref = ot_eps(x, y) - 0.5 * (ot_eps(x, x) + ot_eps(y, y))
    ours = tot.sinkhorn_divergence(x, y, reg, tol=1e-13, max_iter=100_000).item()
    assert ours == pytest.approx(ref, rel=1e-9)


def test_sinkhorn_divergence_is_zero_on_equal_clouds_positive_otherwise_and_symmetric():
    _, _, x, y, _ = random_problem(15, 10, 10)
    assert abs(tot.sinkhorn_divergence(x, x, 0.5).item()) < 1e-9
    s_xy = tot.sinkhorn_divergence(x, y, 0.5, max_iter=100_000).item()
    s_yx = tot.sinkhorn_divergence(y, x, 0.5, max_iter=100_000).item()
    assert s_xy > 0.1 and s_xy == pytest.approx(s_yx, rel=1e-8)
    x = x.clone().requires_grad_(True)
    tot.sinkhorn_divergence(x, y, 0.5, max_iter=100_000).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_displacement_interpolation_is_a_constant_speed_w2_geodesic():
    a, b, x, y, M = random_problem(16, 8, 11)
    plan = tot.emd(a, b, M)
    w2 = math.sqrt((plan * M).sum().item())
    for t in (0.0, 0.3, 1.0):
        points, weights = tot.displacement_interpolation(x, y, plan, t)
        assert weights.sum().item() == pytest.approx(1.0, abs=1e-10)
        from_x = math.sqrt(pot.emd2(np_(a), np_(weights), np_(tot.cost_matrix(x, points))))
        to_y = math.sqrt(pot.emd2(np_(weights), np_(b), np_(tot.cost_matrix(points, y))))
        assert from_x == pytest.approx(t * w2, abs=1e-7)
        assert to_y == pytest.approx((1 - t) * w2, abs=1e-7)


# --------------------------------------------------------------------------------------------
# the dual view: the critic
# --------------------------------------------------------------------------------------------
class LinearCritic(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return x @ self.w


def test_gradient_penalty_and_lipschitz_of_a_linear_critic():
    g = torch.Generator().manual_seed(17)
    x, y = torch.randn(30, 2, generator=g, dtype=f64), torch.randn(30, 2, generator=g, dtype=f64)
    unit = LinearCritic(torch.tensor([0.6, 0.8], dtype=f64))
    assert tot.gradient_penalty(unit, x, y, g).item() == pytest.approx(0.0, abs=1e-14)
    steep = LinearCritic(torch.tensor([1.5, 2.0], dtype=f64))  # gradient norm 2.5
    assert tot.gradient_penalty(steep, x, y, g).item() == pytest.approx(1.5**2, rel=1e-12)
    assert tot.lipschitz_on_support(steep, torch.cat([x, y])) == pytest.approx(2.5, rel=1e-6)
    expected = ((x.mean(0) - y.mean(0)) @ unit.w).item()
    assert tot.critic_estimate(unit, x, y).item() == pytest.approx(expected, rel=1e-12)


def test_critic_estimate_over_lipschitz_is_a_certified_lower_bound_on_w1():
    """Kantorovich–Rubinstein: for any f, (mean f(x) - mean f(y)) / Lip(f on the support) <= W1."""
    torch.manual_seed(0)
    _, _, x, y, _ = random_problem(18, 40, 40)
    u = torch.full((40,), 1 / 40, dtype=f64)
    w1 = pot.emd2(np_(u), np_(u), np_(tot.cost_matrix(x, y, p=1)))
    for _ in range(5):
        critic = tot.Critic(2, 16).double()
        bound = tot.critic_estimate(critic, x, y).item() / tot.lipschitz_on_support(critic, torch.cat([x, y]))
        assert bound <= w1 + 1e-12


def test_c_transform_of_the_exact_potential_is_an_optimal_1_lipschitz_critic():
    a, b, x, y, _ = random_problem(24, 15, 20)
    M1 = tot.cost_matrix(x, y, p=1)
    f, g = tot.dual_potentials(a, b, M1)
    w1 = pot.emd2(np_(a), np_(b), np_(M1))

    def critic(z):
        return tot.c_transform(z, y, g)

    assert (critic(x) >= f - 1e-9).all()  # the c-transform is the largest feasible f
    # Kantorovich–Rubinstein with weights: sum_i a_i f(x_i) - sum_j b_j f(y_j) = W1
    assert (a @ critic(x) - b @ critic(y)).item() == pytest.approx(w1, rel=1e-9)
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=f64) * 3
    assert tot.lipschitz_on_support(critic, torch.cat([x, y, z])) <= 1 + 1e-9
    with pytest.raises(ValueError, match=r"g must have shape \(len\(y\),\) = \(20,\)"):
        tot.c_transform(x, y, f)


@pytest.fixture
def one_thread():
    """Tiny networks are overhead-bound: one thread is much faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_critic_estimates_w1(one_thread):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(19)
    x = torch.randn(128, 2, generator=g)
    y = torch.randn(128, 2, generator=g) * 0.5 + torch.tensor([2.0, 0.0])
    u = torch.full((128,), 1 / 128, dtype=f64)
    w1 = pot.emd2(np_(u), np_(u), np_(tot.cost_matrix(x.double(), y.double(), p=1)))
    # a stiff penalty (λ = 100): the soft constraint's overshoot, about W1 / (2λ), is ~1%
    config = tot.CriticConfig(steps=400, gp_weight=100.0)
    critic, history = tot.train_critic(x, y, config, generator=g, progress=False)
    assert len(history) == 400
    assert tot.critic_estimate(critic, x, y).item() == pytest.approx(w1, rel=0.05)


# --------------------------------------------------------------------------------------------
# bad input is refused by name
# --------------------------------------------------------------------------------------------
def test_bad_weights_are_refused_by_name():
    a, b, _, _, M = random_problem(20, 4, 5)
    with pytest.raises(ValueError, match=r"a must be non-negative"):
        tot.emd(torch.tensor([0.5, 0.7, -0.2, 0.0], dtype=f64), b, M)
    with pytest.raises(ValueError, match=r"b must sum to 1.*got a sum of 2"):
        tot.sinkhorn(a, 2 * b, M, 0.1)
    with pytest.raises(ValueError, match=r"x_weights must sum to 1"):
        tot.wasserstein_1d(torch.zeros(3), torch.zeros(2), x_weights=torch.ones(3))
    with pytest.raises(ValueError, match=r"y_weights must have shape \(2,\)"):
        tot.wasserstein_1d(torch.zeros(3), torch.zeros(2), y_weights=torch.ones(3) / 3)
    with pytest.raises(TypeError, match=r"a must be a torch.Tensor, got list"):
        tot.emd([0.5, 0.5], b, M)
    with pytest.raises(TypeError, match=r"floating-point"):
        tot.emd(torch.tensor([1, 0, 0, 0]), b, M)


def test_shape_mismatches_are_refused_by_name():
    a, b, _, _, M = random_problem(21, 4, 5)
    with pytest.raises(ValueError, match=r"a has shape \(5,\) but M has 4 rows"):
        tot.emd(b, b, M)
    with pytest.raises(ValueError, match=r"b has shape \(4,\) but M has 5 columns"):
        tot.sinkhorn(a, a, M, 0.1)
    with pytest.raises(ValueError, match=r"M must have shape \(n, m\)"):
        tot.emd(a, b, M[None])
    with pytest.raises(ValueError, match=r"M must have shape \(\.\.\., n, m\)"):
        tot.sinkhorn(a, b, M[0], 0.1)
    with pytest.raises(ValueError, match=r"same leading \(batch\) shape"):
        tot.wasserstein_1d(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"same dimension d"):
        tot.cost_matrix(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"plan must have shape \(len\(x\), len\(y\)\) = \(4, 5\)"):
        tot.displacement_interpolation(torch.zeros(4, 2), torch.zeros(5, 2), torch.zeros(5, 4), 0.5)
    with pytest.raises(ValueError, match=r"x must be a point cloud of shape \(N, D\)"):
        tot.sinkhorn_divergence(torch.zeros(3), torch.zeros(3, 1), 0.1)
    with pytest.raises(ValueError, match=r"batch dimensions of a \(3, 4\).*do not broadcast"):
        tot.sinkhorn(a.expand(3, 4), b, M.expand(2, 4, 5), 0.1)
    with pytest.raises(TypeError, match=r"share a dtype"):
        tot.sinkhorn(a.float(), b, M, 0.1)


@pytest.mark.parametrize("reg", [0.0, -1.0, float("inf"), float("nan")])
def test_non_positive_reg_is_refused(reg):
    a, b, _, _, M = random_problem(22, 3, 3)
    with pytest.raises(ValueError, match=r"reg must be > 0"):
        tot.sinkhorn(a, b, M, reg)


def test_other_bad_arguments_are_refused():
    a, b, _, _, M = random_problem(23, 3, 3)
    with pytest.raises(TypeError, match=r"reg must be a positive number, got str"):
        tot.sinkhorn(a, b, M, "0.1")
    with pytest.raises(ValueError, match=r"max_iter must be >= 1, got 0"):
        tot.sinkhorn(a, b, M, 0.1, max_iter=0)
    with pytest.raises(TypeError, match=r"max_iter must be an int >= 1, got float"):
        tot.sinkhorn(a, b, M, 0.1, max_iter=10.0)
    with pytest.raises(ValueError, match=r"tol must be finite and >= 0"):
        tot.sinkhorn(a, b, M, 0.1, tol=-1.0)
    with pytest.raises(ValueError, match=r"M must be finite"):
        tot.emd(a, b, M.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match=r"p must be a finite number in"):
        tot.wasserstein_1d(torch.zeros(3), torch.zeros(3), p=0.5)
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\], got 1.5"):
        tot.displacement_interpolation(torch.zeros(3, 2), torch.zeros(3, 2), torch.eye(3) / 3, 1.5)
    with pytest.raises(ValueError, match=r"t must be a finite number in \[0, 1\], got nan"):
        tot.displacement_interpolation(torch.zeros(3, 2), torch.zeros(3, 2), torch.eye(3) / 3, float("nan"))
    with pytest.raises(TypeError, match=r"t must be a real number, got str"):
        tot.displacement_interpolation(torch.zeros(3, 2), torch.zeros(3, 2), torch.eye(3) / 3, "0.5")
    with pytest.raises(ValueError, match=r"x and y must have the same shape"):
        tot.train_critic(torch.zeros(3, 2), torch.zeros(4, 2))


def test_wasserstein_1d_refuses_p_infinity_and_other_bad_orders():
    x, y = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 3.0])
    # W_inf would be 2 here; the formula with p = inf used to return 1.0 for any input
    with pytest.raises(ValueError, match=r"p must be a finite number in \[1, inf\)"):
        tot.wasserstein_1d(x, y, p=float("inf"))
    with pytest.raises(ValueError, match="p must be a finite number"):
        tot.wasserstein_1d(x, y, p=0.5)
    with pytest.raises(TypeError, match="p must be a real number"):
        tot.wasserstein_1d(x, y, p="2")
    assert tot.wasserstein_1d(x, y, p=1).item() == pytest.approx(1.0)  # half the mass moves by 2


@pytest.mark.parametrize(("layers", "activation", "act"), [
    (2, "silu", torch.nn.SiLU), (3, "relu", torch.nn.ReLU), (1, "leaky_relu", torch.nn.LeakyReLU)])
def test_critic_is_the_hand_built_mlp_with_the_same_initialisation(layers, activation, act):
    """One class for both chapters: the same layers, built in the same order as the two old classes
    (ot's two SiLU layers, gan's loop of ReLU layers), so the same seed gives the same weights."""
    torch.manual_seed(3)
    critic = tot.Critic(3, 16, layers, activation=activation)
    torch.manual_seed(3)
    blocks, width = [], 3
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, 16), act()]
        width = 16
    reference = torch.nn.Sequential(*blocks, torch.nn.Linear(width, 1))
    assert [type(m) for m in critic.net] == [type(m) for m in reference]
    for p, q in zip(critic.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    x = torch.randn(7, 3)
    assert critic(x).shape == (7,)
    assert torch.equal(critic(x), reference(x).squeeze(-1))


def test_gan_critic_is_the_ot_critic():
    from tutorlib import gan

    assert gan.Critic is tot.Critic


def test_critic_checks_its_arguments():
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'silu', 'leaky_relu'; got 'gel"):
        tot.Critic(2, 8, 2, activation="gelu")
    with pytest.raises(ValueError, match="activation must be one of"):
        tot.Critic(2, 8, 2, activation=None)
    with pytest.raises(ValueError, match="layers must be >= 1"):
        tot.Critic(2, 8, 0)
    with pytest.raises(TypeError, match="layers must be an int"):
        tot.Critic(2, 8, 2.0)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        tot.Critic(2, -4)
    with pytest.raises(TypeError, match="in_dim must be an int"):
        tot.Critic("2")
    critic = tot.Critic(2, 8, 1, activation="relu")
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor \(N, 2\)"):
        critic(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor \(N, 2\)"):
        critic(torch.zeros(2))


def test_critic_pieces_check_their_arguments():
    with pytest.raises(ValueError, match=r"CriticConfig\.gp_weight must be finite and >= 0"):
        tot.CriticConfig(gp_weight=-1.0)
    with pytest.raises(ValueError, match=r"CriticConfig\.betas entries must be a finite number"):
        tot.CriticConfig(betas=(0.5, 1.0))
    with pytest.raises(ValueError, match="in_dim must be >= 1"):
        tot.Critic(in_dim=0)
    critic = tot.Critic(in_dim=2)
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor \(N, 2\)"):
        critic(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must be finite"):
        tot.critic_estimate(critic, torch.full((3, 2), float("nan")), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"z must be a point cloud"):
        tot.c_transform(torch.zeros(3), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match="critic must be callable"):
        tot.gradient_penalty(None, torch.zeros(3, 2), torch.zeros(3, 2))


# --------------------------------------------------------------------------------------------
# Brenier's map between Gaussians
# --------------------------------------------------------------------------------------------
def random_spd(d, g):
    B = torch.randn(d, d, generator=g, dtype=f64)
    return B @ B.T + 0.1 * torch.eye(d, dtype=f64)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_gaussian_map_matches_pot_and_pushes_forward(d):
    g = torch.Generator().manual_seed(d)
    mx, my = torch.randn(d, generator=g, dtype=f64), torch.randn(d, generator=g, dtype=f64)
    Sx, Sy = random_spd(d, g), random_spd(d, g)
    A, b = tot.gaussian_map(mx, Sx, my, Sy)
    A_pot, b_pot = pot.gaussian.bures_wasserstein_mapping(np_(mx), np_(my), np_(Sx), np_(Sy))
    np.testing.assert_allclose(np_(A), A_pot, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np_(b), b_pot, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(A, A.T)  # symmetric ...
    assert torch.linalg.eigvalsh(A).min() > 0  # ... positive definite: the gradient of a convex function
    torch.testing.assert_close(A @ Sx @ A.T, Sy, rtol=1e-8, atol=1e-10)  # T pushes N(mx, Sx) to N(my, Sy)
    torch.testing.assert_close(A @ mx + b, my)
    # the map's cost E|X - T(X)|^2 is the closed-form W2^2 (the Fréchet distance of tutorlib.metrics)
    from tutorlib import metrics

    eye = torch.eye(d, dtype=f64)
    cost = ((mx - my) ** 2).sum() + torch.trace((eye - A) @ Sx @ (eye - A).T)
    expected = metrics.frechet_distance(np_(mx), np_(Sx), np_(my), np_(Sy))
    assert cost.item() == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_gaussian_map_in_one_dimension_is_the_ratio_of_standard_deviations():
    one = torch.tensor
    A, b = tot.gaussian_map(one([1.0]), one([[4.0]]), one([-2.0]), one([[9.0]]))
    assert A.item() == pytest.approx(1.5) and b.item() == pytest.approx(-2.0 - 1.5)


def test_gaussian_map_is_optimal_for_the_discrete_problem():
    """Between samples x and T(x), the exact discrete plan is the identity (T is cyclically monotone)."""
    g = torch.Generator().manual_seed(0)
    Sx, Sy = random_spd(2, g), random_spd(2, g)
    A, b = tot.gaussian_map(torch.zeros(2, dtype=f64), Sx, torch.ones(2, dtype=f64), Sy)
    x = torch.randn(40, 2, generator=g, dtype=f64) @ torch.linalg.cholesky(Sx).T
    u = torch.full((40,), 1 / 40, dtype=f64)
    plan = pot.emd(np_(u), np_(u), np_(tot.cost_matrix(x, x @ A.T + b)))
    np.testing.assert_allclose(plan, np.eye(40) / 40, atol=1e-12)


def test_gaussian_map_checks_its_arguments():
    m, S = torch.zeros(2), torch.eye(2)
    with pytest.raises(TypeError, match="mean_x must be a floating-point torch"):
        tot.gaussian_map([0.0, 0.0], S, m, S)
    with pytest.raises(ValueError, match=r"cov_y must have shape \(d, d\) = \(2, 2\)"):
        tot.gaussian_map(m, S, m, torch.eye(3))
    with pytest.raises(ValueError, match="cov_x must be symmetric"):
        tot.gaussian_map(m, torch.tensor([[1.0, 0.5], [0.0, 1.0]]), m, S)
    with pytest.raises(ValueError, match="cov_y must be positive definite"):
        tot.gaussian_map(m, S, m, torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="mean_y must be finite"):
        tot.gaussian_map(m, S, torch.tensor([0.0, float("nan")]), S)
    with pytest.raises(ValueError, match=r"mean_x must have shape \(d,\)"):
        tot.gaussian_map(torch.tensor(0.0), S, m, S)
    with pytest.raises(ValueError, match="mean_x and mean_y must have the same dimension"):
        tot.gaussian_map(m, S, torch.zeros(3), torch.eye(3))


# --------------------------------------------------------------------------------------------
# barycenters
# --------------------------------------------------------------------------------------------
def _barycenter_problem(k, seed=0):
    g = torch.Generator().manual_seed(seed + k)
    n = 30
    grid = torch.linspace(0, 1, n, dtype=f64)
    M = (grid[:, None] - grid[None, :]) ** 2
    hists = torch.rand(k, n, generator=g, dtype=f64) + 0.05
    return hists / hists.sum(1, keepdim=True), M, g


@pytest.mark.parametrize(("k", "reg"), [(2, 0.05), (3, 0.02)])
def test_sinkhorn_barycenter_matches_pot_with_uniform_weights(k, reg):
    hists, M, _ = _barycenter_problem(k)
    ours = tot.sinkhorn_barycenter(hists, M, reg, tol=1e-12)
    ref = pot.bregman.barycenter(np_(hists).T, np_(M), reg, numItermax=100_000, stopThr=1e-13)
    np.testing.assert_allclose(np_(ours), ref, atol=1e-10)
    assert ours.sum().item() == pytest.approx(1.0, abs=1e-9)


def _entropy(w):
    return -(w[w > 0] * w[w > 0].log()).sum().item()


def _barycenter_objective(p, hists, M, reg, weights):
    """sum_k λ_k (<P_k, M> - ε H(P_k)), with the KL form of sinkhorn_solve converted to Cuturi's."""
    return sum(w.item() * (tot.sinkhorn_solve(h, p, M, reg, tol=1e-13, max_iter=100_000).value.item()
                           - reg * (_entropy(h) + _entropy(p))) for h, w in zip(hists, weights, strict=True))


def test_sinkhorn_barycenter_minimises_the_objective_with_uneven_weights():
    """With uneven weights, the result beats POT 0.9's (whose first step uses the unweighted geometric
    mean, so it converges to another point) and every small perturbation of it."""
    hists, M, g = _barycenter_problem(2)
    weights, reg = torch.tensor([0.3, 0.7], dtype=f64), 0.05
    ours = tot.sinkhorn_barycenter(hists, M, reg, weights, tol=1e-12)
    best = _barycenter_objective(ours, hists, M, reg, weights)
    ref = torch.as_tensor(pot.bregman.barycenter(np_(hists).T, np_(M), reg, np_(weights), numItermax=100_000,
                                                 stopThr=1e-13))
    assert best <= _barycenter_objective(ref / ref.sum(), hists, M, reg, weights) + 1e-12
    for _ in range(3):
        moved = ours * torch.exp(0.05 * torch.randn(30, generator=g, dtype=f64))
        assert best < _barycenter_objective(moved / moved.sum(), hists, M, reg, weights)


def test_sinkhorn_barycenter_of_one_histogram_with_itself_keeps_its_mean():
    """The barycenter of a histogram with itself is (a blurred copy of) it: same mean."""
    grid = torch.arange(40.0, dtype=f64)
    h = torch.exp(-0.5 * ((grid - 15) / 3) ** 2)
    h = h / h.sum()
    M = (grid[:, None] - grid[None, :]) ** 2 / 39**2
    p = tot.sinkhorn_barycenter(torch.stack([h, h]), M, 1e-3, tol=1e-10)
    assert (p * grid).sum().item() == pytest.approx((h * grid).sum().item(), abs=1e-6)


def test_sinkhorn_barycenter_checks_its_arguments_and_warns():
    M = torch.rand(4, 4, dtype=f64)
    h = torch.full((2, 4), 0.25, dtype=f64)
    with pytest.raises(ValueError, match=r"hists must have shape \(K, n\)"):
        tot.sinkhorn_barycenter(h[0], M, 0.1)
    with pytest.raises(ValueError, match=r"M must have shape \(n, n\) = \(4, 4\)"):
        tot.sinkhorn_barycenter(h, M[:3], 0.1)
    with pytest.raises(ValueError, match="hists must sum to 1"):
        tot.sinkhorn_barycenter(2 * h, M, 0.1)
    with pytest.raises(ValueError, match="weights must sum to 1"):
        tot.sinkhorn_barycenter(h, M, 0.1, torch.tensor([0.5, 0.6], dtype=f64))
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        tot.sinkhorn_barycenter(h, M, 0.1, torch.tensor([1.0], dtype=f64))
    with pytest.raises(ValueError, match="reg must be > 0"):
        tot.sinkhorn_barycenter(h, M, -0.1)
    with pytest.raises(TypeError, match="must share a dtype"):
        tot.sinkhorn_barycenter(h.float(), M, 0.1)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        tot.sinkhorn_barycenter(h, M, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="M must be finite"):
        tot.sinkhorn_barycenter(h, torch.full((4, 4), float("nan"), dtype=f64), 0.1)
    hists = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]], dtype=f64)
    with pytest.warns(tot.ConvergenceWarning, match="raise reg"):
        tot.sinkhorn_barycenter(hists, M, 0.01, max_iter=2)


def test_numpy_integer_max_iter_is_accepted():
    a, b, _, _, M = random_problem(24, 4, 5)
    ours = tot.sinkhorn_solve(a, b, M, 0.5, max_iter=np.int64(2000))
    reference = tot.sinkhorn_solve(a, b, M, 0.5, max_iter=2000)
    assert ours.n_iter == reference.n_iter
    assert torch.equal(ours.plan, reference.plan)


def test_lipschitz_on_support_refuses_coincident_points():
    def critic(z):
        return z.sum(dim=1)

    with pytest.raises(ValueError, match=r"points must contain at least two distinct points"):
        tot.lipschitz_on_support(critic, torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"points must contain at least two distinct points"):
        tot.lipschitz_on_support(critic, torch.ones(1, 2))
    # duplicates next to distinct points are fine: the duplicate pairs are skipped
    with_duplicate = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    assert tot.lipschitz_on_support(critic, with_duplicate) == pytest.approx(7 / 5)
