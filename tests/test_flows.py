"""tutorlib.flows: every layer inverts exactly and knows its log-determinant; densities are right.

References are independent of the code under test: Jacobians from torch.autograd.functional
and determinants from numpy, densities from scipy.stats and torch.distributions, ODE solutions
from scipy.integrate and scipy.linalg.expm.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import distributions as D
from torch import nn

from tutorlib import flows as fl
from tutorlib import toy2d


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """Tight tolerances need float64; restore the default afterwards for the other modules."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def randomize(module: nn.Module, seed: int, std: float = 0.5) -> nn.Module:
    """Move every parameter away from its (often identity) initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def make_layer(kind: str, dim: int, seed: int) -> tuple[fl.FlowLayer, bool]:
    """A randomised layer of each kind; the flag says whether inputs must lie in (0, 1)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    layers = {
        "additive": lambda: fl.AdditiveCoupling(dim, hidden=8, swap=seed % 2 == 0),
        "additive_split1": lambda: fl.AdditiveCoupling(dim, hidden=8, split=1, swap=seed % 2 == 1),
        "affine": lambda: fl.AffineCoupling(dim, hidden=8, swap=seed % 2 == 0, scale_bound=1.5),
        "affine_split_last": lambda: fl.AffineCoupling(dim, hidden=8, split=dim - 1),
        "scaling": lambda: fl.Scaling(dim),
        "permutation": lambda: fl.Permutation.random(dim, g),
        "reverse": lambda: fl.Reverse(dim),
        "actnorm": lambda: fl.ActNorm(dim),
        "invertible1x1": lambda: fl.Invertible1x1(dim, g),
        "logit": lambda: fl.Logit(dim, alpha=0.05 * (seed % 3)),
        "flow": lambda: fl.Flow([fl.ActNorm(dim), fl.Invertible1x1(dim, g),
                                 fl.AffineCoupling(dim, hidden=8),
                                 fl.AdditiveCoupling(dim, hidden=8, swap=True),
                                 fl.Scaling(dim)]),
    }
    layer = randomize(layers[kind](), seed).double()
    return layer, kind == "logit"


KINDS = ["additive", "additive_split1", "affine", "affine_split_last", "scaling", "permutation",
         "reverse", "actnorm", "invertible1x1", "logit", "flow"]


