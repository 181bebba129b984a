"""tutorlib.receptive_field: recursions, measurement by autograd, reading torch models, and the
published table of Araujo, Norris & Sim (Distill 2019; google-research/receptive_field)."""

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import receptive_field as rf
from tutorlib.receptive_field import LayerSpec, ReceptiveField

torch.set_num_threads(1)


@st.composite
def layer_stacks(draw, max_layers=5, max_kernel=5, max_stride=3, max_dilation=3):
    layers = []
    for i in range(draw(st.integers(1, max_layers))):
        k = draw(st.integers(1, max_kernel))
        d = draw(st.integers(1, max_dilation))
        p = draw(st.integers(0, d * (k - 1)))
        layers.append(LayerSpec(k, draw(st.integers(1, max_stride)), p, d, name=f"l{i}"))
    return layers


def closed_form(layers):
    """Araujo et al. (2019), eqs. for r_0, S_0, P_0: sums of products of the strides below."""
    size, padding, jump = 1, 0, 1
    for layer in layers:
        size += (layer.dilation * (layer.kernel_size - 1)) * jump
        padding += layer.padding * jump
        jump *= layer.stride
    return size, jump, padding


# --------------------------------------------------------------------------------------------
# the recursions
# --------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(layer_stacks(max_layers=8))
def test_top_down_bottom_up_and_closed_form_agree(layers):
    down = rf.receptive_field_top_down(layers)
    up = rf.receptive_field(layers)
    assert down == up
    assert (up.size, up.stride, up.padding) == closed_form(layers)
    # every prefix of the stack: the list holds the field of each layer
    for i, field in enumerate(rf.receptive_fields(layers)):
        assert field == rf.receptive_field_top_down(layers[: i + 1])


def test_hand_computed_fields():
    conv3 = LayerSpec(3, padding=1)
    assert rf.receptive_field([conv3, conv3]) == ReceptiveField(5, 1, 2)  # two 3x3 = one 5x5
    assert rf.receptive_field([conv3] * 3) == ReceptiveField(7, 1, 3)
    # dilation 2 turns a 3-tap kernel into a 5-wide one
    assert rf.receptive_field([LayerSpec(3, dilation=2)]).size == 5
    # 2x2 stride-2 pool then 3x3: the conv's neighbours are 2 inputs apart -> 2 + 2*2
    assert rf.receptive_field([LayerSpec(2, 2), LayerSpec(3)]) == ReceptiveField(6, 2, 0)
    assert rf.receptive_field([]) == ReceptiveField(1, 1, 0)
    assert ReceptiveField(5, 2, 1).span(3) == (5, 9)
    assert ReceptiveField(5, 2, 1).center(3) == 7.0


def test_support_has_holes_when_a_stride_skips_inputs():
    assert rf.receptive_field_support([LayerSpec(3), LayerSpec(3)]).all()
    # 1x1 stride 2, then 3 taps: reads inputs 0, 2, 4 only
    assert rf.receptive_field_support([LayerSpec(1, 2), LayerSpec(3)]).tolist() == [1, 0, 1, 0, 1]
    # equal dilations 2, 2: only even offsets ("gridding"); 1, 2, 4: no holes (WaveNet)
    gridded = rf.receptive_field_support([LayerSpec(3, dilation=2)] * 2)
    assert gridded[1::2].sum() == 0 and gridded[::2].all()
    assert rf.receptive_field_support([LayerSpec(3, dilation=2**i) for i in range(5)]).all()


