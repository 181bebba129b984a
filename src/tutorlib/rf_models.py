"""The networks of the receptive-field chapter, built to compute fields, not to be trained.

The four networks of the Distill table of Araujo, Norris & Sim as the TF-Slim model library
builds them (AlexNet v2, VGG-16, ResNet-50 v1 and MobileNet v1, with TensorFlow's ``'SAME'``
padding through :class:`tutorlib.receptive_field.SamePad`), and torchvision's ResNet-50 rebuilt
with its module names in two layouts (stride on the 3×3 or on the 1×1 convolution). Build them
on the ``meta`` device to read their geometry with :func:`tutorlib.receptive_field.layer_specs`
at no cost; ``width`` scales the channels without changing the field.

References:
    Araujo, Norris & Sim (2019), "Computing receptive fields of convolutional neural
    networks", Distill. Krizhevsky (2014); Simonyan & Zisserman (2015); He et al. (2016);
    Howard et al. (2017).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from tutorlib.receptive_field import SamePad
from tutorlib.validation import check_int

__all__ = [
    "Bottleneck",
    "ResNet50",
    "SlimBottleneck",
    "alexnet_v2",
    "mobilenet_v1",
    "resnet_v1_50",
    "vgg_16",
]


# --------------------------------------------------------------------------------------------
# the networks of the Distill table, as TF-Slim builds them, and torchvision's ResNet-50
# --------------------------------------------------------------------------------------------
def _width(channels: int, width: float) -> int:
    return max(1, int(channels * width))


def _slim_conv(cin: int, cout: int, k: int, stride: int = 1, padding: str = "SAME", groups: int = 1,
               batch_norm: bool = False, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``slim.conv2d``: TF padding ('SAME' via :class:`SamePad`, or 'VALID'), conv, [BN], activation."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if padding == "SAME":
        layers["pad"] = SamePad(k, stride)
    elif padding != "VALID":
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    layers["conv"] = nn.Conv2d(cin, cout, k, stride, groups=groups, bias=not batch_norm)
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(cout)
    layers["act"] = activation()
    return nn.Sequential(layers)


def alexnet_v2(width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """TF-Slim's ``alexnet_v2`` up to ``pool5``, its last feature layer.

    Convolutions pad 'SAME' except conv1 ('VALID'); max-pools are 3×3, stride 2, 'VALID'.
    ``width`` scales every channel count (the geometry, and so the field, does not change).
    """
    c = [_width(n, width) for n in (64, 192, 384, 384, 256)]
    return nn.Sequential(OrderedDict(
        conv1=_slim_conv(in_channels, c[0], 11, 4, "VALID"),
        pool1=nn.MaxPool2d(3, 2),
        conv2=_slim_conv(c[0], c[1], 5),
        pool2=nn.MaxPool2d(3, 2),
        conv3=_slim_conv(c[1], c[2], 3),
        conv4=_slim_conv(c[2], c[3], 3),
        conv5=_slim_conv(c[3], c[4], 3),
        pool5=nn.MaxPool2d(3, 2),
    ))


def vgg_16(width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """TF-Slim's ``vgg_16`` up to ``pool5``: five blocks of 3×3 'SAME' convs, each followed by a
    2×2 stride-2 'VALID' max-pool."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    cin = in_channels
    for b, (repeat, channels) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
        cout = _width(channels, width)
        convs = OrderedDict()
        for r in range(1, repeat + 1):
            convs[f"conv{b}_{r}"] = _slim_conv(cin, cout, 3)
            cin = cout
        blocks[f"conv{b}"] = nn.Sequential(convs)
        blocks[f"pool{b}"] = nn.MaxPool2d(2, 2)
    return nn.Sequential(blocks)


def mobilenet_v1(width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """TF-Slim's ``mobilenet_v1_base`` up to ``Conv2d_13_pointwise``.

    A 3×3 stride-2 conv, then 13 depthwise-separable blocks (3×3 depthwise conv, 1×1
    pointwise conv), all 'SAME', with BatchNorm and ReLU6. Strides 2 at blocks 2, 4, 6 and 12.
    """
    strides_depths = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), *[(1, 512)] * 5,
                      (2, 1024), (1, 1024)]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    cin = _width(32, width)
    layers["Conv2d_0"] = _slim_conv(in_channels, cin, 3, 2, batch_norm=True, activation=nn.ReLU6)
    for i, (stride, depth) in enumerate(strides_depths, start=1):
        layers[f"Conv2d_{i}_depthwise"] = _slim_conv(cin, cin, 3, stride, groups=cin, batch_norm=True,
                                                     activation=nn.ReLU6)
        cout = _width(depth, width)
        layers[f"Conv2d_{i}_pointwise"] = _slim_conv(cin, cout, 1, batch_norm=True, activation=nn.ReLU6)
        cin = cout
    return nn.Sequential(layers)


