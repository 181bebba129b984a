"""tutorlib.neuron: the math of the bias chapter, checked against scikit-learn where it applies."""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, Perceptron
from sklearn.metrics import log_loss
from torch import nn

from tutorlib import neuron as nr

finite = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda d: st.tuples(
            st.lists(st.lists(finite, min_size=d, max_size=d), min_size=1, max_size=20),
            st.lists(finite, min_size=d, max_size=d),
        )
    ),
    finite,
)
def test_threshold_is_minus_bias(xw, threshold):
    x, w = torch.tensor(xw[0]), torch.tensor(xw[1])
    assert torch.equal(nr.perceptron(x, w, threshold), nr.neuron(x, w, -threshold))


def test_perceptron_matches_scikit_learn_update_for_update():
    g = torch.Generator().manual_seed(0)
    x, y = nr.make_offset_blobs(60, generator=g)
    ours = nr.train_perceptron(x.double(), y, epochs=5, bias=True)
    ref = Perceptron(eta0=1.0, shuffle=False, max_iter=5, tol=None, alpha=0.0, penalty=None)
    ref.fit(x.double().numpy(), y.numpy())
    np.testing.assert_allclose(ours.w.numpy(), ref.coef_[0], rtol=1e-12)
    np.testing.assert_allclose(ours.b, ref.intercept_[0], rtol=1e-12)


def test_perceptron_bias_is_a_weight_on_a_constant_input():
    g = torch.Generator().manual_seed(1)
    x, y = nr.make_offset_blobs(80, generator=g)
    with_bias = nr.train_perceptron(x, y, epochs=30)
    augmented = nr.train_perceptron(torch.cat([x, torch.ones(80, 1)], 1), y, epochs=30, bias=False)
    assert torch.allclose(augmented.w[:2], with_bias.w)
    assert augmented.w[2].item() == pytest.approx(with_bias.b)


def test_perceptron_separates_separable_data_and_stops():
    x = torch.tensor([[2.0, 2.0], [3.0, 3.0], [0.5, 0.5], [1.0, 0.2]])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    result = nr.train_perceptron(x, y, epochs=100)
    assert result.mistakes[-1] == 0 and len(result.mistakes) < 100
    assert torch.equal(nr.neuron(x, result.w, result.b), y)


@pytest.mark.parametrize("bias", [True, False])
def test_logistic_fit_matches_scikit_learn(bias):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64) + 1.0
    y = (x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3
         + torch.randn(200, generator=g, dtype=torch.float64) > 0).double()
    l2 = 0.05
    ours = nr.fit_logistic(x, y, bias=bias, l2=l2)
    ref = LogisticRegression(C=1 / (l2 * len(x)), fit_intercept=bias, tol=1e-12, max_iter=10_000)
    ref.fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(ours.linear.weight.detach().numpy()[0], ref.coef_[0], atol=1e-5)
    if bias:
        np.testing.assert_allclose(ours.linear.bias.item(), ref.intercept_[0], atol=1e-5)


def test_best_accuracy_through_origin_beats_every_direction_on_a_fine_grid():
    g = torch.Generator().manual_seed(3)
    x, y = nr.make_offset_blobs(150, generator=g)
    best, w = nr.best_accuracy_through_origin(x, y)
    thetas = torch.linspace(0, 2 * math.pi, 20_000)
    grid = torch.stack([torch.cos(thetas), torch.sin(thetas)], 1)
    grid_acc = ((x @ grid.T > 0).float() == y[:, None]).float().mean(0).max().item()
    assert best >= grid_acc - 1e-6  # float32 grid mean; accuracies are multiples of 1/150
    assert nr.accuracy(x @ w, y) == pytest.approx(best)
    assert torch.linalg.norm(w).item() == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(-math.pi, math.pi))
