"""tutorlib.autoregressive: MADE is autoregressive, MAF and IAF invert and know their log-det.

References: Jacobians from torch.autograd.functional and determinants from numpy; the density's
integral by quadrature on a grid; the number of network passes counted.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib import autoregressive as ar
from tutorlib import flows as fl


@pytest.fixture(autouse=True, scope="module")
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def randomized(cls, dim: int, seed: int, hidden: int = 12, depth: int = 2, std: float = 0.5):
    torch.manual_seed(seed)
    layer = cls(dim, hidden=hidden, depth=depth)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(std * torch.randn(p.shape))
    return layer


@pytest.mark.parametrize("cls", [ar.MAF, ar.IAF])
@settings(max_examples=12, deadline=None)
@given(dim=st.integers(1, 6), seed=st.integers(0, 10_000), depth=st.integers(1, 3))
def test_inverse_undoes_forward_and_log_det_matches_autograd(cls, dim, seed, depth):
    layer = randomized(cls, dim, seed, depth=depth)
    x = 1.5 * torch.randn(7, dim, generator=torch.Generator().manual_seed(seed))
    z, log_det = layer(x)
    torch.testing.assert_close(layer.inverse(z), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(layer(layer.inverse(z))[0], z, atol=1e-10, rtol=0)
    expected = [np.linalg.slogdet(torch.autograd.functional.jacobian(
        lambda v: layer(v[None])[0][0], row).numpy())[1] for row in x]
    np.testing.assert_allclose(log_det.detach().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_made_output_i_depends_only_on_the_inputs_before_i(dim):
    made = randomized(ar.MADE, dim, 3, hidden=9)
    x = torch.randn(dim)
    for part in (0, 1):  # log-scale and shift
        jac = torch.autograd.functional.jacobian(lambda v, part=part: made(v[None])[part][0], x)  # (D, D)
        assert torch.all(torch.triu(jac) == 0)  # d out_i / d x_j = 0 for j >= i
        if dim > 1:  # and it does use them: the strictly lower triangle is not all zero
            assert torch.all(torch.tril(jac, -1)[1:].abs().sum(1) > 0)


def test_the_flow_jacobian_is_triangular_and_the_density_integrates_to_one():
    for cls in (ar.MAF, ar.IAF):
        flow = fl.Flow([randomized(cls, 2, 5, hidden=16, std=0.2), fl.Reverse(2),
                        randomized(cls, 2, 6, hidden=16, std=0.2)])
        g = torch.linspace(-9, 9, 301)
        xx, yy = torch.meshgrid(g, g, indexing="ij")
        with torch.no_grad():
            p = flow.log_prob(torch.stack([xx.ravel(), yy.ravel()], 1)).exp()
        assert p.sum().item() * (g[1] - g[0]).item() ** 2 == pytest.approx(1.0, abs=2e-3)
        jac = torch.autograd.functional.jacobian(lambda v, flow=flow: flow.layers[0](v[None])[0][0],
                                                 torch.randn(2))
        assert jac[0, 1] == 0


@pytest.mark.parametrize(("cls", "density_passes", "sample_passes"), [(ar.MAF, 1, 8), (ar.IAF, 8, 1)])
def test_maf_density_and_iaf_sampling_take_one_pass_the_other_direction_d(cls, density_passes, sample_passes):
    flow = fl.Flow([cls(8, hidden=16)])
    made = flow.layers[0].made
    with torch.no_grad():
        made.passes = 0
        flow.log_prob(torch.randn(5, 8))
        assert made.passes == density_passes
        made.passes = 0
        flow.sample(5)
        assert made.passes == sample_passes


def test_training_a_maf_fits_correlated_data_better_than_any_diagonal_gaussian():
    """x2 = x1^2 + noise: a Gaussian cannot bend, one MAF layer can (x2's shift depends on x1)."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2000, generator=g)
    x = torch.stack([x1, x1**2 + 0.2 * torch.randn(2000, generator=g)], 1)
    torch.manual_seed(0)
    flow = fl.Flow([ar.MAF(2, hidden=32)])
    fl.train_flow(flow, x, fl.TrainConfig(steps=300, batch_size=256, lr=1e-2))
    gaussian_nll = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * np.cov(x.numpy().T)))
    # the true NLL: N(0,1) for x1 and N(x1^2, 0.2^2) for x2
    true_nll = 0.5 * np.log(2 * np.pi * np.e) + 0.5 * np.log(2 * np.pi * np.e * 0.04)
    nll = fl.nll(flow, x)
    assert nll < true_nll + 0.1 < gaussian_nll - 1.0  # a sign error in the log-det would be far off


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dim must be >= 1"):
        ar.MAF(0)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        ar.IAF(3, hidden=0)
    with pytest.raises(ValueError, match="scale_bound must be finite and > 0"):
        ar.MADE(3, scale_bound=-1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        ar.MADE(3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        ar.MAF(3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="must be finite"):
        ar.IAF(2).inverse(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        ar.MaskedLinear(3, 2, torch.ones(3, 2))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        ar.MaskedLinear(3, 2, torch.ones(2, 3))(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        ar.MaskedLinear(3, 2, torch.ones(2, 3))(torch.zeros(4, 1, 3))
