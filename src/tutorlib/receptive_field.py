"""Receptive fields: the code behind the chapter ``book/receptive_fields.md``.

The receptive field of a unit in a convolutional network is the part of the input that can
change its value. Along one spatial axis, a stack of convolution and pooling layers
:math:`l = 1, \\dots, L` with kernel size :math:`k_l`, stride :math:`s_l`, padding :math:`p_l`
(on the left/top) and dilation :math:`d_l` gives output unit :math:`i` the input interval

.. math::  [\\, i S - P,\\; i S - P + r - 1 \\,], \\qquad
           r = 1 + \\sum_{l=1}^{L} (\\hat k_l - 1) \\prod_{m<l} s_m, \\quad
           S = \\prod_{l=1}^{L} s_l, \\quad
           P = \\sum_{l=1}^{L} p_l \\prod_{m<l} s_m,

with the effective kernel size :math:`\\hat k_l = d_l (k_l - 1) + 1`. The module computes
:math:`(r, S, P)` three ways, top-down, bottom-up and by back-propagation, reads layer
specifications from ``torch.nn`` models (also residual nets), defines the four networks of
the Distill table (AlexNet v2, VGG-16, ResNet-50 v1 and MobileNet v1 as TF-Slim builds them,
plus torchvision's ResNet-50) and measures the effective receptive field of Luo et al.

Legend (code name -> symbol): ``kernel_size`` -> :math:`k`, ``stride`` -> :math:`s`,
``padding`` -> :math:`p`, ``dilation`` -> :math:`d`, ``effective_kernel_size`` -> :math:`\\hat k`;
``ReceptiveField.size`` -> :math:`r`, ``.stride`` -> :math:`S` (the "jump"),
``.padding`` -> :math:`P`.

References:
    Araujo, Norris & Sim (2019), "Computing receptive fields of convolutional neural
    networks", Distill, and the google-research ``receptive_field`` library.
    Dumoulin & Visin (2016), "A guide to convolution arithmetic for deep learning".
    Luo, Li, Urtasun & Zemel (2016), "Understanding the effective receptive field in deep
    convolutional neural networks", NeurIPS.
"""

from __future__ import annotations

import copy
import math
import operator
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from tutorlib.powerlaw import loglog_slope
from tutorlib.validation import check_finite, check_index, check_int

__all__ = [
    "Bottleneck",
    "EmpiricalReceptiveField",
    "LayerSpec",
    "ReceptiveField",
    "ResNet50",
    "SamePad",
    "SlimBottleneck",
    "alexnet_v2",
    "centred_input_size",
    "conv_stack",
    "effective_receptive_field",
    "empirical_receptive_field",
    "gaussian_distance",
    "input_gradient",
    "layer_specs",
    "linearized",
    "mobilenet_v1",
    "output_sizes",
    "power_law_exponent",
    "profile_spread",
    "random_conv_stack",
    "receptive_field",
    "receptive_field_support",
    "receptive_field_top_down",
    "receptive_fields",
    "resnet_v1_50",
    "tf_same_padding",
    "vgg_16",
]