def test_no_bias_free_direction_beats_the_exact_ceiling(seed, theta):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(25, 2, generator=g) * 2
    y = (torch.rand(25, generator=g) < 0.5).float()
    best, _ = nr.best_accuracy_through_origin(x, y)
    w = torch.tensor([math.cos(theta), math.sin(theta)])
    assert nr.accuracy(x @ w, y) <= best + 1e-9


def test_bias_free_relu_net_is_positively_homogeneous_and_kinks_at_zero():
    torch.manual_seed(0)
    net = nr.ReLUNet1D(16, bias=False)
    x = torch.linspace(-2, 2, 41)[:, None]
    with torch.no_grad():
        assert torch.allclose(net(2.5 * x), 2.5 * net(x), atol=1e-6)
    assert torch.all(nr.relu_kinks(net) == 0)


def test_relu_kinks_are_where_the_slope_changes():
    torch.manual_seed(1)
    net = nr.ReLUNet1D(8, bias=True).double()
    kinks = nr.relu_kinks(net)
    assert torch.equal(kinks, torch.sort(kinks).values)
    with torch.no_grad():
        for k in kinks:
            h = 1e-4
            xs = torch.tensor([[k - 2 * h], [k - h], [k + h], [k + 2 * h]], dtype=torch.float64)
            f = net(xs).squeeze(1)
            left, right = (f[1] - f[0]) / h, (f[3] - f[2]) / h
            assert not torch.isclose(left, right, atol=1e-6)  # a kink: the slope jumps
        # between kinks the function is linear
        mid = ((kinks[:-1] + kinks[1:]) / 2)[:, None]
        h = 1e-3
        second = net(mid + h) - 2 * net(mid) + net(mid - h)
        assert torch.allclose(second, torch.zeros_like(second), atol=1e-10)


def test_fit_regression_fits_a_kinked_target_and_needs_the_bias():
    # |x - 1| has its kink at x = 1: a ReLU net with biases can place a kink there, one
    # without biases can only bend at 0 (f(lambda x) = lambda f(x))
    x = torch.linspace(-2, 3, 101, dtype=torch.float64)[:, None]
    y = (x - 1).abs()
    fits = {}
    for bias in (True, False):
        torch.manual_seed(0)
        net = nr.ReLUNet1D(hidden=16, bias=bias).double()
        losses = nr.fit_regression(net, x, y, steps=1500, lr=1e-2)
        assert len(losses) == 1500
        with torch.no_grad():  # the returned loss is the MSE of the net, computed here independently
            fits[bias] = ((net(x) - y) ** 2).mean().item()
        assert fits[bias] == pytest.approx(losses[-1], rel=0.05)
    assert fits[True] < 0.01 < fits[False]
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        nr.fit_regression(net, x, y, lr=-1.0)  # a negative rate would climb the loss
    with pytest.raises(ValueError, match="y must be finite"):
        nr.fit_regression(net, x, torch.full_like(y, float("nan")))


