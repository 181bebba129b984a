"""Receptive-field arithmetic: the code behind the first half of ``book/receptive_fields.md``.

The receptive field of a unit in a convolutional network is the part of the input that can
change its value. Along one spatial axis, a stack of convolution and pooling layers
:math:`l = 1, \\dots, L` with kernel size :math:`k_l`, stride :math:`s_l`, padding :math:`p_l`
(on the left/top) and dilation :math:`d_l` gives output unit :math:`i` the input interval

.. math::  [\\, i S - P,\\; i S - P + r - 1 \\,], \\qquad
           r = 1 + \\sum_{l=1}^{L} (\\hat k_l - 1) \\prod_{m<l} s_m, \\quad
           S = \\prod_{l=1}^{L} s_l, \\quad
           P = \\sum_{l=1}^{L} p_l \\prod_{m<l} s_m,

with the effective kernel size :math:`\\hat k_l = d_l (k_l - 1) + 1`. This module computes
:math:`(r, S, P)` top-down and bottom-up, the pattern of holes inside the field, TensorFlow's
``'SAME'`` padding, and reads the layer specifications out of ``torch.nn`` models (residual
nets too). Its companions: :mod:`tutorlib.erf` measures fields by back-propagation (the
empirical field and the *effective* field of Luo et al.), :mod:`tutorlib.rf_models` holds the
networks of the Distill table.

Legend (code name -> symbol): ``kernel_size`` -> :math:`k`, ``stride`` -> :math:`s`,
``padding`` -> :math:`p`, ``dilation`` -> :math:`d`, ``effective_kernel_size`` -> :math:`\\hat k`;
``ReceptiveField.size`` -> :math:`r`, ``.stride`` -> :math:`S` (the "jump"),
``.padding`` -> :math:`P`.

References:
    Araujo, Norris & Sim (2019), "Computing receptive fields of convolutional neural
    networks", Distill, and the google-research ``receptive_field`` library.
    Dumoulin & Visin (2016), "A guide to convolution arithmetic for deep learning".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from tutorlib.validation import check_int

__all__ = [
    "LayerSpec",
    "ReceptiveField",
    "SamePad",
    "centred_input_size",
    "layer_specs",
    "output_sizes",
    "receptive_field",
    "receptive_field_support",
    "receptive_field_top_down",
    "receptive_fields",
    "tf_same_padding",
]

# Names that moved to tutorlib.erf and tutorlib.rf_models; ``receptive_field.<name>`` still finds them.
_MOVED = {
    **dict.fromkeys(("EmpiricalReceptiveField", "conv_stack", "effective_receptive_field",
                     "empirical_receptive_field", "erf_map", "gaussian_distance", "input_gradient",
                     "linearized", "power_law_exponent", "profile_spread", "random_conv_stack"),
                    "tutorlib.erf"),
    **dict.fromkeys(("Bottleneck", "ResNet50", "SlimBottleneck", "alexnet_v2", "mobilenet_v1",
                     "resnet_v1_50", "vgg_16"), "tutorlib.rf_models"),
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'tutorlib.receptive_field' has no attribute {name!r}")



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
# 2. helpers shared with tutorlib.erf: probe inputs, and the layers that act on each position alone
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


def _tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


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
