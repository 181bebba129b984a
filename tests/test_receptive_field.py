"""tutorlib.receptive_field: the recursions, checked against the closed form, PyTorch's output
sizes and a measurement by autograd (tutorlib.erf), and reading torch models. The published
table of Araujo, Norris & Sim is in test_rf_models.py, the effective field in test_erf.py."""

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import erf
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
            modules[f"l{i}"] = erf.conv_stack([layer])[0]
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
    measured = erf.empirical_receptive_field(model, (1, n))
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
    model = erf.linearized(nn.Sequential(*modules))
    size = (rf.centred_input_size(rows), rf.centred_input_size(cols))
    measured = erf.empirical_receptive_field(model, (1, *size))
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
    gated = erf.empirical_receptive_field(model, (1, 12), x=x)  # centre output unit 1: inputs 2..7
    full = erf.empirical_receptive_field(erf.linearized(model), (1, 12), x=x)
    assert rf.receptive_field(rf.layer_specs(model, (1, 12))).span(1) == (2, 7)
    assert (full.first, full.last) == ((2,), (7,)) and bool((full.support(0)).all())
    assert gated.gradient.nonzero().flatten().tolist() == [3, 5, 7]
    assert isinstance(model[0], nn.MaxPool1d) and model[2].weight.sum() == 3  # original untouched


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_pytorch_same_padding_with_an_even_kernel_is_read_correctly():
    model = nn.Sequential(nn.Conv1d(1, 1, 4, padding="same"), nn.Conv1d(1, 1, 3, padding="same", dilation=2))
    specs = rf.layer_specs(model, (1, 20))
    assert [(s.padding, s.padding_right) for s in specs] == [(1, 2), (2, 2)]
    measured = erf.empirical_receptive_field(erf.linearized(model), (1, 20))
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
        erf.empirical_receptive_field(model, (1, 8))
    with pytest.raises(ValueError, match="index must have one entry"):
        erf.empirical_receptive_field(nn.Conv1d(1, 1, 3), (1, 8), index=(6,))
    with pytest.raises(TypeError, match="dilation"):
        erf.linearized(nn.Sequential(nn.MaxPool1d(3, dilation=2)))
    with pytest.raises(ValueError, match="asymmetrically"):
        erf.conv_stack([LayerSpec(3, padding=0, padding_right=1)])


def test_fields_models_and_profiles_check_their_arguments():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        rf.ReceptiveField(size=3, stride=0, padding=0)
    field = rf.ReceptiveField(size=3, stride=2, padding=1)
    assert field.span(2) == (3, 5) and field.center(2) == 4.0
    with pytest.raises(ValueError, match="index must be >= 0"):
        field.span(-1)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        erf.effective_receptive_field(0)
    with pytest.raises(ValueError, match="profile must be finite"):
        erf.profile_spread(torch.tensor([1.0, float("nan")]))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        erf.input_gradient(torch.nn.Conv1d(1, 1, 3), torch.zeros(1, 1, 5, dtype=torch.long))