def test_unit_functions_refuse_nan_and_wrong_types():
    x, w = torch.zeros(3, 2), torch.ones(2)
    with pytest.raises(ValueError, match="x must be finite"):
        nr.neuron(torch.full((3, 2), float("nan")), w, 0.0)
    with pytest.raises(ValueError, match="b must be a finite number"):
        nr.neuron(x, w, float("nan"))
    with pytest.raises(TypeError, match="threshold must be a real number"):
        nr.perceptron(x, w, "1")
    with pytest.raises(TypeError, match="w must be a floating-point tensor"):
        nr.perceptron(x, torch.ones(2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="logits must not contain NaN"):
        nr.accuracy(torch.tensor([float("nan")]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"p must be a finite number in \(0, 1\)"):
        nr.prior_log_odds(1.0)


@pytest.mark.parametrize("p", [0.01, 0.2, 0.5, 0.9])
def test_prior_bias_gives_the_entropy_as_initial_loss(p):
    layer = nr.init_output_bias(nn.Linear(3, 1), p)
    nn.init.zeros_(layer.weight)
    assert torch.sigmoid(layer.bias).item() == pytest.approx(p)
    y = np.r_[np.ones(int(p * 1000)), np.zeros(1000 - int(p * 1000))]
    ref = log_loss(y, np.full_like(y, torch.sigmoid(layer.bias).item()), labels=[0, 1])
    assert nr.binary_entropy(p) == pytest.approx(ref, rel=1e-9)
    assert nr.binary_entropy(0.5) == pytest.approx(math.log(2))


@pytest.mark.parametrize("fn", [nr.binary_entropy, nr.prior_log_odds])
@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_probabilities_outside_the_open_interval_are_refused(fn, p):
    with pytest.raises(ValueError, match=r"p must be a finite number in \(0, 1\)"):
        fn(p)


def test_init_output_bias_refuses_layers_without_one_logit_or_bias():
    with pytest.raises(TypeError, match="out_features=1"):
        nr.init_output_bias(nn.Linear(3, 2), 0.1)
    with pytest.raises(ValueError, match="no bias"):
        nr.init_output_bias(nn.Linear(3, 1, bias=False), 0.1)


def test_bad_shapes_and_labels_are_refused_by_name():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match=r"w must have shape \(2,\)"):
        nr.neuron(x, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        nr.perceptron(torch.zeros(5), torch.zeros(5), 0.0)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        nr.neuron([[1.0, 2.0]], torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        nr.train_perceptron(x, torch.zeros(4))
    with pytest.raises(ValueError, match="binary labels"):
        nr.fit_logistic(x, torch.full((5,), 2.0))
    with pytest.raises(ValueError, match=r"x must be 2-D points"):
        nr.best_accuracy_through_origin(torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        nr.train_perceptron(x, torch.zeros(5), lr=-1)
    with pytest.raises(ValueError, match=r"shape \(N, 1\)"):
        nr.ReLUNet1D(4)(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="l2 must be finite and >= 0"):
        nr.fit_logistic(x, torch.zeros(5), l2=-1.0)


def _net_with_kinks(positions, slopes):
    """A ReLUNet1D with unit j bending at positions[j] by slopes[j] (w_j = 1, b_j = -x_j)."""
    net = nr.ReLUNet1D(len(positions)).double()
    with torch.no_grad():
        net.hidden.weight.fill_(1.0)
        net.hidden.bias.copy_(-torch.tensor(positions, dtype=torch.float64))
        net.out.weight.copy_(torch.tensor([slopes], dtype=torch.float64))
        net.out.bias.zero_()
    return net


def test_numerical_kinks_find_known_kinks_from_the_outputs_alone():
    positions = [-1.2345, 0.1, 0.77777, 2.5]
    net = _net_with_kinks(positions, [1.0, -2.0, 0.5, 3.0])
    found = nr.numerical_kinks(net, -3, 3, points=601)  # h = 0.01: kinks fall between grid points
    np.testing.assert_allclose(found.numpy(), positions, atol=1e-9)  # exact for isolated kinks
    np.testing.assert_allclose(nr.relu_kinks(net).numpy(), positions, atol=1e-12)
    # a straight line has none; kinks outside the interval are not reported
    assert nr.numerical_kinks(nn.Linear(1, 1), -3, 3).numel() == 0
    assert nr.numerical_kinks(net, 1.0, 2.0).numel() == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-2.5, 2.5), min_size=1, max_size=6, unique=True), st.integers(0, 1000))
def test_numerical_kinks_agree_with_relu_kinks(positions, seed):
    positions = sorted(positions)
    if len(positions) > 1 and min(b - a for a, b in itertools.pairwise(positions)) < 0.05:
        return  # kinks closer than a few grid steps merge, by design
    g = torch.Generator().manual_seed(seed)
    slopes = (torch.rand(len(positions), generator=g) + 0.5) * torch.where(
        torch.rand(len(positions), generator=g) < 0.5, -1.0, 1.0)
    net = _net_with_kinks(positions, slopes.tolist())
    found = nr.numerical_kinks(net, -3, 3, points=3001)
    assert found.numel() == len(positions)
    np.testing.assert_allclose(found.numpy(), nr.relu_kinks(net).numpy(), atol=1e-8)


def test_numerical_kinks_refuse_bad_arguments():
    net = nr.ReLUNet1D(4)
    with pytest.raises(TypeError, match=r"f must be an nn\.Module"):
        nr.numerical_kinks(lambda x: x, -1, 1)
    with pytest.raises(ValueError, match="lo must be smaller than hi"):
        nr.numerical_kinks(net, 1, -1)
    with pytest.raises(ValueError, match="points"):
        nr.numerical_kinks(net, -1, 1, points=2)
    with pytest.raises(ValueError, match="tol"):
        nr.numerical_kinks(net, -1, 1, tol=-1e-9)
    with pytest.raises(ValueError, match="hi must be a finite"):
        nr.numerical_kinks(net, -1, float("inf"))
    with pytest.raises(ValueError, match=r"f must map \(N, 1\) to \(N, 1\)"):
        nr.numerical_kinks(nn.Linear(1, 2), -1, 1)


def test_decay_groups_decay_matrices_only_like_nanogpt():
    model = nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8), nn.Linear(8, 16), nn.Conv1d(16, 4, 3))
    model[1].bias.requires_grad_(False)  # frozen parameters are left out
    decayed, kept = nr.decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decayed["params"]) == ["0.weight", "2.weight", "3.weight"]
    assert sorted(names[id(p)] for p in kept["params"]) == ["1.weight", "2.bias", "3.bias"]
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
    # AdamW with these groups leaves a zero-gradient bias alone and shrinks a zero-gradient weight
    layer = nn.Linear(3, 1)
    before_w, before_b = layer.weight.detach().clone(), layer.bias.detach().clone()
    optimizer = torch.optim.AdamW(nr.decay_groups(layer, 0.5), lr=0.1)
    layer.weight.grad, layer.bias.grad = torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), before_w * (1 - 0.1 * 0.5))
    torch.testing.assert_close(layer.bias.detach(), before_b)