def inputs(dim: int, n: int, seed: int, unit_interval: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    if unit_interval:
        return 0.01 + 0.98 * torch.rand(n, dim, generator=g)
    return 2.0 * torch.randn(n, dim, generator=g)


def reference_log_det(layer: fl.FlowLayer, x: torch.Tensor) -> np.ndarray:
    """log|det J| of every row from the full autograd Jacobian and numpy's slogdet."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], row)
        out.append(np.linalg.slogdet(jac.detach().numpy())[1])
    return np.array(out)


# --------------------------------------------------------------------------------------------
# the two properties every layer must have
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(dim=st.integers(2, 7), seed=st.integers(0, 10_000), n=st.integers(1, 6))
def test_inverse_undoes_forward_and_log_det_matches_autograd(kind, dim, seed, n):
    layer, unit = make_layer(kind, dim, seed)
    x = inputs(dim, n, seed, unit)
    y, log_det = layer(x)
    assert y.shape == x.shape and log_det.shape == (n,)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(log_det.detach().numpy(), reference_log_det(layer, x), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "logit"])
@settings(max_examples=10, deadline=None)
@given(dim=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_forward_undoes_inverse(kind, dim, seed):
    layer, _ = make_layer(kind, dim, seed)
    y = inputs(dim, 5, seed, False)
    x = layer.inverse(y)
    torch.testing.assert_close(layer(x)[0], y, atol=1e-10, rtol=1e-10)


def test_logit_forward_undoes_inverse_on_its_image():
    layer = fl.Logit(3, alpha=0.05)
    y = torch.linspace(-2.9, 2.9, 30).reshape(10, 3)  # the image of [0, 1] is [-2.944, 2.944]
    torch.testing.assert_close(layer(layer.inverse(y))[0], y, atol=1e-10, rtol=1e-10)


def test_library_autograd_log_det_agrees_with_numpy():
    layer, _ = make_layer("flow", 4, 3)
    x = inputs(4, 5, 3, False)
    np.testing.assert_allclose(fl.autograd_log_det(lambda v: layer(v)[0], x).detach().numpy(),
                               reference_log_det(layer, x), atol=1e-10)


# --------------------------------------------------------------------------------------------
# the structure that makes each layer cheap
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("swap", [False, True])
def test_coupling_jacobian_is_triangular_with_the_scales_on_the_diagonal(swap):
    dim, split = 5, 2
    layer = randomize(fl.AffineCoupling(dim, hidden=8, split=split, swap=swap), 0)
    x = torch.randn(dim)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x)
    cond = slice(split, dim) if swap else slice(0, split)
    trans = slice(0, split) if swap else slice(split, dim)
    # the copied block is the identity and does not depend on the transformed block
    torch.testing.assert_close(jac[cond, cond], torch.eye(jac[cond, cond].shape[0]))
    assert torch.all(jac[cond, trans] == 0)
    # the transformed block is diagonal: feature j is only scaled by its own exp(s_j)
    block = jac[trans, trans]
    torch.testing.assert_close(block, torch.diag(torch.diagonal(block)))
    log_scale, _ = layer.scale_shift(x[None][:, cond])
    torch.testing.assert_close(torch.diagonal(block), torch.exp(log_scale[0]))
    assert log_scale.abs().max() <= layer.scale_bound


def test_additive_couplings_preserve_volume_exactly():
    flow = randomize(fl.make_nice(3, n_couplings=4, hidden=8, scaling=False), 1)
    _, log_det = flow(torch.randn(50, 3))
    assert torch.all(log_det == 0)
    flow_scaled = randomize(fl.make_nice(3, n_couplings=4, hidden=8, scaling=True), 1)
    _, log_det = flow_scaled(torch.randn(50, 3))
    torch.testing.assert_close(log_det, flow_scaled.layers[-1].log_scale.sum().expand(50))


def test_reverse_flips_and_permutation_inverts():
    x = torch.arange(12.0).reshape(3, 4)
    torch.testing.assert_close(fl.Reverse(4)(x)[0], x.flip(1))
    perm = fl.Permutation([2, 0, 3, 1])
    torch.testing.assert_close(perm(x)[0], x[:, [2, 0, 3, 1]])


def test_actnorm_initialisation_standardises_the_batch():
    x = 3.0 + 0.2 * torch.randn(500, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    layer = fl.ActNorm(4)
    layer.initialize(x)
    y, log_det = layer(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(4), atol=1e-10, rtol=0)
    torch.testing.assert_close(y.std(0), torch.ones(4), atol=1e-5, rtol=0)
    # the layer adds 1e-6 to the std before the log: about 1e-5 relative here
    np.testing.assert_allclose(log_det[0].item(), -np.log(x.std(0).numpy()).sum(), atol=1e-4)


def test_flow_initialize_standardises_what_each_actnorm_sees():
    flow = fl.make_glow(3, n_steps=2, hidden=8, generator=torch.Generator().manual_seed(0))
    randomize(flow, 2, std=0.3)
    x = 5 + 3 * torch.randn(400, 3)
    flow.initialize(x)
    h = x
    for layer in flow.layers:
        if isinstance(layer, fl.ActNorm):
            torch.testing.assert_close(layer(h)[0].mean(0), torch.zeros(3), atol=1e-10, rtol=0)
        h = layer(h)[0]


# --------------------------------------------------------------------------------------------
# densities against reference libraries
# --------------------------------------------------------------------------------------------
def test_linear_flow_density_is_the_gaussian_scipy_computes():
    dim = 3
    g = torch.Generator().manual_seed(0)
    flow = fl.Flow([fl.ActNorm(dim), fl.Invertible1x1(dim, g), fl.Scaling(dim)])
    randomize(flow, 4)
    # z = S W (x - mu) / sigma: x is Gaussian with mean mu and covariance A^-1 A^-T, A = S W diag(1/sigma)
    actnorm, conv, scaling = flow.layers
    a = (torch.diag(torch.exp(scaling.log_scale)) @ conv.weight @ torch.diag(torch.exp(-actnorm.log_scale)))
    a = a.detach().numpy()
    cov = np.linalg.inv(a.T @ a)
    x = torch.randn(20, dim)
    expected = stats.multivariate_normal(actnorm.loc.detach().numpy(), cov).logpdf(x.numpy())
    np.testing.assert_allclose(flow.log_prob(x).detach().numpy(), expected, atol=1e-10)


def test_logit_density_matches_torch_distributions():
    dim = 4
    flow = fl.Flow([fl.Logit(dim, alpha=0.0)])  # x = sigmoid(z), z ~ N(0, I)
    reference = D.TransformedDistribution(D.Normal(torch.zeros(dim), torch.ones(dim)), [D.SigmoidTransform()])
    x = torch.rand(30, dim) * 0.98 + 0.01
    torch.testing.assert_close(flow.log_prob(x), reference.log_prob(x).sum(-1))


def test_logit_with_logistic_base_is_the_uniform_density():
    x = torch.rand(30, 5) * 0.98 + 0.01
    torch.testing.assert_close(fl.Flow([fl.Logit(5, alpha=0.0)], base="logistic").log_prob(x),
                               torch.zeros(30), atol=1e-12, rtol=0)
    # with alpha > 0 the density is uniform on [0, 1] times (1 - 2 alpha) per feature
    torch.testing.assert_close(fl.Flow([fl.Logit(5, alpha=0.1)], base="logistic").log_prob(x),
                               torch.full((30,), 5 * math.log(0.8)))


def test_base_distributions_match_scipy():
    z = torch.randn(10, 3) * 2
    np.testing.assert_allclose(fl.base_log_prob(z, "normal").numpy(), stats.norm.logpdf(z.numpy()).sum(1))
    np.testing.assert_allclose(fl.base_log_prob(z, "logistic").numpy(),
                               stats.logistic.logpdf(z.numpy()).sum(1))
    sample = fl.base_sample(100_000, 1, "logistic", torch.Generator().manual_seed(0)).numpy()[:, 0]
    assert stats.kstest(sample, stats.logistic.cdf).pvalue > 1e-3


def test_a_random_2d_flow_density_integrates_to_one():
    torch.manual_seed(0)
    flow = randomize(fl.make_realnvp(2, n_couplings=4, hidden=16), 5, std=0.2)
    grid = torch.linspace(-12, 12, 601)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        p = flow.log_prob(torch.stack([xx.ravel(), yy.ravel()], 1)).exp()
    mass = p.sum().item() * (grid[1] - grid[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_samples_come_from_the_density():
    """A linear flow's samples have the covariance its density says."""
    flow = fl.Flow([fl.Invertible1x1(2, torch.Generator().manual_seed(1)), fl.Scaling(2)])
    with torch.no_grad():
        flow.layers[1].log_scale.copy_(torch.tensor([0.5, -1.0]))
    x = flow.sample(200_000, torch.Generator().manual_seed(2))
    a = (torch.diag(torch.exp(flow.layers[1].log_scale)) @ flow.layers[0].weight).detach()
    torch.testing.assert_close(torch.cov(x.T.detach()), torch.linalg.inv(a.T @ a), atol=0.03, rtol=0.02)


def test_path_runs_the_layers_backwards_one_at_a_time():
    flow = randomize(fl.make_realnvp(2, n_couplings=3, hidden=8), 7)
    z0 = torch.randn(10, 2)
    path = flow.path(z0)
    assert len(path) == 4 and torch.equal(path[0], z0)
    torch.testing.assert_close(path[-1], flow.inverse(z0))
    torch.testing.assert_close(path[1], flow.layers[-1].inverse(z0))


# --------------------------------------------------------------------------------------------
# the volume-preserving floor
# --------------------------------------------------------------------------------------------
def test_volume_preserving_bound_is_reached_by_the_identity_on_gaussians():
    for s, dim in [(0.3, 2), (1.0, 3), (2.5, 4)]:
        entropy = stats.multivariate_normal(np.zeros(dim), s**2 * np.eye(dim)).entropy()
        bound = fl.volume_preserving_nll_bound(entropy, dim)
        x = s * np.random.default_rng(0).standard_normal((200_000, dim))
        identity_nll = -stats.multivariate_normal(np.zeros(dim)).logpdf(x).mean()
        assert bound == pytest.approx(identity_nll, rel=5e-3)
        assert bound >= entropy - 1e-12
    unit = stats.multivariate_normal(np.zeros(2)).entropy()
    assert fl.volume_preserving_nll_bound(unit, 2) == pytest.approx(unit, rel=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000))