@settings(max_examples=100, deadline=None)
@given(layer_stacks(max_layers=6))
def test_output_sizes_match_pytorch(layers):
    n = rf.centred_input_size(layers)
    x = torch.zeros(1, 1, n)
    for layer, size in zip(layers, rf.output_sizes(layers, n), strict=True):
        x = nn.functional.conv1d(x, torch.ones(1, 1, layer.kernel_size), stride=layer.stride,
                                 padding=layer.padding, dilation=layer.dilation)
        assert x.shape[-1] == size


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(1, 7), st.integers(1, 4), st.integers(1, 3))
def test_tf_same_padding_matches_tensorflows_rule(n, k, s, d):
    left, right = rf.tf_same_padding(n, k, s, d)
    k_eff = d * (k - 1) + 1
    # TensorFlow's documented rule (and google-research/receptive_field's)
    total = max(k_eff - s, 0) if n % s == 0 else max(k_eff - n % s, 0)
    assert (left, right) == (total // 2, total - total // 2)
    assert LayerSpec(k, s, left, d, padding_right=right).output_size(n) == math.ceil(n / s)


def test_centred_input_size_is_the_smallest_that_fits():
    layers = [LayerSpec(3, 2, 1), LayerSpec(5, 1, 2), LayerSpec(3, 2, 0)]
    field = rf.receptive_field(layers)

    def fits(n):
        try:
            n_out = rf.output_sizes(layers, n)[-1]
        except ValueError:
            return False
        first, last = field.span((n_out - 1) // 2)
        return first >= 0 and last <= n - 1

    n = rf.centred_input_size(layers)
    assert fits(n) and not any(fits(m) for m in range(1, n))


# --------------------------------------------------------------------------------------------
# theory == measurement
# --------------------------------------------------------------------------------------------
def _as_torch(layers, use_pools):
    """Conv1d (weights 1/fan-in) or AvgPool1d where PyTorch allows it; both average positively."""
    modules = OrderedDict()
    for i, layer in enumerate(layers):
        if use_pools and layer.dilation == 1 and 2 * layer.padding <= layer.kernel_size:
            modules[f"l{i}"] = nn.AvgPool1d(layer.kernel_size, layer.stride, layer.padding)
        else:
            modules[f"l{i}"] = rf.conv_stack([layer])[0]
    return nn.Sequential(modules).double()


@settings(max_examples=150, deadline=None)
@given(layer_stacks(max_layers=5), st.booleans())
def test_theory_equals_measurement_on_random_stacks(layers, use_pools):
    model = _as_torch(layers, use_pools)
    n = rf.centred_input_size(layers)
    assert rf.layer_specs(model, (1, n)) == [
        LayerSpec(s.kernel_size, s.stride, s.padding, s.dilation, f"l{i}", s.padding)
        for i, s in enumerate(layers)
    ]
    measured = rf.empirical_receptive_field(model, (1, n))
    field = rf.receptive_field(layers)
    first, last = field.span(measured.output_index[0])
    assert (measured.first[0], measured.last[0]) == (first, last)
    assert torch.equal(measured.support(0), rf.receptive_field_support(layers))


@st.composite
def paired_stacks(draw):
    n = draw(st.integers(1, 3))
    stacks = st.lists(layer_stacks(max_layers=1, max_kernel=4, max_stride=2, max_dilation=2), min_size=n,
                      max_size=n)
    return [s[0] for s in draw(stacks)], [s[0] for s in draw(stacks)]


@settings(max_examples=25, deadline=None)
@given(paired_stacks())
def test_two_dimensional_fields_are_separable(stacks):
    rows, cols = stacks
    modules = [nn.Conv2d(1, 1, (a.kernel_size, b.kernel_size), (a.stride, b.stride),
                         (a.padding, b.padding), (a.dilation, b.dilation), bias=False)
               for a, b in zip(rows, cols, strict=True)]
    model = rf.linearized(nn.Sequential(*modules))
    size = (rf.centred_input_size(rows), rf.centred_input_size(cols))
    measured = rf.empirical_receptive_field(model, (1, *size))
    for axis, layers in enumerate((rows, cols)):
        assert rf.receptive_field(rf.layer_specs(model, (1, *size), axis=axis)) == rf.receptive_field(layers)
        first, last = rf.receptive_field(layers).span(measured.output_index[axis])
        assert (measured.first[axis], measured.last[axis]) == (first, last)
    expected = torch.outer(rf.receptive_field_support(rows), rf.receptive_field_support(cols))
    (top, left), (bottom, right) = measured.first, measured.last
    assert torch.equal(measured.gradient[top : bottom + 1, left : right + 1] != 0, expected)


def test_max_pool_hides_part_of_the_field_until_linearized():
    model = nn.Sequential(nn.MaxPool1d(2, 2), nn.ReLU(), nn.Conv1d(1, 1, 3, bias=False))
    nn.init.ones_(model[2].weight)
    x = torch.arange(12.0)[None, None]  # increasing: each window's maximum is its right input
    gated = rf.empirical_receptive_field(model, (1, 12), x=x)  # centre output unit 1: inputs 2..7
    full = rf.empirical_receptive_field(rf.linearized(model), (1, 12), x=x)
    assert rf.receptive_field(rf.layer_specs(model, (1, 12))).span(1) == (2, 7)
    assert (full.first, full.last) == ((2,), (7,)) and bool((full.support(0)).all())
    assert gated.gradient.nonzero().flatten().tolist() == [3, 5, 7]
    assert isinstance(model[0], nn.MaxPool1d) and model[2].weight.sum() == 3  # original untouched


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_pytorch_same_padding_with_an_even_kernel_is_read_correctly():
    model = nn.Sequential(nn.Conv1d(1, 1, 4, padding="same"), nn.Conv1d(1, 1, 3, padding="same", dilation=2))
    specs = rf.layer_specs(model, (1, 20))
    assert [(s.padding, s.padding_right) for s in specs] == [(1, 2), (2, 2)]
    measured = rf.empirical_receptive_field(rf.linearized(model), (1, 20))
    assert (measured.first[0], measured.last[0]) == rf.receptive_field(specs).span(measured.output_index[0])


def test_same_pad_module_gives_ceil_n_over_s_outputs():
    for n in (7, 8, 224, 321):
        model = nn.Sequential(rf.SamePad(3, 2), nn.Conv2d(1, 1, 3, 2))
        assert model(torch.zeros(1, 1, n, n)).shape[-2:] == (math.ceil(n / 2),) * 2


# --------------------------------------------------------------------------------------------
# reading models with several paths
# --------------------------------------------------------------------------------------------
class TwoPaths(nn.Module):
    def __init__(self, a, b, join="add"):
        super().__init__()
        self.a, self.b, self.join = a, b, join

    def forward(self, x):
        if self.join == "add":
            return self.a(x) + self.b(x)
        return torch.cat([self.a(x), self.b(x)], dim=1)


@pytest.mark.parametrize("join", ["add", "cat"])
def test_aligned_paths_keep_the_largest_field(join):
    model = TwoPaths(nn.Conv1d(1, 1, 5, padding=2), nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), nn.ReLU()),
                     join)
    assert rf.receptive_field(rf.layer_specs(model, (1, 16))) == ReceptiveField(5, 1, 2)