# --------------------------------------------------------------------------------------------
# 1. one layer, and the field of a stack of layers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One convolution or pooling layer along one spatial axis.

    Args:
        kernel_size: :math:`k \\ge 1`, the number of taps.
        stride: :math:`s \\ge 1`.
        padding: :math:`p \\ge 0`, zeros added on the left (top); this is what moves the field.
        dilation: :math:`d \\ge 1`, the gap between taps; the taps then span
            :math:`\\hat k = d(k-1)+1` inputs.
        name: a label for printing (e.g. the module's name in a model).
        padding_right: zeros added on the right (bottom); ``None`` means the same as
            ``padding``. It changes the output size, never the receptive field. TensorFlow's
            ``'SAME'`` padding is the common case where the two differ.

    Raises:
        TypeError: a size is not an int, or ``name`` is not a string.
        ValueError: ``kernel_size < 1``, ``stride < 1``, ``padding < 0``, ``dilation < 1`` or
            ``padding_right < 0``.
    """

    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""
    padding_right: int | None = None

    def __post_init__(self) -> None:
        check_int("kernel_size", self.kernel_size, 1)
        check_int("stride", self.stride, 1)
        check_int("padding", self.padding, 0)
        check_int("dilation", self.dilation, 1)
        if self.padding_right is not None:
            check_int("padding_right", self.padding_right, 0)
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")

    @property
    def effective_kernel_size(self) -> int:
        """:math:`\\hat k = d(k - 1) + 1`: the span of the dilated kernel on its input."""
        return self.dilation * (self.kernel_size - 1) + 1

    def output_size(self, n: int) -> int:
        """Number of outputs for ``n`` inputs: :math:`\\lfloor (n + p + p_r - \\hat k)/s \\rfloor + 1`.

        Raises:
            ValueError: the padded input is shorter than the kernel (no output at all).
        """
        check_int("n", n, 1)
        right = self.padding if self.padding_right is None else self.padding_right
        padded = n + self.padding + right
        if padded < self.effective_kernel_size:
            raise ValueError(
                f"layer {self.name or self}: input of size {n} (+{self.padding}+{right} padding) is "
                f"shorter than the effective kernel {self.effective_kernel_size}"
            )
        return (padded - self.effective_kernel_size) // self.stride + 1


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of every unit of one layer, in input coordinates (one axis).

    Output unit :math:`i` sees the inputs :math:`iS - P, \\dots, iS - P + r - 1` (indices below
    0 or past the end are padding). Its centre is :math:`iS - P + (r-1)/2`.

    Attributes:
        size: :math:`r`, the number of input positions one unit spans.
        stride: :math:`S`, the effective stride ("jump"): moving one unit in this layer moves
            the field by :math:`S` inputs.
        padding: :math:`P`, the effective padding: unit 0's field starts at input :math:`-P`.
    """

    size: int
    stride: int
    padding: int

    def __post_init__(self) -> None:
        check_int("size", self.size)
        check_int("stride", self.stride)
        if isinstance(self.padding, bool) or not isinstance(self.padding, int):
            raise TypeError(f"padding must be an int, got {type(self.padding).__name__} {self.padding!r}")

    def span(self, index: int = 0) -> tuple[int, int]:
        """First and last input index (inclusive) of output unit ``index``."""
        check_int("index", index, minimum=0)
        first = index * self.stride - self.padding
        return first, first + self.size - 1

    def center(self, index: int = 0) -> float:
        """Input coordinate of the centre of unit ``index``'s field."""
        check_int("index", index, minimum=0)
        return index * self.stride - self.padding + (self.size - 1) / 2


def _check_layers(layers: Sequence[LayerSpec]) -> list[LayerSpec]:
    if isinstance(layers, LayerSpec) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a list of LayerSpec, got {type(layers).__name__}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, LayerSpec):
            raise TypeError(f"layers[{i}] must be a LayerSpec, got {type(layer).__name__}")
    return list(layers)


def receptive_field_top_down(layers: Sequence[LayerSpec]) -> ReceptiveField:
    """The field of one unit of the last layer, walking from the top back to the input.

    Start at the output with a field of one unit, :math:`r_L = 1`, and go down one layer at
    a time: :math:`r_{l}` neighbouring units of layer :math:`l` read

    .. math::  r_{l-1} = (r_l - 1)\\, s_l + \\hat k_l

    units of layer :math:`l-1` (the last of the :math:`r_l` windows starts
    :math:`(r_l-1) s_l` units after the first and is :math:`\\hat k_l` wide). The effective
    stride and padding follow the same walk: :math:`S_{l-1} = s_l S_l`,
    :math:`P_{l-1} = s_l P_l + p_l`, from :math:`S_L = 1, P_L = 0`.

    Args:
        layers: the stack, input side first.

    Returns:
        :class:`ReceptiveField` of the last layer's units on the input (``(1, 1, 0)`` for
        an empty stack).
    """
    layers = _check_layers(layers)
    size, stride, padding = 1, 1, 0
    for layer in reversed(layers):
        size = (size - 1) * layer.stride + layer.effective_kernel_size
        padding = layer.stride * padding + layer.padding
        stride = layer.stride * stride
    return ReceptiveField(size, stride, padding)


def receptive_fields(layers: Sequence[LayerSpec]) -> list[ReceptiveField]:
    """The field of every layer's units, walking from the input up (bottom-up).

    Keep three numbers while going up: the size :math:`r`, the jump :math:`j` (how far apart
    in the input two neighbouring units of the current layer are) and the start :math:`a`
    (the first input index that unit 0 sees). From :math:`r_0 = 1, j_0 = 1, a_0 = 0`:

    .. math::  r_l = r_{l-1} + (\\hat k_l - 1)\\, j_{l-1}, \\qquad j_l = s_l\\, j_{l-1},
               \\qquad a_l = a_{l-1} - p_l\\, j_{l-1}.

    A layer adds :math:`\\hat k_l - 1` neighbours, each :math:`j_{l-1}` inputs apart. The effective
    stride is :math:`S = j_L` and the effective padding :math:`P = -a_L`.

    Args:
        layers: the stack, input side first.

    Returns:
        One :class:`ReceptiveField` per layer, for that layer's output units.
    """
    layers = _check_layers(layers)
    size, jump, start = 1, 1, 0
    fields = []
    for layer in layers:
        size = size + (layer.effective_kernel_size - 1) * jump
        start = start - layer.padding * jump
        jump = jump * layer.stride
        fields.append(ReceptiveField(size, jump, -start))
    return fields