def test_no_volume_preserving_flow_beats_the_bound(seed):
    """Random NICE flows without scaling, on Gaussian data of std 0.3: NLL >= the bound."""
    torch.manual_seed(seed)
    flow = randomize(fl.make_nice(2, n_couplings=2, hidden=8, scaling=False), seed, std=0.5)
    x = 0.3 * torch.randn(10_000, 2)
    entropy = stats.multivariate_normal(np.zeros(2), 0.09 * np.eye(2)).entropy()
    bound = fl.volume_preserving_nll_bound(entropy, 2)
    assert fl.nll(flow, x) >= bound - 0.02  # 0.02: Monte Carlo error of the mean


# --------------------------------------------------------------------------------------------
# images: dequantisation and bits/dim
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# multi-scale: squeeze and factor out
# --------------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4))
def test_squeeze_is_pixel_unshuffle_and_unsqueeze_undoes_it(n, c, h, w):
    x = torch.randn(n, c, 2 * h, 2 * w)
    y = fl.squeeze2d(x)
    torch.testing.assert_close(y, nn.functional.pixel_unshuffle(x, 2), rtol=0, atol=0)
    torch.testing.assert_close(fl.unsqueeze2d(y), x, rtol=0, atol=0)
    torch.testing.assert_close(fl.unsqueeze2d(y), nn.functional.pixel_shuffle(y, 2), rtol=0, atol=0)
    # by hand: channel 4c + 2i + j at (a, b) is channel c at (2a + i, 2b + j)
    assert y[0, 4 * (c - 1) + 2 * 1 + 0, h - 1, 0] == x[0, c - 1, 2 * (h - 1) + 1, 0]