def test_misaligned_paths_raise():
    # a stride-2 1x1 shortcut beside a 2x2 pool: same output size, centres 0 and 0.5 apart
    model = TwoPaths(nn.Conv1d(1, 1, 1, stride=2), nn.AvgPool1d(2, 2))
    with pytest.raises(ValueError, match="misaligned"):
        rf.layer_specs(model, (1, 16))
    strides = TwoPaths(nn.Conv1d(1, 1, 1), nn.Sequential(nn.Conv1d(1, 1, 2, 2), nn.Upsample(scale_factor=2)))
    with pytest.raises(TypeError, match="Upsample"):
        rf.layer_specs(strides, (1, 16))


# published values: google-research/receptive_field, RECEPTIVE_FIELD_TABLE.md (TF-Slim models)
# (end-point, RF, effective stride, effective padding) at input resolutions 224 and 321
PUBLISHED = {
    ("alexnet_v2", 224): [("conv1", 11, 4, 0), ("pool1", 19, 8, 0), ("conv2", 51, 8, 16),
                          ("conv3", 99, 16, 32), ("conv4", 131, 16, 48), ("conv5", 163, 16, 64),
                          ("pool5", 195, 32, 64)],
    ("vgg_16", 224): [("conv1/conv1_1", 3, 1, 1), ("pool1", 6, 2, 2), ("conv2/conv2_1", 10, 2, 4),
                      ("pool2", 16, 4, 6), ("conv3/conv3_1", 24, 4, 10), ("conv3/conv3_2", 32, 4, 14),
                      ("pool3", 44, 8, 18), ("conv4/conv4_1", 60, 8, 26), ("conv4/conv4_2", 76, 8, 34),
                      ("pool4", 100, 16, 42), ("conv5/conv5_1", 132, 16, 58), ("conv5/conv5_2", 164, 16, 74),
                      ("pool5", 212, 32, 90)],
    ("mobilenet_v1", 224): [("Conv2d_0", 3, 2, 0), ("Conv2d_1_pointwise", 7, 2, 2),
                            ("Conv2d_2_pointwise", 11, 4, 2), ("Conv2d_3_pointwise", 19, 4, 6),
                            ("Conv2d_4_pointwise", 27, 8, 6), ("Conv2d_5_pointwise", 43, 8, 14),
                            ("Conv2d_6_pointwise", 59, 16, 14), ("Conv2d_7_pointwise", 91, 16, 30),
                            ("Conv2d_8_pointwise", 123, 16, 46), ("Conv2d_9_pointwise", 155, 16, 62),
                            ("Conv2d_10_pointwise", 187, 16, 78), ("Conv2d_11_pointwise", 219, 16, 94),
                            ("Conv2d_12_pointwise", 251, 32, 94), ("Conv2d_13_pointwise", 315, 32, 126)],
    ("mobilenet_v1", 321): [("Conv2d_0", 3, 2, 1), ("Conv2d_1_pointwise", 7, 2, 3),
                            ("Conv2d_2_pointwise", 11, 4, 5), ("Conv2d_3_pointwise", 19, 4, 9),
                            ("Conv2d_4_pointwise", 27, 8, 13), ("Conv2d_5_pointwise", 43, 8, 21),
                            ("Conv2d_6_pointwise", 59, 16, 29), ("Conv2d_7_pointwise", 91, 16, 45),
                            ("Conv2d_8_pointwise", 123, 16, 61), ("Conv2d_9_pointwise", 155, 16, 77),
                            ("Conv2d_10_pointwise", 187, 16, 93), ("Conv2d_11_pointwise", 219, 16, 109),
                            ("Conv2d_12_pointwise", 251, 32, 125), ("Conv2d_13_pointwise", 315, 32, 157)],
    ("resnet_v1_50", 224): [("block1", 35, 8, 15), ("block2", 99, 16, 47), ("block3", 291, 32, 143),
                            ("block4", 483, 32, 239)],
    ("resnet_v1_50", 321): [("block1", 35, 8, 17), ("block2", 99, 16, 49), ("block3", 291, 32, 145),
                            ("block4", 483, 32, 241)],
}
PUBLISHED[("alexnet_v2", 321)] = PUBLISHED[("alexnet_v2", 224)]  # the table lists the same rows
PUBLISHED[("vgg_16", 321)] = PUBLISHED[("vgg_16", 224)]