def test_decay_groups_refuse_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        nr.decay_groups([torch.zeros(2)], 0.1)
    with pytest.raises(ValueError, match="weight_decay must be finite and >= 0"):
        nr.decay_groups(nn.Linear(2, 2), -0.1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        nr.decay_groups(nn.ReLU(), 0.1)


def test_fit_logistic_warns_when_lbfgs_stops_before_converging():
    g = torch.Generator().manual_seed(4)
    x, y = nr.make_offset_blobs(100, generator=g)
    with pytest.warns(RuntimeWarning, match="raise max_iter"):
        nr.fit_logistic(x.double(), y, l2=1e-3, max_iter=2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        nr.fit_logistic(x.double(), y, l2=1e-3, max_iter=500)


def test_fit_regression_matches_least_squares_and_warns_when_it_diverges():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 1, generator=g, dtype=torch.float64)
    y = 1.5 * x - 0.7 + 0.1 * torch.randn(50, 1, generator=g, dtype=torch.float64)
    with torch.random.fork_rng():  # a seeded start: Adam at lr 0.05 needs more than 3000 steps
        torch.manual_seed(0)  # from about 1% of nn.Linear's random starts (seen in CI)
        line = nn.Linear(1, 1).double()
    nr.fit_regression(line, x, y, steps=3000, lr=0.05)
    slope, intercept = np.polyfit(x[:, 0].numpy(), y[:, 0].numpy(), 1)
    assert line.weight.item() == pytest.approx(slope, abs=1e-4)
    assert line.bias.item() == pytest.approx(intercept, abs=1e-4)
    with pytest.warns(RuntimeWarning, match="lower lr"):
        nr.fit_regression(nr.ReLUNet1D(8).double(), x, y, steps=50, lr=1e6)
