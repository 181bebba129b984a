"""tutorlib.rf_models: the TF-Slim networks reproduce the receptive-field table of Araujo, Norris &
Sim (Distill 2019; google-research/receptive_field) at every end-point, autograd measures the same
fields, and the parameter counts match TF-Slim's and torchvision's."""

import pytest
import torch
from torch import nn

from tutorlib import erf
from tutorlib import receptive_field as rf
from tutorlib import rf_models as rfm
from tutorlib.receptive_field import ReceptiveField

torch.set_num_threads(1)


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
        model = getattr(rfm, net)()
    for endpoint, size, stride, padding in PUBLISHED[(net, resolution)]:
        specs = rf.layer_specs(_endpoint(model, endpoint), (3, resolution, resolution))
        assert rf.receptive_field(specs) == ReceptiveField(size, stride, padding), endpoint
        assert rf.receptive_field_top_down(specs) == ReceptiveField(size, stride, padding), endpoint


@pytest.mark.parametrize("net", ["alexnet_v2", "vgg_16", "resnet_v1_50", "mobilenet_v1"])
def test_tf_slim_fields_are_measured_exactly_by_autograd(net):
    # 640 = 32 * 20: every strided layer sees an even size, as at 224, and the centre unit's
    # field lies inside the image
    model = erf.linearized(getattr(rfm, net)(width=1 / 64, in_channels=1)).double()
    field = rf.receptive_field(rf.layer_specs(model, (1, 640, 640)))
    with torch.device("meta"):
        full_width = getattr(rfm, net)()
    assert field == rf.receptive_field(rf.layer_specs(full_width, (3, 224, 224)))
    measured = erf.empirical_receptive_field(model, (1, 640, 640))
    for axis in (0, 1):
        assert (measured.first[axis], measured.last[axis]) == field.span(measured.output_index[axis])
    assert bool((measured.gradient[measured.first[0] : measured.last[0] + 1,
                                   measured.first[1] : measured.last[1] + 1] > 0).all())


def test_mobilenet_matches_tf_slims_parameter_and_mac_counts():
    # from the docstring of TF-Slim's mobilenet_v1.py: 3,185,088 weights, 567,716,352 MACs at 224
    with torch.device("meta"):
        model = rfm.mobilenet_v1()
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
    assert sum(p.numel() for p in rfm.ResNet50().parameters()) == 25_557_032  # torchvision's resnet50
    with torch.device("meta"):
        v15, original = rfm.ResNet50("3x3").features(), rfm.ResNet50("1x1").features()
    # by hand: 3x3 convs at jumps 4,4,4 | 4,8,8,8 | 8,16x5 | 16,32,32 -> 1 + 6 + 4 + 2*sum = 427
    assert rf.receptive_field(rf.layer_specs(v15, (3, 224, 224))) == ReceptiveField(427, 32, 213)
    # stride on the 1x1: every 3x3 sits after its stage's stride, like TF-Slim's layout
    assert rf.receptive_field(rf.layer_specs(original, (3, 224, 224))) == ReceptiveField(483, 32, 241)
    with pytest.raises(TypeError, match="flatten"):
        rf.layer_specs(rfm.ResNet50(width=1 / 16), (3, 64, 64))


def test_models_refuse_bad_arguments():
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID'"):
        rfm._slim_conv(1, 1, 3, padding="same")
    with pytest.raises(ValueError, match="stride_on must be"):
        rfm.Bottleneck(4, 1, stride_on="3x1")
    with pytest.raises(ValueError, match="planes must be >= 1"):
        rfm.Bottleneck(64, -1)