def _endpoint(model: nn.Sequential, path: str) -> nn.Sequential:
    """The model up to and including the end-point 'block' or 'block/child'."""
    top, _, child = path.partition("/")
    names = [name for name, _ in model.named_children()]
    prefix = model[: names.index(top) + (0 if child else 1)]
    if child:
        block = getattr(model, top)
        prefix.add_module(top, block[: [n for n, _ in block.named_children()].index(child) + 1])
    return prefix


@pytest.mark.parametrize("net,resolution", sorted(PUBLISHED))
def test_tf_slim_definitions_reproduce_the_published_table(net, resolution):
    with torch.device("meta"):  # architecture only: no weights, no compute
        model = getattr(rf, net)()
    for endpoint, size, stride, padding in PUBLISHED[(net, resolution)]:
        specs = rf.layer_specs(_endpoint(model, endpoint), (3, resolution, resolution))
        assert rf.receptive_field(specs) == ReceptiveField(size, stride, padding), endpoint
        assert rf.receptive_field_top_down(specs) == ReceptiveField(size, stride, padding), endpoint


@pytest.mark.parametrize("net", ["alexnet_v2", "vgg_16", "resnet_v1_50", "mobilenet_v1"])
def test_tf_slim_fields_are_measured_exactly_by_autograd(net):
    # 640 = 32 * 20: every strided layer sees an even size, as at 224, and the centre unit's
    # field lies inside the image
    model = rf.linearized(getattr(rf, net)(width=1 / 64, in_channels=1)).double()
    field = rf.receptive_field(rf.layer_specs(model, (1, 640, 640)))
    with torch.device("meta"):
        full_width = getattr(rf, net)()
    assert field == rf.receptive_field(rf.layer_specs(full_width, (3, 224, 224)))
    measured = rf.empirical_receptive_field(model, (1, 640, 640))
    for axis in (0, 1):
        assert (measured.first[axis], measured.last[axis]) == field.span(measured.output_index[axis])
    assert bool((measured.gradient[measured.first[0] : measured.last[0] + 1,
                                   measured.first[1] : measured.last[1] + 1] > 0).all())