def receptive_field(layers: Sequence[LayerSpec]) -> ReceptiveField:
    """The field of the last layer's units: :func:`receptive_fields` ``(layers)[-1]``.

    An empty stack is the identity: ``ReceptiveField(size=1, stride=1, padding=0)``.
    """
    fields = receptive_fields(layers)
    return fields[-1] if fields else ReceptiveField(1, 1, 0)


def receptive_field_support(layers: Sequence[LayerSpec]) -> torch.Tensor:
    """Which positions inside the field a unit actually reads: a boolean mask of length :math:`r`.

    The field is the bounding interval; it can have holes. Layer :math:`l` places
    :math:`k_l` copies of the previous support :math:`d_l j_{l-1}` inputs apart:

    .. math::  A_l = \\bigcup_{t=0}^{k_l - 1} \\big(A_{l-1} + t\\, d_l\\, j_{l-1}\\big),
               \\qquad A_0 = \\{0\\}.

    If a stride or dilation is larger than the field below it, the copies do not touch and
    some inputs are skipped (e.g. a 1×1 convolution with stride 2, or the "gridding" of a
    stack of equal dilations).

    Returns:
        ``(r,)`` bool tensor; ``mask[t]`` says whether the input at offset ``t`` from the
        field's first index reaches the unit.
    """
    layers = _check_layers(layers)
    support = torch.ones(1, dtype=torch.bool)
    jump = 1
    for layer in layers:
        step = layer.dilation * jump
        new = torch.zeros(len(support) + (layer.kernel_size - 1) * step, dtype=torch.bool)
        for t in range(layer.kernel_size):
            new[t * step : t * step + len(support)] |= support
        support, jump = new, jump * layer.stride
    return support


def output_sizes(layers: Sequence[LayerSpec], input_size: int) -> list[int]:
    """The length of every layer's output for an input of ``input_size`` positions."""
    layers = _check_layers(layers)
    n = check_int("input_size", input_size, 1)
    sizes = []
    for layer in layers:
        n = layer.output_size(n)
        sizes.append(n)
    return sizes