class SlimBottleneck(nn.Module):
    """TF-Slim's ``resnet_v1.bottleneck``: 1×1, 3×3 (carries the stride), 1×1, plus a shortcut.

    The strided 3×3 is ``resnet_utils.conv2d_same``: explicit zero padding
    :math:`\\lfloor(\\hat k-1)/2\\rfloor` on the left, then a 'VALID' convolution. The
    shortcut is a stride-:math:`s` 1×1 convolution when the depth changes, otherwise a 1×1
    max-pool with stride :math:`s` (``subsample``).
    """

    def __init__(self, cin: int, depth: int, bottleneck: int, stride: int) -> None:
        super().__init__()
        for name, value in (("cin", cin), ("depth", depth), ("bottleneck", bottleneck), ("stride", stride)):
            check_int(name, value)
        if depth == cin:
            self.shortcut = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.conv1 = _slim_conv(cin, bottleneck, 1, batch_norm=True)
        if stride == 1:
            self.conv2 = _slim_conv(bottleneck, bottleneck, 3, batch_norm=True)
        else:
            self.conv2 = nn.Sequential(OrderedDict(
                pad=nn.ZeroPad2d(1),  # conv2d_same: pad_total = 2, pad_beg = 1
                conv=nn.Conv2d(bottleneck, bottleneck, 3, stride, bias=False),
                bn=nn.BatchNorm2d(bottleneck),
                act=nn.ReLU(),
            ))
        self.conv3 = nn.Sequential(nn.Conv2d(bottleneck, depth, 1, bias=False), nn.BatchNorm2d(depth))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.conv3(self.conv2(self.conv1(x))))


def resnet_v1_50(width: float = 1.0, in_channels: int = 3) -> nn.Sequential:
    """TF-Slim's ``resnet_v1_50`` up to ``block4`` (no global pool).

    Root: ``conv2d_same`` 7×7 stride 2 (3 zeros left), then a 3×3 stride-2 max-pool padded
    'SAME'. Blocks of 3, 4, 6, 3 bottleneck units; TF-Slim puts each block's stride 2 in its
    *last* unit (blocks 1–3), the original Caffe model in the first unit of the next block.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c64 = _width(64, width)
    layers["conv1"] = nn.Sequential(OrderedDict(
        pad=nn.ZeroPad2d(3), conv=nn.Conv2d(in_channels, c64, 7, 2, bias=False),
        bn=nn.BatchNorm2d(c64), act=nn.ReLU(),
    ))
    layers["pool1"] = nn.Sequential(OrderedDict(pad=SamePad(3, 2), pool=nn.MaxPool2d(3, 2)))
    cin = c64
    for b, (base, units, stride) in enumerate(((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)), start=1):
        depth, bottleneck = _width(4 * base, width), _width(base, width)
        block = OrderedDict()
        for u in range(1, units + 1):
            block[f"unit_{u}"] = SlimBottleneck(cin, depth, bottleneck, stride if u == units else 1)
            cin = depth
        layers[f"block{b}"] = nn.Sequential(block)
    return nn.Sequential(layers)


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (same attribute names): 1×1, 3×3, 1×1 convs plus a shortcut.

    ``stride_on="3x3"`` is torchvision's layout ("ResNet v1.5"), ``"1x1"`` the original paper's
    (He et al. 2016, stride on the first 1×1 convolution). The stride sits in the first unit
    of a stage in both.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 stride_on: str = "3x3") -> None:
        super().__init__()
        for name, value in (("inplanes", inplanes), ("planes", planes), ("stride", stride)):
            check_int(name, value)
        if stride_on not in ("3x3", "1x1"):
            raise ValueError(f"stride_on must be '3x3' or '1x1', got {stride_on!r}")
        s1, s3 = (1, stride) if stride_on == "3x3" else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision's ``resnet50()`` architecture, rebuilt with the same module names.

    (torchvision's CPU wheels are not installable on the course's build machines, so the
    layout is copied: conv1 7×7/2 pad 3, max-pool 3×3/2 pad 1, stages of 3, 4, 6, 3
    :class:`Bottleneck` units with the stride in the first unit of stages 2–4, global average
    pool, fc.) ``list(model.children())[:-2]`` is the convolutional part.
    """

    def __init__(self, stride_on: str = "3x3", width: float = 1.0, in_channels: int = 3,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = _width(64, width)
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            planes = _width(planes, width)
            downsample = None
            if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * 4))
            units = [Bottleneck(self.inplanes, planes, stride, downsample, stride_on)]
            self.inplanes = planes * Bottleneck.expansion
            units += [Bottleneck(self.inplanes, planes, stride_on=stride_on) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def features(self) -> nn.Sequential:
        """The convolutional part, conv1 … layer4, sharing this model's modules."""
        return nn.Sequential(OrderedDict(list(self.named_children())[:-2]))
