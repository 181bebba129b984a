"""tutorlib.erf: the empirical field by autograd, and the effective receptive field of Luo et al.
(2016) against the central-limit width, a Gaussian, and hand-built networks."""

import math

import pytest
import torch
from torch import nn

from tutorlib import erf
from tutorlib.receptive_field import LayerSpec

torch.set_num_threads(1)


def test_spread_gaussian_distance_and_power_law_on_known_inputs():
    binomial = torch.tensor([math.comb(10, i) for i in range(11)], dtype=torch.float64)
    mean, std = erf.profile_spread(binomial)
    assert mean == pytest.approx(5.0) and std == pytest.approx(math.sqrt(10 * 0.25))
    t = torch.arange(81, dtype=torch.float64)
    assert erf.gaussian_distance(torch.exp(-0.5 * ((t - 40) / 6) ** 2)) < 1e-6
    assert erf.gaussian_distance(torch.ones(81)) > 0.1
    x = [2, 4, 8, 16]
    assert erf.power_law_exponent(x, [3 * v**0.5 for v in x]) == pytest.approx(0.5)


def test_erf_of_random_relu_stacks_matches_the_clt_width():
    # independent zero-mean weights: E[g^2] is the n-fold self-convolution of a flat 3x3
    # kernel, whose variance per axis is 2/3; the ReLUs only rescale it
    depth = 8
    energy = erf.effective_receptive_field(depth, n_nets=16, batch=8, seed=0)
    assert energy.shape == (2 * depth + 1,) * 2
    assert energy.sum().item() == pytest.approx(1.0)
    for axis in (0, 1):
        profile = energy.sum(dim=axis)
        mean, std = erf.profile_spread(profile)
        assert mean == pytest.approx(depth, abs=0.3)
        assert std == pytest.approx(math.sqrt(2 * depth / 3), rel=0.1)
        assert erf.gaussian_distance(profile) < 0.15


def test_empirical_field_refuses_bad_models_and_inputs():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        erf.empirical_receptive_field("conv", (1, 8))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(1, 1, 8\)"):
        erf.empirical_receptive_field(nn.Conv1d(1, 1, 3), (1, 8), x=torch.ones(1, 1, 9))
    with pytest.raises(ValueError, match="model must return one tensor"):
        erf.empirical_receptive_field(nn.Flatten(), (1, 8))


def test_empirical_field_restores_training_mode_and_measures_bn_nets_per_position():
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.BatchNorm1d(2), nn.Conv1d(2, 1, 3, padding=1))
    model.train()
    measured = erf.empirical_receptive_field(erf.linearized(model), (1, 16))
    assert measured.size == (5,) and model.training
    # in training mode BatchNorm's statistics would couple all 16 positions; eval mode does not
    gated = erf.empirical_receptive_field(model, (1, 16), x=torch.randn(1, 1, 16))
    assert gated.size[0] <= 5 and model.training


def test_erf_map_of_a_linear_stack_is_the_self_convolved_kernel():
    # two 1-D 3-tap box filters (weights 1/3): the gradient of the centre unit is the box
    # convolved with itself, [1, 2, 3, 2, 1] / 9, whatever the input; squared and normalised
    model = nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.Conv1d(1, 1, 3, bias=False)).double()
    for conv in model:
        nn.init.constant_(conv.weight, 1 / 3)
    x = torch.randn(4, 1, 9, dtype=torch.float64)
    energy = erf.erf_map(model, x)  # output length 5, centre unit 2 reads inputs 2..6
    expected = torch.zeros(9, dtype=torch.float64)
    expected[2:7] = torch.tensor([1.0, 2, 3, 2, 1]) ** 2
    torch.testing.assert_close(energy, expected / expected.sum())
    # another unit, and a ReLU network whose map is an average over samples
    shifted = erf.erf_map(model, x, index=(0,))
    assert shifted[:5].sum().item() == pytest.approx(1.0) and shifted[5:].sum().item() == 0


def test_erf_map_averages_squared_gradients_like_a_loop_over_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).double()
    x = torch.randn(5, 2, 7, 7, dtype=torch.float64)
    total = torch.zeros(7, 7, dtype=torch.float64)
    for sample in x:  # brute force: one sample at a time, gradient of the summed channels at (3, 3)
        xi = sample[None].clone().requires_grad_(True)
        model(xi)[0, :, 3, 3].sum().backward()
        total += xi.grad[0].pow(2).sum(dim=0)
    torch.testing.assert_close(erf.erf_map(model, x), total / total.sum())
    model.train()
    erf.erf_map(model, x)
    assert model.training  # the mode is restored


def test_erf_functions_refuse_bad_arguments():
    conv = nn.Conv1d(1, 1, 3)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        erf.erf_map("conv", torch.zeros(1, 1, 5))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        erf.erf_map(conv, torch.zeros(1, 1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be finite"):
        erf.erf_map(conv, torch.full((1, 1, 5), float("nan")))
    with pytest.raises(ValueError, match="index must have one entry"):
        erf.erf_map(conv, torch.zeros(1, 1, 5), index=(7,))
    dead = nn.Conv1d(1, 1, 3, bias=False)
    nn.init.zeros_(dead.weight)
    with pytest.raises(ValueError, match="zero gradient for every input"):
        erf.erf_map(dead, torch.ones(1, 1, 5))
    with pytest.raises(TypeError, match="activation must be True or False"):
        erf.random_conv_stack(2, activation="yes")
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        erf.random_conv_stack(2, generator=0)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        erf.effective_receptive_field(2, channels=0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        erf.effective_receptive_field(0)
    with pytest.raises(ValueError, match="profile must be finite"):
        erf.profile_spread(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="asymmetrically"):
        erf.conv_stack([LayerSpec(3, padding=0, padding_right=1)])


def test_moved_names_are_still_found_in_receptive_field():
    from tutorlib import receptive_field as rf
    from tutorlib import rf_models

    assert rf.power_law_exponent is erf.power_law_exponent and rf.ResNet50 is rf_models.ResNet50
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rf.nope  # noqa: B018


def test_empirical_field_record_and_gradients_check_shapes():
    with pytest.raises(ValueError, match="gradient must be finite"):
        erf.EmpiricalReceptiveField(torch.tensor([float("nan"), 1.0]), (0,), (0,), (1,))
    with pytest.raises(TypeError, match="gradient must be a floating-point tensor"):
        erf.EmpiricalReceptiveField(torch.ones(3, dtype=torch.long), (0,), (0,), (1,))
    with pytest.raises(ValueError, match="first must be a tuple with one entry per axis"):
        erf.EmpiricalReceptiveField(torch.ones(3, 3), (0, 0), (0,), (1, 1))
    with pytest.raises(ValueError, match="first and last must satisfy"):
        erf.EmpiricalReceptiveField(torch.ones(3), (0,), (2,), (1,))
    measured = erf.EmpiricalReceptiveField(torch.tensor([0.0, 1.0, 0.0, 2.0]), (0,), (1,), (3,))
    assert measured.size == (3,) and measured.support(0).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="axis must be"):
        measured.support(1)
    conv2d = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match=r"x must have shape .* with 2 spatial axes"):
        erf.input_gradient(conv2d, torch.zeros(8, 1, 17))
    with pytest.raises(ValueError, match=r"x must have shape .* with 2 spatial axes"):
        erf.erf_map(conv2d, torch.zeros(8, 1, 17, 17, 1))
    with pytest.raises(ValueError, match="model does not run on x"):
        erf.input_gradient(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)), torch.zeros(1, 1, 5))