def centred_input_size(layers: Sequence[LayerSpec], minimum: int = 1) -> int:
    """The smallest input size for which the centre output unit's field lies inside the input.

    The centre unit is :math:`c = \\lfloor (n_L - 1)/2 \\rfloor`. When its field
    :math:`[cS - P, cS - P + r - 1]` fits in :math:`[0, n-1]`, no part of it is clipped by
    the border, so a measurement sees the whole field.

    Args:
        layers: the stack.
        minimum: start the search at this size.
    """
    layers = _check_layers(layers)
    rf = receptive_field(layers)
    start = max(check_int("minimum", minimum, 1), rf.size)
    for n in range(start, start + 4 * (rf.size + rf.padding + rf.stride) + 16):
        try:
            n_out = output_sizes(layers, n)[-1] if layers else n
        except ValueError:
            continue
        first, last = rf.span((n_out - 1) // 2)
        if first >= 0 and last <= n - 1:
            return n
    raise ValueError(f"no input size found for which the centre unit's field fits ({rf})")


def tf_same_padding(input_size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``padding='SAME'``: (left, right) zeros so that the output has
    :math:`\\lceil n / s \\rceil` units.

    .. math::  p_{\\text{total}} = \\max\\big((\\lceil n/s \\rceil - 1)\\, s + \\hat k - n,\\; 0\\big),
               \\qquad p_{\\text{left}} = \\lfloor p_{\\text{total}} / 2 \\rfloor.

    The extra zero goes on the right. With a stride the total depends on the input size: a
    3×3 stride-2 convolution pads 0 on the left of an even input and 1 on the left of an
    odd one, which moves the field. PyTorch's ``padding='same'`` (stride 1 only) splits the
    same way.

    Returns:
        ``(left, right)``.
    """
    n = check_int("input_size", input_size, 1)
    k_eff = check_int("dilation", dilation, 1) * (check_int("kernel_size", kernel_size, 1) - 1) + 1
    s = check_int("stride", stride, 1)
    total = max((math.ceil(n / s) - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# 2. measuring the field by back-propagation
# --------------------------------------------------------------------------------------------
def _check_input_size(input_size: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_size, int) or not isinstance(input_size, Sequence) or len(input_size) < 2:
        raise TypeError(
            f"input_size must be (channels, *spatial), e.g. (3, 224, 224), got {input_size!r}"
        )
    for i, v in enumerate(input_size):
        check_int(f"input_size[{i}]", v, 1)
    return tuple(input_size)


def _probe_tensor(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    reference = next(iter(model.parameters()), None)
    if reference is None:
        reference = next(iter(model.buffers()), None)
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    device = reference.device if reference is not None else torch.device("cpu")
    return torch.ones(shape, dtype=dtype, device=device)


def _gradient_at(model: nn.Module, x: torch.Tensor, index: Sequence[int] | None
                 ) -> tuple[torch.Tensor, tuple[int, ...]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError("x must be a tensor of shape (B, C, *spatial)")
    x = x.detach().requires_grad_(True)
    y = model(x)
    if not isinstance(y, torch.Tensor) or y.ndim != x.ndim:
        raise ValueError(
            f"model must return one tensor (B, C', *spatial') with {x.ndim - 2} spatial axes, got "
            f"{type(y).__name__} {tuple(y.shape) if isinstance(y, torch.Tensor) else ''}"
        )
    spatial = y.shape[2:]
    index = tuple((n - 1) // 2 for n in spatial) if index is None else tuple(index)
    if len(index) != len(spatial) or not all(0 <= i < n for i, n in zip(index, spatial, strict=True)):
        raise ValueError(f"index must have one entry in [0, n) per output axis {tuple(spatial)}, got {index}")
    (grad,) = torch.autograd.grad(y[(slice(None), slice(None), *index)].sum(), x)
    return grad, tuple(int(i) for i in index)


def input_gradient(model: nn.Module, x: torch.Tensor, index: Sequence[int] | None = None) -> torch.Tensor:
    """:math:`\\partial y / \\partial x` for one output position, summed over output channels.

    Every sample of the batch gets the gradient of its own output unit (samples are
    independent as long as nothing mixes the batch, e.g. BatchNorm in eval mode).

    Args:
        model: maps ``(B, C, *spatial)`` to ``(B, C', *spatial')``.
        x: input of shape ``(B, C, *spatial)``.
        index: the output position, one index per spatial axis; default the centre
            :math:`\\lfloor (n' - 1)/2 \\rfloor` on every axis.

    Returns:
        Gradient of the same shape as ``x``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (B, C, *spatial), got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 3:
        raise ValueError(f"x must have shape (B, C, *spatial), got {tuple(x.shape)}")
    check_finite("x", x)
    return _gradient_at(model, x, index)[0]


@dataclass(frozen=True)
class EmpiricalReceptiveField:
    """What back-propagation says one output unit depends on.

    Attributes:
        gradient: :math:`\\sum_{b, c} |\\partial y / \\partial x_{b,c}|`, shape = the input's
            spatial shape.
        output_index: the output unit, one index per spatial axis.
        first, last: per axis, the first and last input index with a nonzero gradient.
    """

    gradient: torch.Tensor
    output_index: tuple[int, ...]
    first: tuple[int, ...]
    last: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        """Per axis, ``last - first + 1``: the measured field size."""
        return tuple(b - a + 1 for a, b in zip(self.first, self.last, strict=True))

    def support(self, axis: int = 0) -> torch.Tensor:
        """Along ``axis``, which inputs between ``first`` and ``last`` have a nonzero gradient."""
        check_index("axis", axis, self.gradient.ndim)
        others = tuple(a for a in range(self.gradient.ndim) if a != axis)
        line = (self.gradient != 0).any(dim=others) if others else self.gradient != 0
        return line[self.first[axis] : self.last[axis] + 1]


def empirical_receptive_field(
    model: nn.Module,
    input_size: Sequence[int],
    index: Sequence[int] | None = None,
    x: torch.Tensor | None = None,
) -> EmpiricalReceptiveField:
    """Measure the field of one output unit: the inputs whose gradient is not zero.

    Back-propagate from output unit ``index`` (default: the centre one) to the input and
    keep the positions where :math:`\\partial y / \\partial x \\neq 0`. This measures what the
    unit *uses* for this input and these weights: a ReLU that is off, a max-pool that picks
    one input, or weights that cancel make some inputs look unused. To measure the field of
    the architecture, use positive weights and no gating (:func:`linearized`).

    The model is evaluated in eval mode (BatchNorm in training mode would mix every position
    of the batch) and put back in the mode it was in.

    Args:
        model: maps ``(B, C, *spatial)`` to ``(B, C', *spatial')``.
        input_size: ``(C, *spatial)`` of one input.
        index: output position, one index per spatial axis; default the centre.
        x: input of shape ``(1, *input_size)``; default all ones.

    Returns:
        :class:`EmpiricalReceptiveField`.

    Raises:
        ValueError: the unit depends on no input at all (every gradient is zero).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_size = _check_input_size(input_size)
    if x is None:
        x = _probe_tensor(model, (1, *input_size))
    elif not isinstance(x, torch.Tensor) or tuple(x.shape) != (1, *input_size):
        raise ValueError(f"x must be a tensor of shape {(1, *input_size)}, got {getattr(x, 'shape', x)!r}")
    was_training = model.training
    model.eval()
    try:
        grad, index = _gradient_at(model, x, index)
    finally:
        model.train(was_training)
    gradient = grad.abs().sum(dim=(0, 1)).detach()  # (*spatial)
    nonzero = gradient != 0
    if not nonzero.any():
        raise ValueError(
            f"output unit {tuple(index)} has a zero gradient for every input: no field to measure "
            "(use linearized(model): positive weights, no ReLU or max-pool)"
        )
    first, last = [], []
    for axis in range(gradient.ndim):
        others = tuple(a for a in range(gradient.ndim) if a != axis)
        hit = torch.nonzero(nonzero.any(dim=others) if others else nonzero).flatten()
        first.append(int(hit[0]))
        last.append(int(hit[-1]))
    return EmpiricalReceptiveField(gradient, index, tuple(first), tuple(last))


_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.LogSigmoid, nn.Threshold, nn.Tanhshrink, nn.Hardshrink, nn.Softshrink,
)
# Per-position at inference: they rescale or gate channels but never mix positions.
_POINTWISE = (
    *_ACTIVATIONS, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.modules.batchnorm._BatchNorm,
)
_MAX_TO_AVG = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}
_ADAPTIVE_MAX_TO_AVG = {
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}


def linearized(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose gradients vanish nowhere inside the receptive field.

    The copy has the same geometry (kernels, strides, paddings, dilations, skip
    connections) but every convolution weight is :math:`1/\\text{fan-in} > 0` and every bias
    0; activations, BatchNorm and dropout become identities; max-pooling becomes
    average-pooling with the same window. Each output is then a positive average of its
    inputs, so :math:`\\partial y/\\partial x > 0` exactly on the inputs the architecture lets
    the unit see.

    Raises:
        TypeError: a max-pool with dilation > 1 (average pooling has no dilation).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    copied = copy.deepcopy(model)
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in _MAX_TO_AVG:
                if any(d != 1 for d in _tuple(child.dilation)):
                    raise TypeError(f"cannot linearize '{name}': a max-pool with dilation {child.dilation}")
                replacement = _MAX_TO_AVG[type(child)](
                    child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                )
                setattr(parent, name, replacement)
            elif type(child) in _ADAPTIVE_MAX_TO_AVG:
                setattr(parent, name, _ADAPTIVE_MAX_TO_AVG[type(child)](child.output_size))
            elif isinstance(child, _POINTWISE):
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for module in copied.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    return copied


def _tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def conv_stack(layers: Sequence[LayerSpec], dims: int = 1, channels: int = 1) -> nn.Sequential:
    """A stack of convolutions with the given specs on every spatial axis, weights ``1/fan-in``.

    The measurable twin of a list of :class:`LayerSpec`: each output is a positive average of
    its inputs, so :func:`empirical_receptive_field` sees exactly the architecture's field.

    Args:
        layers: the specs; left and right padding must be equal (PyTorch pads symmetrically).
        dims: 1, 2 or 3 spatial axes.
        channels: channels of every layer.
    """
    layers = _check_layers(layers)
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    check_int("channels", channels, 1)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    modules = OrderedDict()
    for i, layer in enumerate(layers):
        if layer.padding_right not in (None, layer.padding):
            raise ValueError(f"layers[{i}] pads asymmetrically ({layer.padding}, {layer.padding_right})")
        module = conv(channels, channels, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                      bias=False)
        with torch.no_grad():
            module.weight.fill_(1.0 / module.weight[0].numel())
        modules[layer.name or f"layer{i + 1}"] = module
    return nn.Sequential(modules)


# --------------------------------------------------------------------------------------------
# 3. reading the layer specs of a torch model (also with skip connections)
# --------------------------------------------------------------------------------------------
class SamePad(nn.Module):
    """TensorFlow's ``padding='SAME'`` as a module: pads every spatial axis by
    :func:`tf_same_padding` of its current size, so a convolution with ``padding=0`` after it
    behaves like TensorFlow's. Zeros are also right for a max-pool that follows a ReLU.
    """

    def __init__(self, kernel_size: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.stride = check_int("stride", stride, 1)
        self.dilation = check_int("dilation", dilation, 1)

    def padding_for(self, n: int) -> tuple[int, int]:
        """(left, right) zeros for an axis of ``n`` positions."""
        return tf_same_padding(n, self.kernel_size, self.stride, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 3:
            got = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"x must be a tensor (B, C, *spatial), got {got}")
        pads: list[int] = []
        for n in reversed(x.shape[2:]):  # F.pad lists the last axis first
            pads.extend(self.padding_for(n))
        return F.pad(x, pads)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, *_ADAPTIVE_MAX_TO_AVG)
_PAD = (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
        nn.modules.padding._ReplicationPadNd, nn.modules.padding._CircularPadNd)
_LEAVES = (*_CONV, *_POOL, *_ADAPTIVE, *_PAD, *_POINTWISE, SamePad)
# Functions and tensor methods that act on each position separately (or add/concat paths).
_POINTWISE_FUNCTIONS = {
    operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, operator.truediv,
    torch.add, torch.sub, torch.mul, torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
    F.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.hardswish, F.hardtanh, F.elu, F.dropout,
    F.sigmoid, F.tanh, F.mish,
}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "add", "add_", "mul", "mul_", "sub",
                      "contiguous", "clone", "clamp", "clamp_"}


class _Tracer(torch.fx.Tracer):
    """Treat every layer we know as one node, and trace into everything else."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _axis_value(value: object, axis: int, ndim: int) -> int:
    values = _tuple(value)
    if len(values) == 1:
        return int(values[0])
    if len(values) != ndim:
        raise ValueError(f"expected {ndim} values, one per spatial axis, got {values}")
    return int(values[axis])


def _module_spec(module: nn.Module, name: str, in_shape: torch.Size, out_shape: torch.Size,
                 axis: int) -> LayerSpec | None:
    """The LayerSpec of a leaf module along ``axis``; None if it acts on each position alone."""
    ndim = len(in_shape) - 2
    n_in, n_out = in_shape[2 + axis], out_shape[2 + axis]
    if isinstance(module, _POINTWISE):
        return None
    if isinstance(module, SamePad):
        left, right = module.padding_for(n_in)
        return LayerSpec(1, 1, left, 1, name, right)
    if isinstance(module, _PAD):
        pads = _tuple(module.padding)  # last axis first: (left_D, right_D, left_{D-1}, ...)
        i = 2 * (ndim - 1 - axis)
        return LayerSpec(1, 1, pads[i], 1, name, pads[i + 1])
    if isinstance(module, _ADAPTIVE):
        if n_in % n_out:
            raise ValueError(
                f"layer_specs cannot read {name} ({type(module).__name__}): its windows vary unless "
                f"the input size ({n_in}) is a multiple of the output size ({n_out})"
            )
        return LayerSpec(n_in // n_out, n_in // n_out, 0, 1, name)
    if module_ndim := _spatial_dims(module):
        if module_ndim != ndim:
            raise ValueError(f"{name} ({type(module).__name__}) expects {module_ndim} spatial axes, "
                             f"the model's input has {ndim}")
    kernel = _axis_value(module.kernel_size, axis, ndim)
    stride = _axis_value(module.stride if module.stride is not None else module.kernel_size, axis, ndim)
    dilation = _axis_value(getattr(module, "dilation", 1), axis, ndim)
    padding = getattr(module, "padding", 0)
    if padding == "valid":
        left = right = 0
    elif padding == "same":  # PyTorch: stride 1, total d(k-1), the extra zero on the right
        total = dilation * (kernel - 1)
        left, right = total // 2, total - total // 2
    else:
        left = right = _axis_value(padding, axis, ndim)
    return LayerSpec(kernel, stride, left, dilation, name, right)


def _spatial_dims(module: nn.Module) -> int:
    for dims, classes in ((1, "1d"), (2, "2d"), (3, "3d")):
        if type(module).__name__.lower().endswith(classes):
            return dims
    return 0


def _merge(paths: list[list[LayerSpec]], where: str) -> list[LayerSpec]:
    """Keep the path with the largest field after checking that all paths are aligned."""
    fields = [receptive_field(p) for p in paths]
    reference = fields[0]
    for path, field in zip(paths[1:], fields[1:], strict=True):
        # aligned: same stride S and same centre of unit 0, (r - 1)/2 - P (doubled: integers)
        twice_centre = (field.size - 1) - 2 * field.padding
        if field.stride != reference.stride or twice_centre != (reference.size - 1) - 2 * reference.padding:
            via = [p[-1].name if p else "input" for p in (paths[0], path)]
            raise ValueError(
                f"paths into '{where}' are misaligned: via '{via[0]}' the field has stride "
                f"{reference.stride} and unit 0 centred at {reference.center(0)}, via '{via[1]}' stride "
                f"{field.stride} and centre {field.center(0)}; adding them mixes different places of the "
                "input"
            )
    return paths[max(range(len(paths)), key=lambda i: fields[i].size)]


def layer_specs(model: nn.Module, input_size: Sequence[int], axis: int = 0) -> list[LayerSpec]:
    """Read the convolution/pooling layers of a ``torch.nn`` model along one spatial axis.

    The model is traced with ``torch.fx`` and run once on a tensor of zeros (on the model's
    device: a model built on the ``meta`` device needs no weights and no compute) to know every
    tensor's size. Each node then gets the list of layers on its path from the input.
    Convolutions, pooling, padding and TensorFlow-style :class:`SamePad` add a
    :class:`LayerSpec`; activations, BatchNorm and dropout do not. Where paths join (a
    residual ``+`` or a channel concatenation), the paths must be *aligned*, with the same
    effective stride and the same field centre, or the sum would mix different places of
    the input, and the path with the largest field is kept, as in the google-research
    ``receptive_field`` library.

    Args:
        model: a network whose forward is traceable by ``torch.fx`` and returns one tensor of
            shape ``(B, C', *spatial')``: pass the convolutional part, not the classifier head.
        input_size: ``(C, *spatial)`` of one input, e.g. ``(3, 224, 224)``.
        axis: which spatial axis to read (0 = height for images).

    Returns:
        The layers on the path with the largest field, input side first, named after the
        modules (``"layer1.0.conv2"``).

    Raises:
        TypeError: a layer or function that is not a known per-position operation, e.g.
            ``flatten`` or ``nn.Linear`` (they mix all positions).
        ValueError: misaligned paths, a bad ``axis``, or a model that does not run on
            ``input_size``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_size = _check_input_size(input_size)
    ndim = len(input_size) - 1
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < ndim:
        raise ValueError(f"axis must be an int in [0, {ndim}) for input_size {input_size}, got {axis!r}")
    graph = _Tracer().trace(model)
    traced = torch.fx.GraphModule(model, graph)
    try:
        with torch.no_grad():
            ShapeProp(traced).propagate(_probe_tensor(model, (1, *input_size)) * 0)
    except RuntimeError as error:
        raise ValueError(f"the model does not run on an input of size {input_size}: {error}") from error

    paths: dict[torch.fx.Node, list[LayerSpec]] = {}
    result: list[LayerSpec] | None = None
    for node in traced.graph.nodes:
        shape = getattr(node.meta.get("tensor_meta"), "shape", None)
        sources = [paths[n] for n in node.all_input_nodes if n in paths]
        if node.op == "placeholder":
            paths[node] = []
            continue
        if node.op == "output":
            if not isinstance(node.args[0], torch.fx.Node) or node.args[0] not in paths:
                raise ValueError("model must return a single tensor computed from its input")
            result = paths[node.args[0]]
            continue
        if not sources or shape is None:
            continue  # constants, parameters, sizes: not on a path from the input
        where = str(node.target)
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            if not isinstance(module, _LEAVES):
                raise TypeError(
                    f"layer_specs cannot read '{node.target}' ({type(module).__name__}): only "
                    "convolutions, pooling, padding and per-position layers keep a receptive field; "
                    "pass the convolutional part of the model"
                )
            in_shape = node.all_input_nodes[0].meta["tensor_meta"].shape
            spec = _module_spec(module, where, in_shape, shape, axis)
            paths[node] = sources[0] + ([spec] if spec is not None else [])
            continue
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", where)
        if node.op == "call_function" and node.target is torch.cat:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim not in (1, 1 - len(shape)):
                raise TypeError(f"layer_specs: '{node.name}' concatenates along dim {dim}, not channels")
        elif not ((node.op == "call_function" and node.target in _POINTWISE_FUNCTIONS)
                  or (node.op == "call_method" and node.target in _POINTWISE_METHODS)):
            raise TypeError(
                f"layer_specs cannot read '{node.name}' ({name}): it is not a known per-position "
                "operation (flatten, view and linear layers mix all positions); pass the convolutional "
                "part of the model"
            )
        paths[node] = _merge(sources, node.name) if len(sources) > 1 else sources[0]
    assert result is not None  # every fx graph has an output node
    return result


# --------------------------------------------------------------------------------------------
# 4. the networks of the Distill table, as TF-Slim builds them, and torchvision's ResNet-50
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


# --------------------------------------------------------------------------------------------
# 5. the effective receptive field (Luo et al. 2016)
# --------------------------------------------------------------------------------------------
def random_conv_stack(depth: int, kernel_size: int = 3, channels: int = 8, activation: bool = True,
                      generator: torch.Generator | None = None) -> nn.Sequential:
    """``depth`` 2-D convolutions ``kernel_size``×``kernel_size`` without padding, He-normal weights,
    no bias, each followed by a ReLU (``activation=True``); one input channel."""
    check_int("depth", depth, 1)
    check_int("kernel_size", kernel_size, 1)
    check_int("channels", channels, 1)
    layers: list[nn.Module] = []
    for i in range(depth):
        conv = nn.Conv2d(1 if i == 0 else channels, channels, kernel_size, bias=False)
        fan_in = conv.weight[0].numel()
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
        layers += [conv, nn.ReLU()] if activation else [conv]
    return nn.Sequential(*layers)


def effective_receptive_field(depth: int, kernel_size: int = 3, channels: int = 8, n_nets: int = 16,
                              batch: int = 8, activation: bool = True, seed: int = 0) -> torch.Tensor:
    """The gradient energy map of the single output unit of random conv stacks, averaged.

    For each of ``n_nets`` random stacks (:func:`random_conv_stack`) and ``batch`` Gaussian
    inputs of size :math:`r \\times r` (:math:`r = n(k-1)+1`, so the output is one unit),
    take :math:`g = \\partial y / \\partial x` and average :math:`g^2`. With independent
    zero-mean weights the expected map is the :math:`n`-fold convolution of one layer's
    weight-variance kernel with itself: by the central limit theorem a Gaussian whose
    standard deviation grows like :math:`\\sqrt n`, while :math:`r` grows like :math:`n`.

    Returns:
        ``(r, r)`` tensor that sums to 1.

    References:
        Luo, Li, Urtasun & Zemel (2016), "Understanding the effective receptive field in deep
        convolutional neural networks", NeurIPS, §2.
    """
    check_int("n_nets", n_nets, 1)
    check_int("batch", batch, 1)
    check_int("depth", depth, 1)
    check_int("kernel_size", kernel_size, 1)
    check_int("seed", seed, minimum=0)
    r = depth * (kernel_size - 1) + 1
    generator = torch.Generator().manual_seed(seed)
    energy = torch.zeros(r, r)
    for _ in range(n_nets):
        net = random_conv_stack(depth, kernel_size, channels, activation, generator)
        x = torch.randn(batch, 1, r, r, generator=generator)
        grad = input_gradient(net, x)  # (batch, 1, r, r): the output is 1×1
        energy += grad.pow(2).sum(dim=(0, 1))
    return energy / energy.sum()


def profile_spread(profile: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of a non-negative 1-D profile read as a distribution.

    .. math::  \\mu = \\sum_t t\\, q_t, \\quad \\sigma^2 = \\sum_t (t - \\mu)^2 q_t,
               \\quad q_t = \\frac{w_t}{\\sum_u w_u}.
    """
    if not isinstance(profile, torch.Tensor) or profile.ndim != 1 or len(profile) == 0:
        raise ValueError("profile must be a non-empty 1-D tensor")
    if not profile.is_floating_point():
        raise TypeError(f"profile must be a floating-point tensor, got {profile.dtype}")
    check_finite("profile", profile)
    if (profile < 0).any() or profile.sum() <= 0:
        raise ValueError("profile must be non-negative with a positive sum")
    q = profile.double() / profile.double().sum()
    t = torch.arange(len(q), dtype=torch.float64)
    mean = (q * t).sum()
    return mean.item(), ((q * (t - mean) ** 2).sum()).sqrt().item()


def gaussian_distance(profile: torch.Tensor) -> float:
    """Total-variation-style distance :math:`\\sum_t |q_t - g_t|` (between 0 and 2) from the
    normalised profile :math:`q` to the discretised Gaussian :math:`g` with the same mean and
    standard deviation."""
    mean, std = profile_spread(profile)
    q = profile.double() / profile.double().sum()
    t = torch.arange(len(q), dtype=torch.float64)
    g = torch.exp(-0.5 * ((t - mean) / std) ** 2)
    return (q - g / g.sum()).abs().sum().item()


def power_law_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    """The exponent :math:`\\alpha` of the least-squares fit :math:`\\log y = \\alpha \\log x + c`
    (:func:`tutorlib.powerlaw.loglog_slope`, the one implementation)."""
    return loglog_slope(x, y)
