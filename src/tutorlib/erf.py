"""Measuring receptive fields by back-propagation: the empirical and the effective field.

Two measurements for ``book/receptive_fields.md``. The **empirical field** of an output unit
is the set of inputs with :math:`\\partial y / \\partial x \\neq 0`; on a :func:`linearized`
copy of a network (positive weights, no gating) it equals the field that
:mod:`tutorlib.receptive_field` computes, holes included. The **effective receptive field**
(ERF) of Luo et al. is the map :math:`\\mathbb{E}[(\\partial y / \\partial x)^2]` over inputs
(and, for random networks, over weights): how much each pixel of the field actually moves the
unit. For :math:`n` random :math:`k \\times k` layers it is close to a Gaussian of width
:math:`\\propto \\sqrt n`, while the field grows like :math:`n`.

Shapes: inputs ``(B, C, *spatial)``; maps have the input's spatial shape.

References:
    Luo, Li, Urtasun & Zemel (2016), "Understanding the effective receptive field in deep
    convolutional neural networks", NeurIPS.
    Araujo, Norris & Sim (2019), "Computing receptive fields of convolutional neural
    networks", Distill.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.powerlaw import loglog_slope
from tutorlib.receptive_field import (
    _ADAPTIVE_MAX_TO_AVG,
    _MAX_TO_AVG,
    _POINTWISE,
    LayerSpec,
    _check_input_size,
    _check_layers,
    _probe_tensor,
    _tuple,
)
from tutorlib.validation import check_finite, check_index, check_int

__all__ = [
    "EmpiricalReceptiveField",
    "conv_stack",
    "effective_receptive_field",
    "empirical_receptive_field",
    "erf_map",
    "gaussian_distance",
    "input_gradient",
    "linearized",
    "power_law_exponent",
    "profile_spread",
    "random_conv_stack",
]


# --------------------------------------------------------------------------------------------
# 1. the empirical field: where the gradient of one output unit is not zero
# --------------------------------------------------------------------------------------------
def _gradient_at(model: nn.Module, x: torch.Tensor, index: Sequence[int] | None
                 ) -> tuple[torch.Tensor, tuple[int, ...]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError("x must be a tensor of shape (B, C, *spatial)")
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if conv is not None and x.ndim != len(conv.kernel_size) + 2:
        raise ValueError(
            f"x must have shape (B, C, *spatial) with {len(conv.kernel_size)} spatial axes for the "
            f"model's {type(conv).__name__}, got {tuple(x.shape)}"
        )
    x = x.detach().requires_grad_(True)
    try:
        y = model(x)
    except RuntimeError as error:
        raise ValueError(f"model does not run on x of shape {tuple(x.shape)}: {error}") from error
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

    def __post_init__(self) -> None:
        if not isinstance(self.gradient, torch.Tensor) or not self.gradient.is_floating_point():
            raise TypeError(f"gradient must be a floating-point tensor, got "
                            f"{getattr(self.gradient, 'dtype', type(self.gradient).__name__)}")
        check_finite("gradient", self.gradient)
        ndim = self.gradient.ndim
        for name in ("output_index", "first", "last"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != ndim:
                raise ValueError(f"{name} must be a tuple with one entry per axis of gradient "
                                 f"{tuple(self.gradient.shape)}, got {value!r}")
            for i, v in enumerate(value):
                check_int(f"{name}[{i}]", v, minimum=0)
        for axis, (a, b) in enumerate(zip(self.first, self.last, strict=True)):
            if not a <= b < self.gradient.shape[axis]:
                raise ValueError(f"first and last must satisfy first <= last < {self.gradient.shape[axis]} "
                                 f"on axis {axis}, got {a} and {b}")

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
# 2. the effective receptive field (Luo et al. 2016)
# --------------------------------------------------------------------------------------------
def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def erf_map(model: nn.Module, x: torch.Tensor, index: Sequence[int] | None = None) -> torch.Tensor:
    """The effective receptive field of one output unit of a given network, over a batch of inputs.

    .. math::  E(u) = \\frac{\\sum_b \\sum_c g_{b,c}(u)^2}{\\sum_{u'} \\sum_b \\sum_c g_{b,c}(u')^2},
               \\qquad g_b = \\frac{\\partial \\sum_{c'} y_{b,c'}(\\text{index})}{\\partial x_b},

    the share of the squared gradient that each input position :math:`u` gets, for a trained
    (or untrained) network and real inputs: Luo et al.'s measurement. The model runs in eval mode
    and is put back in the mode it was in.

    Args:
        model: maps ``(B, C, *spatial)`` to ``(B, C', *spatial')`` and treats samples independently.
        x: inputs ``(B, C, *spatial)``, floating point, finite.
        index: the output position, one index per spatial axis; default the centre.

    Returns:
        Map of the input's spatial shape, non-negative, summing to 1.

    Raises:
        ValueError: the unit's gradient is zero for every input (nothing to normalise).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        grad = input_gradient(model, x, index)  # (B, C, *spatial)
    finally:
        model.train(was_training)
    energy = grad.detach().pow(2).sum(dim=(0, 1))
    total = energy.sum()
    if not bool(total > 0):
        raise ValueError("the output unit has a zero gradient for every input in x: no map to normalise")
    return energy / total


def random_conv_stack(depth: int, kernel_size: int = 3, channels: int = 8, activation: bool = True,
                      generator: torch.Generator | None = None) -> nn.Sequential:
    """``depth`` 2-D convolutions ``kernel_size``×``kernel_size`` without padding, He-normal weights,
    no bias, each followed by a ReLU (``activation=True``); one input channel."""
    check_int("depth", depth, 1)
    check_int("kernel_size", kernel_size, 1)
    check_int("channels", channels, 1)
    _check_flag("activation", activation)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
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
    check_int("channels", channels, 1)
    _check_flag("activation", activation)
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