def test_squeeze_layer_is_a_permutation_and_factor_out_keeps_the_inner_log_det():
    squeeze = fl.Squeeze(1, 8, 8)
    x = torch.arange(64.0)[None]
    y, log_det = squeeze(x)
    assert sorted(y[0].tolist()) == x[0].tolist() and log_det.item() == 0
    torch.testing.assert_close(squeeze.inverse(y), x, rtol=0, atol=0)
    assert y[0, :4].tolist() == [0.0, 2.0, 4.0, 6.0]  # channel 0 = the pixels (2a, 2b) of row 0
    torch.manual_seed(0)
    inner = randomize(fl.Flow([fl.AffineCoupling(6, hidden=8), fl.Scaling(6)]), 1)
    layer = fl.FactorOut(inner, 10)
    x = torch.randn(5, 10)
    y, log_det = layer(x)
    torch.testing.assert_close(y[:, 6:], x[:, 6:], rtol=0, atol=0)  # factored out: untouched
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-12, rtol=0)
    np.testing.assert_allclose(log_det.detach().numpy(), reference_log_det(layer, x), atol=1e-10)
    flow = fl.Flow([squeeze, fl.FactorOut(randomize(fl.AffineCoupling(32, hidden=8), 2), 64)])
    x = torch.randn(3, 64)
    np.testing.assert_allclose(flow(x)[1].detach().numpy(), reference_log_det(flow, x), atol=1e-10)