def test_mobilenet_matches_tf_slims_parameter_and_mac_counts():
    # from the docstring of TF-Slim's mobilenet_v1.py: 3,185,088 weights, 567,716,352 MACs at 224
    with torch.device("meta"):
        model = rf.mobilenet_v1()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    macs = []
    hooks = [c.register_forward_hook(lambda m, i, o: macs.append(o.shape[2] * o.shape[3] * m.weight.numel()))
             for c in convs]
    model(torch.zeros(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert sum(c.weight.numel() for c in convs) == 3_185_088
    assert sum(macs) == 567_716_352


def test_torchvision_layout_resnet50():
    assert sum(p.numel() for p in rf.ResNet50().parameters()) == 25_557_032  # torchvision's resnet50
    with torch.device("meta"):
        v15, original = rf.ResNet50("3x3").features(), rf.ResNet50("1x1").features()
    # by hand: 3x3 convs at jumps 4,4,4 | 4,8,8,8 | 8,16x5 | 16,32,32 -> 1 + 6 + 4 + 2*sum = 427
    assert rf.receptive_field(rf.layer_specs(v15, (3, 224, 224))) == ReceptiveField(427, 32, 213)
    # stride on the 1x1: every 3x3 sits after its stage's stride, like TF-Slim's layout
    assert rf.receptive_field(rf.layer_specs(original, (3, 224, 224))) == ReceptiveField(483, 32, 241)
    with pytest.raises(TypeError, match="flatten"):
        rf.layer_specs(rf.ResNet50(width=1 / 16), (3, 64, 64))


# --------------------------------------------------------------------------------------------
# the effective receptive field
# --------------------------------------------------------------------------------------------
def test_spread_gaussian_distance_and_power_law_on_known_inputs():
    binomial = torch.tensor([math.comb(10, i) for i in range(11)], dtype=torch.float64)
    mean, std = rf.profile_spread(binomial)
    assert mean == pytest.approx(5.0) and std == pytest.approx(math.sqrt(10 * 0.25))
    t = torch.arange(81, dtype=torch.float64)
    assert rf.gaussian_distance(torch.exp(-0.5 * ((t - 40) / 6) ** 2)) < 1e-6
    assert rf.gaussian_distance(torch.ones(81)) > 0.1
    x = [2, 4, 8, 16]
    assert rf.power_law_exponent(x, [3 * v**0.5 for v in x]) == pytest.approx(0.5)


def test_erf_of_random_relu_stacks_matches_the_clt_width():
    # independent zero-mean weights: E[g^2] is the n-fold self-convolution of a flat 3x3
    # kernel, whose variance per axis is 2/3; the ReLUs only rescale it
    depth = 8
    erf = rf.effective_receptive_field(depth, n_nets=16, batch=8, seed=0)
    assert erf.shape == (2 * depth + 1,) * 2
    assert erf.sum().item() == pytest.approx(1.0)
    for axis in (0, 1):
        profile = erf.sum(dim=axis)
        mean, std = rf.profile_spread(profile)
        assert mean == pytest.approx(depth, abs=0.3)
        assert std == pytest.approx(math.sqrt(2 * depth / 3), rel=0.1)
        assert rf.gaussian_distance(profile) < 0.15


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"kernel_size": 0}, ValueError, "kernel_size must be >= 1, got 0"),
        ({"kernel_size": 3, "stride": 0}, ValueError, "stride must be >= 1, got 0"),
        ({"kernel_size": 3, "padding": -1}, ValueError, "padding must be >= 0, got -1"),
        ({"kernel_size": 3, "dilation": 0}, ValueError, "dilation must be >= 1, got 0"),
        ({"kernel_size": 3, "padding_right": -2}, ValueError, "padding_right must be >= 0, got -2"),
        ({"kernel_size": 3.0}, TypeError, "kernel_size must be an int"),
        ({"kernel_size": True}, TypeError, "kernel_size must be an int"),
        ({"kernel_size": 3, "name": 5}, TypeError, "name must be a str"),
    ],
)
def test_bad_layer_specs_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        LayerSpec(**kwargs)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(TypeError, match=r"layers\[1\] must be a LayerSpec"):
        rf.receptive_field([LayerSpec(3), (3, 1)])
    with pytest.raises(TypeError, match="layers must be a list"):
        rf.receptive_field(LayerSpec(3))
    with pytest.raises(ValueError, match="shorter than the effective kernel"):
        rf.output_sizes([LayerSpec(5)], 3)
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        rf.tf_same_padding(0, 3, 1)
    with pytest.raises(TypeError, match=r"input_size must be \(channels, \*spatial\)"):
        rf.layer_specs(nn.Conv1d(1, 1, 3), 16)
    with pytest.raises(ValueError, match=r"axis must be an int in \[0, 1\)"):
        rf.layer_specs(nn.Conv1d(1, 1, 3), (1, 16), axis=1)
    with pytest.raises(ValueError, match=r"does not run on an input of size \(1, 4\)"):
        rf.layer_specs(nn.Conv1d(1, 1, 7), (1, 4))
    with pytest.raises(TypeError, match="Linear"):
        rf.layer_specs(nn.Sequential(nn.Conv1d(1, 1, 3), nn.Linear(14, 2)), (1, 16))
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        rf.layer_specs(lambda x: x, (1, 16))
    with pytest.raises(ValueError, match="zero gradient for every input"):
        model = nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.ReLU())
        nn.init.constant_(model[0].weight, -1.0)
        rf.empirical_receptive_field(model, (1, 8))
    with pytest.raises(ValueError, match="index must have one entry"):
        rf.empirical_receptive_field(nn.Conv1d(1, 1, 3), (1, 8), index=(6,))
    with pytest.raises(TypeError, match="dilation"):
        rf.linearized(nn.Sequential(nn.MaxPool1d(3, dilation=2)))
    with pytest.raises(ValueError, match="asymmetrically"):
        rf.conv_stack([LayerSpec(3, padding=0, padding_right=1)])
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID'"):
        rf._slim_conv(1, 1, 3, padding="same")
    with pytest.raises(ValueError, match="stride_on must be"):
        rf.Bottleneck(4, 1, stride_on="3x1")