def test_squeeze_and_factor_out_refuse_bad_arguments():
    with pytest.raises(ValueError, match="even height and width"):
        fl.squeeze2d(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        fl.squeeze2d(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        fl.squeeze2d(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be finite"):
        fl.unsqueeze2d(torch.full((1, 4, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="multiple of 4 channels"):
        fl.unsqueeze2d(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="height and width must be even"):
        fl.Squeeze(1, 7, 8)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        fl.Squeeze(0, 8, 8)
    with pytest.raises(TypeError, match="inner must be a FlowLayer"):
        fl.FactorOut(nn.Linear(2, 2), 4)
    with pytest.raises(ValueError, match=r"dim must exceed inner.dim = 4"):
        fl.FactorOut(fl.Scaling(4), 4)


def test_digits_split_is_disjoint_and_integer():
    train, test = fl.load_digits_split(0.2, seed=0)
    assert train.shape[1] == 64 and len(train) + len(test) == 1797 and len(test) == 359
    assert train.dtype == torch.int64 and train.min() >= 0 and train.max() <= 16


def test_dequantised_pixels_stay_in_their_cells():
    k = torch.randint(0, 17, (200, 64), generator=torch.Generator().manual_seed(0))
    x = fl.dequantize(k, 17, torch.Generator().manual_seed(1))
    assert torch.all(torch.floor(x.double() * 17).long() == k)
    assert 0 <= x.min() and x.max() < 1


def test_bits_per_dim_of_the_uniform_density_is_log2_of_the_levels():
    k = torch.randint(0, 17, (100, 64), generator=torch.Generator().manual_seed(0))
    x = fl.dequantize(k, 17).double()
    uniform = fl.Flow([fl.Logit(64, alpha=0.0)], base="logistic")
    assert fl.bits_per_dim(uniform.log_prob(x), 64, 17) == pytest.approx(math.log2(17), abs=1e-9)
    # a hand computation: 256 levels, 784 pixels, NICE's MNIST log-likelihood of 1980.50 nats
    assert fl.bits_per_dim(1980.50, 784, 256) == pytest.approx((784 * 8 - 1980.50 / math.log(2)) / 784)


def test_bits_per_dim_counts_the_logit_jacobian():
    """Dropping the Logit layer's log-determinant changes the answer: it must be included."""
    x = fl.dequantize(torch.randint(0, 17, (100, 8), generator=torch.Generator().manual_seed(0)), 17).double()
    flow = fl.Flow([fl.Logit(8, alpha=0.05)])
    y = torch.logit(0.05 + 0.9 * x)
    p = (0.05 + 0.9 * x).numpy()
    by_hand = stats.norm.logpdf(y.numpy()).sum(1) + np.log(0.9 / (p * (1 - p))).sum(1)
    expected = (-by_hand.mean() + 8 * math.log(17)) / (8 * math.log(2))  # the definition, by hand
    assert fl.bits_per_dim(flow.log_prob(x), 8, 17) == pytest.approx(expected, rel=1e-12)
    assert fl.bits_per_dim(stats.norm.logpdf(y.numpy()).sum(1).mean(), 8, 17) != pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def test_training_a_scaling_layer_recovers_the_maximum_likelihood_std():
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.5, 2.0])
    flow = fl.Flow([fl.Scaling(2)])
    fl.train_flow(flow, x, fl.TrainConfig(steps=1000, batch_size=500, lr=0.05))
    mle_std = np.sqrt((x.numpy() ** 2).mean(0))  # zero-mean Gaussian MLE
    # Adam ends within a fraction of a percent; a wrong sign in log_det would be far off
    np.testing.assert_allclose(torch.exp(-flow.layers[0].log_scale).detach().numpy(), mle_std, rtol=5e-3)


def test_training_is_repeatable_and_lowers_the_loss():
    x = toy2d.sample_2d("moons", 1000, torch.Generator().manual_seed(0)).double()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        flow = fl.make_realnvp(2, n_couplings=2, hidden=8)
        runs.append(fl.train_flow(flow, x, fl.TrainConfig(steps=60, batch_size=128, lr=1e-2)))
    assert runs[0] == runs[1]
    assert np.mean(runs[0][-10:]) < np.mean(runs[0][:10]) - 0.2
    # checks a sign error would fail: the trained density still integrates to 1 (the log-det is
    # right), and it fits the moons better than the best Gaussian does (3.13 vs 3.27 nats)
    g = torch.linspace(-8, 8, 321, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        density = flow.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp()
    assert density.sum().item() * (g[1] - g[0]).item() ** 2 == pytest.approx(1.0, abs=0.01)
    gaussian_nll = 0.5 * np.log(np.linalg.det(2 * math.pi * math.e * np.cov(x.numpy().T)))
    assert fl.nll(flow, x) < gaussian_nll - 0.07


# --------------------------------------------------------------------------------------------
# bad input is refused with a message that names it
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_layer_refuses_wrong_shapes_types_and_non_finite_values(kind):
    layer, _ = make_layer(kind, 4, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        layer(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"y must have shape \(N, 4\)"):
        layer.inverse(torch.zeros(4))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        layer([[0.5] * 4])
    bad = torch.full((2, 4), 0.5)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="must be finite"):
        layer(bad)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="must be finite"):
        layer.inverse(bad)


def test_coupling_layers_refuse_splits_they_cannot_make():
    for cls in (fl.AdditiveCoupling, fl.AffineCoupling):
        with pytest.raises(ValueError, match="dim >= 2"):
            cls(1)
        with pytest.raises(ValueError, match=r"split must be in \[1, dim - 1\] = \[1, 4\].*split=5"):
            cls(5, split=5)
        with pytest.raises(ValueError, match="split must be >= 1"):
            cls(5, split=0)
        with pytest.raises(TypeError, match="split must be an int"):
            cls(5, split=2.5)
    with pytest.raises(ValueError, match="scale_bound must be finite and > 0"):
        fl.AffineCoupling(4, scale_bound=0.0)
    with pytest.raises(TypeError, match="dim must be an int"):
        fl.Scaling(2.0)


def test_other_constructors_refuse_bad_arguments():
    with pytest.raises(ValueError, match="exactly once"):
        fl.Permutation([0, 0, 2])
    with pytest.raises(TypeError, match="sequence of ints"):
        fl.Permutation([0.0, 1.0])
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 0.5\)"):
        fl.Logit(3, alpha=0.5)
    with pytest.raises(ValueError, match=r"Logit expects x in \[0, 1\]"):
        fl.Logit(2)(torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ValueError, match=r"Logit expects x in \(0, 1\)"):
        fl.Logit(2, alpha=0.0)(torch.tensor([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fl.ActNorm(2).initialize(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="same dim"):
        fl.Flow([fl.Scaling(2), fl.Scaling(3)])
    with pytest.raises(TypeError, match="non-empty list"):
        fl.Flow([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a FlowLayer"):
        fl.Flow([fl.Scaling(2), nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="base must be 'normal' or 'logistic'"):
        fl.Flow([fl.Scaling(2)], base="cauchy")
    with pytest.raises(ValueError, match="n must be >= 1"):
        fl.Flow([fl.Scaling(2)]).sample(0)


def test_data_and_metrics_refuse_bad_arguments():
    with pytest.raises(ValueError, match=r"k must lie in 0 \.\. 16"):
        fl.dequantize(torch.tensor([[0, 17]]), 17)
    with pytest.raises(TypeError, match="integer tensor"):
        fl.dequantize(torch.tensor([[0.5]]), 17)
    with pytest.raises(ValueError, match="n_levels must be >= 2"):
        fl.bits_per_dim(0.0, 64, 1)
    with pytest.raises(ValueError, match="log_prob must be finite"):
        fl.bits_per_dim(torch.tensor([float("-inf")]), 64, 17)
    with pytest.raises(ValueError, match=r"test_fraction must be a finite number in \(0, 1\)"):
        fl.load_digits_split(1.0)
    with pytest.raises(ValueError, match="entropy must be a finite number"):
        fl.volume_preserving_nll_bound(float("nan"), 2)
    with pytest.raises(TypeError, match="log_prob method"):
        fl.train_flow(nn.Linear(2, 2), torch.zeros(10, 2))
    with pytest.raises(ValueError, match=r"data must have shape \(N, D\)"):
        fl.train_flow(fl.Flow([fl.Scaling(2)]), torch.zeros(10))


def test_train_config_refuses_a_negative_clip_norm():
    # clip_grad_norm_ with a negative max_norm multiplies the gradient by a negative number
    with pytest.raises(ValueError, match=r"TrainConfig\.grad_clip must be finite and > 0, got -1"):
        fl.TrainConfig(grad_clip=-1.0)
    fl.TrainConfig(grad_clip=None)
    config = fl.TrainConfig()
    config.grad_clip = -1.0
    with pytest.raises(ValueError, match="grad_clip"):
        fl.train_flow(fl.make_realnvp(2, n_couplings=1, hidden=4), torch.zeros(4, 2), config)


def test_base_density_checks_its_arguments():
    with pytest.raises(ValueError, match="z must be finite"):
        fl.base_log_prob(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="base must be one of"):
        fl.base_log_prob(torch.zeros(1, 2), "laplace")