def test_empirical_field_refuses_bad_models_and_inputs():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        rf.empirical_receptive_field("conv", (1, 8))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(1, 1, 8\)"):
        rf.empirical_receptive_field(nn.Conv1d(1, 1, 3), (1, 8), x=torch.ones(1, 1, 9))
    with pytest.raises(ValueError, match="model must return one tensor"):
        rf.empirical_receptive_field(nn.Flatten(), (1, 8))


def test_empirical_field_restores_training_mode_and_measures_bn_nets_per_position():
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.BatchNorm1d(2), nn.Conv1d(2, 1, 3, padding=1))
    model.train()
    measured = rf.empirical_receptive_field(rf.linearized(model), (1, 16))
    assert measured.size == (5,) and model.training
    # in training mode BatchNorm's statistics would couple all 16 positions; eval mode does not
    gated = rf.empirical_receptive_field(model, (1, 16), x=torch.randn(1, 1, 16))
    assert gated.size[0] <= 5 and model.training


def test_fields_models_and_profiles_check_their_arguments():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        rf.ReceptiveField(size=3, stride=0, padding=0)
    field = rf.ReceptiveField(size=3, stride=2, padding=1)
    assert field.span(2) == (3, 5) and field.center(2) == 4.0
    with pytest.raises(ValueError, match="index must be >= 0"):
        field.span(-1)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        rf.effective_receptive_field(0)
    with pytest.raises(ValueError, match="profile must be finite"):
        rf.profile_spread(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="planes must be >= 1"):
        rf.Bottleneck(64, -1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rf.input_gradient(torch.nn.Conv1d(1, 1, 3), torch.zeros(1, 1, 5, dtype=torch.long))
