"""Training in less memory: number formats, loss scaling, checkpointing, accumulation.

The chapter "Training in less memory" (``book/efficient_training.md``) teaches this module.

- :class:`FloatFormat`, :func:`format_limits`, :func:`round_to_format`, :func:`float_bits`:
  IEEE-754-style binary formats (fp32, fp16, bf16) derived from their exponent and mantissa
  widths, and round-to-nearest-even written from scratch.
- :class:`DynamicLossScaler`: dynamic loss scaling with the semantics of
  ``torch.amp.GradScaler`` (Micikevicius et al. 2018).
- :class:`SavedTensorTracker`: the exact bytes autograd keeps for the backward pass, counted
  with ``torch.autograd.graph.saved_tensors_hooks``, live and peak.
- :func:`checkpoint`, :func:`checkpoint_sequential`: gradient checkpointing from scratch
  (Chen et al. 2016), one extra forward per checkpointed segment.
- :func:`accumulated_gradients`: gradient accumulation over micro-batches.

The models and training runs of the chapter are in :mod:`tutorlib.efficient_models`.

References:
    IEEE 754-2019, Standard for Floating-Point Arithmetic.
    Micikevicius et al., "Mixed Precision Training", ICLR 2018.
    Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019.
    Chen, Xu, Zhang, Guestrin, "Training Deep Nets with Sublinear Memory Cost", 2016.
    Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", 2023.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.validation import check_int, check_positive

__all__ = [
    "FORMATS",
    "TORCH_DTYPES",
    "DynamicLossScaler",
    "FloatFormat",
    "SavedTensorTracker",
    "accumulated_gradients",
    "checkpoint",
    "checkpoint_sequential",
    "float_bits",
    "format_limits",
    "round_to_format",
    "spacing",
    "underflow_fraction",
]


# ---------------------------------------------------------------------------------------------
# Number formats from their bits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: 1 sign bit, ``exponent_bits``, ``mantissa_bits``.

    A normal number is :math:`(-1)^s \\, (1.f)_2 \\, 2^{E - \\text{bias}}` with
    :math:`\\text{bias} = 2^{e-1} - 1`, stored exponent :math:`1 \\le E \\le 2^e - 2`
    (:math:`E = 2^e - 1` is inf/NaN); :math:`E = 0` holds zero and the subnormals
    :math:`(0.f)_2 \\, 2^{1-\\text{bias}}`.
    """

    name: str
    exponent_bits: int  #: e, the width of the exponent field
    mantissa_bits: int  #: m, the width of the fraction field (the leading 1 is implicit)

    def __post_init__(self) -> None:
        check_int("exponent_bits", self.exponent_bits, minimum=2)
        check_int("mantissa_bits", self.mantissa_bits, minimum=1)

    @property
    def bits(self) -> int:
        """Total width, ``1 + e + m``."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """Exponent bias :math:`2^{e-1} - 1`."""
        return 2 ** (self.exponent_bits - 1) - 1


#: The three formats of mixed-precision training; the torch dtype each one is.
FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat("fp32", 8, 23),
    "fp16": FloatFormat("fp16", 5, 10),
    "bf16": FloatFormat("bf16", 8, 7),
}
TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def _format(fmt: FloatFormat | str) -> FloatFormat:
    if isinstance(fmt, str):
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)} or a FloatFormat, got {fmt!r}")
        return FORMATS[fmt]
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a FloatFormat or a name, got {type(fmt).__name__}")
    return fmt


def format_limits(fmt: FloatFormat | str) -> dict[str, float]:
    """Range and precision of ``fmt``, computed from its field widths alone.

    .. math::
        \\max = (2 - 2^{-m})\\,2^{\\text{bias}},\\quad
        \\text{smallest normal} = 2^{1-\\text{bias}},\\quad
        \\text{smallest subnormal} = 2^{1-\\text{bias}-m},\\quad
        \\varepsilon = 2^{-m}.

    :math:`\\varepsilon` is the gap between 1 and the next number; a value rounds with relative
    error at most :math:`\\varepsilon/2` in the normal range.

    Returns:
        ``{"max", "smallest_normal", "smallest_subnormal", "eps"}`` as Python floats.
    """
    f = _format(fmt)
    m, bias = f.mantissa_bits, f.bias
    return {
        "max": (2.0 - 2.0**-m) * 2.0**bias,
        "smallest_normal": 2.0 ** (1 - bias),
        "smallest_subnormal": 2.0 ** (1 - bias - m),
        "eps": 2.0**-m,
    }


def _as_float64(name: str, x: object) -> torch.Tensor:
    if isinstance(x, bool) or not isinstance(x, int | float | torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor, got {type(x).__name__}")
    t = torch.as_tensor(x)
    if not t.is_floating_point() and t.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be a real tensor, got {t.dtype}")
    return t.to(torch.float64)


def _pow2(j: torch.Tensor) -> torch.Tensor:
    """Exact float64 :math:`2^j` for integer ``j`` in [-1022, 1023], built from its bits (fast)."""
    return ((j.to(torch.int64) + 1023) << 52).view(torch.float64)


def round_to_format(x: float | torch.Tensor, fmt: FloatFormat | str) -> torch.Tensor:
    """Round ``x`` to the nearest number of ``fmt`` (ties to even), returned as float64.

    Write :math:`|x| = 2^{k}\\,(1.f)` with :math:`k = \\lfloor \\log_2 |x| \\rfloor`, clamped below
    at the smallest normal exponent :math:`1 - \\text{bias}` (that clamp *is* the subnormal
    range: the spacing stops shrinking). The spacing of ``fmt`` there is
    :math:`u = 2^{k - m}`, and the result is :math:`u \\cdot \\operatorname{round}(x / u)`.
    Results above ``max`` become :math:`\\pm\\infty`; NaN stays NaN.

    Args:
        x: a number or a tensor of any shape (exactly representable in float64).
        fmt: a :class:`FloatFormat` or one of ``"fp32"``, ``"fp16"``, ``"bf16"``.

    Returns:
        float64 tensor of the shape of ``x``.
    """
    f = _format(fmt)
    x64 = _as_float64("x", x)
    limits = format_limits(f)
    _, exponent = torch.frexp(x64)  # x = mantissa * 2**exponent, |mantissa| in [0.5, 1)
    k = (exponent - 1).clamp(min=1 - f.bias)  # floor(log2|x|), or the subnormal exponent
    ulp = _pow2(k - f.mantissa_bits)
    rounded = torch.round(x64 / ulp) * ulp  # torch.round rounds half to even
    rounded = torch.where(rounded.abs() > limits["max"], torch.sign(x64) * math.inf, rounded)
    rounded = torch.where(torch.isfinite(x64), rounded, x64)  # inf and NaN pass through
    return torch.where(x64 == 0, x64, rounded)  # keep the sign of zero


def spacing(x: float | torch.Tensor, fmt: FloatFormat | str) -> torch.Tensor:
    """Gap between consecutive numbers of ``fmt`` at ``|x|`` (the "ulp"), as float64.

    :math:`u(x) = 2^{\\max(\\lfloor \\log_2|x| \\rfloor,\\ 1-\\text{bias}) - m}`: it doubles at every
    power of two and is constant, :math:`2^{1-\\text{bias}-m}`, across the subnormal range.
    Rounding to nearest moves a value by at most :math:`u/2`.
    """
    f = _format(fmt)
    x64 = _as_float64("x", x)
    _, exponent = torch.frexp(x64)
    k = (exponent - 1).clamp(min=1 - f.bias)
    k = torch.where(x64 == 0, torch.full_like(k, 1 - f.bias), k)
    return _pow2(k - f.mantissa_bits)


def float_bits(x: float, fmt: FloatFormat | str) -> tuple[str, str, str]:
    """The sign, exponent and fraction fields of ``x`` rounded to ``fmt``, as bit strings.

    Built from :func:`round_to_format` alone: :math:`E = k + \\text{bias}` for a normal number
    (0 for a subnormal) and the fraction :math:`f = |x| / 2^{k} - 1` written in ``m`` bits.
    """
    f = _format(fmt)
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"x must be a Python number, got {type(x).__name__}")
    value = float(round_to_format(float(x), f))
    sign = "1" if math.copysign(1.0, value) < 0 else "0"
    e, m = f.exponent_bits, f.mantissa_bits
    if math.isnan(value):
        return sign, "1" * e, "1" + "0" * (m - 1)
    if math.isinf(value):
        return sign, "1" * e, "0" * m
    a = abs(value)
    if a == 0.0:
        return sign, "0" * e, "0" * m
    k = math.frexp(a)[1] - 1
    if k < 1 - f.bias:  # subnormal: E = 0, a = 0.f * 2**(1 - bias)
        stored, fraction = 0, a / 2.0 ** (1 - f.bias)
    else:
        stored, fraction = k + f.bias, a / 2.0**k - 1.0
    return sign, format(stored, f"0{e}b"), format(round(fraction * 2**m), f"0{m}b")


def underflow_fraction(values: torch.Tensor, fmt: FloatFormat | str = "fp16", scale: float = 1.0) -> float:
    """Fraction of the nonzero entries of ``scale * values`` that round to zero in ``fmt``.

    An entry flushes to zero when :math:`|s\\,v| \\le \\tfrac12` smallest subnormal (the tie at
    exactly one half rounds to the even neighbour, 0). NaN entries count as not flushed.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor, got {type(values).__name__}")
    check_positive("scale", scale)
    v = values.detach().reshape(-1).to(torch.float64) * scale
    nonzero = v[v != 0]
    if nonzero.numel() == 0:
        raise ValueError("values has no nonzero entry; the fraction is undefined")
    return float((round_to_format(nonzero, fmt) == 0).double().mean())


# ---------------------------------------------------------------------------------------------
# Dynamic loss scaling
# ---------------------------------------------------------------------------------------------


class DynamicLossScaler:
    """Dynamic loss scaling, written to behave step for step like ``torch.amp.GradScaler``.

    Multiply the loss by :math:`S` before ``backward`` so that small gradients survive fp16;
    divide the gradients by :math:`S` before the optimizer step. Every step:

    1. if any gradient is inf or NaN, skip the step and set :math:`S \\leftarrow S \\cdot
       \\text{backoff}` (and reset the count of clean steps);
    2. otherwise step, and after ``growth_interval`` clean steps in a row set
       :math:`S \\leftarrow S \\cdot \\text{growth}`.

    Usage, as with GradScaler::

        scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()

    Args:
        init_scale: :math:`S` at the start (GradScaler: :math:`2^{16}`).
        growth_factor: multiplier after ``growth_interval`` clean steps (2.0).
        backoff_factor: multiplier after an overflow, in (0, 1) (0.5).
        growth_interval: clean steps before growing (2000).
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        self.scale_value = check_positive("init_scale", init_scale)
        self.growth_factor = check_positive("growth_factor", growth_factor)
        if self.growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        self.backoff_factor = check_positive("backoff_factor", backoff_factor)
        if self.backoff_factor >= 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        self.growth_interval = check_int("growth_interval", growth_interval)
        self.growth_tracker = 0  #: clean steps since the last growth or overflow
        self.found_inf = False  #: whether this step's gradients overflowed
        self._unscaled = False
        self.skipped = 0  #: total optimizer steps skipped

    def get_scale(self) -> float:
        """The current scale :math:`S`."""
        return self.scale_value

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """Return :math:`S \\cdot \\text{loss}` (call ``backward`` on it)."""
        if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
            what = loss.dtype if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TypeError(f"loss must be a floating-point tensor, got {what}")
        # a NaN or inf loss passes on: the scaler detects it in the gradients and skips the step
        return loss * self.scale_value

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient of ``optimizer`` by :math:`S` in place; return whether one is inf/NaN."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if self._unscaled:
            raise RuntimeError("unscale_ was already called since the last update()")
        inv = 1.0 / self.scale_value
        found = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                found = found or not bool(torch.isfinite(p.grad).all())
                p.grad.mul_(inv)
        self.found_inf = found
        self._unscaled = True
        return found

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale (if not done yet) and call ``optimizer.step()`` unless a gradient overflowed.

        Returns:
            whether the optimizer stepped.
        """
        if not self._unscaled:
            self.unscale_(optimizer)
        if self.found_inf:
            self.skipped += 1
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Back off after an overflow, grow after ``growth_interval`` clean steps."""
        if not self._unscaled:
            raise RuntimeError("update() needs step() or unscale_() first in this iteration")
        if self.found_inf:
            self.scale_value *= self.backoff_factor
            self.growth_tracker = 0
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.growth_tracker = 0
        self._unscaled = False
        self.found_inf = False


# ---------------------------------------------------------------------------------------------
# Counting what autograd saves
# ---------------------------------------------------------------------------------------------


class _Held:
    """What a pack hook hands to autograd: the tensor, so that its lifetime can be watched."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorTracker:
    """Count the bytes autograd saves for the backward pass, exactly, while they are alive.

    Inside ``with tracker:`` every tensor that an operation saves for backward passes through a
    ``torch.autograd.graph.saved_tensors_hooks`` pack hook. Tensors that share one storage (a
    ReLU's output is also the next Linear's input) are counted once, by storage; storages of
    the ``exclude`` tensors (the parameters, which exist anyway) are not counted. A saved
    tensor stops counting when autograd frees it (after its node ran in backward), so
    :attr:`peak_bytes` is the high-water mark over forward *and* backward, including
    recomputation inside backward, if ``backward()`` is called inside the ``with`` block.

    Attributes:
        live_bytes: bytes of distinct saved storages alive now.
        peak_bytes: largest ``live_bytes`` seen.
        forward_bytes: ``live_bytes`` when :meth:`mark` was last called (e.g. after forward).
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        excluded = list(exclude)
        for t in excluded:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"exclude must contain tensors, got {type(t).__name__}")
        self._excluded = {t.untyped_storage().data_ptr() for t in excluded}
        self._count: dict[int, int] = {}
        self._size: dict[int, int] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        self.forward_bytes = 0
        self.history: list[int] = []  #: live_bytes after every change, in order
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: torch.Tensor) -> _Held:
        # detach(): same storage and version counter, but no reference back to the graph (a
        # saved *output* would otherwise hold its own grad_fn: a cycle that outlives the graph)
        held = _Held(tensor.detach())
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self._excluded or storage.nbytes() == 0:
            return held
        if self._count.get(key, 0) == 0:
            self._size[key] = storage.nbytes()
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self.history.append(self.live_bytes)
        self._count[key] = self._count.get(key, 0) + 1
        weakref.finalize(held, self._release, key)
        return held

    @staticmethod
    def _unpack(held: _Held) -> torch.Tensor:
        return held.tensor

    def _release(self, key: int) -> None:
        self._count[key] -= 1
        if self._count[key] == 0:
            self.live_bytes -= self._size.pop(key)
            del self._count[key]
            self.history.append(self.live_bytes)

    def mark(self) -> int:
        """Record and return the live bytes now (call it between forward and backward)."""
        self.forward_bytes = self.live_bytes
        return self.forward_bytes

    def __enter__(self) -> SavedTensorTracker:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


# ---------------------------------------------------------------------------------------------
# Gradient checkpointing from scratch
# ---------------------------------------------------------------------------------------------


def _check_activation(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (an activation), got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


class _Checkpoint(torch.autograd.Function):
    """Run ``fn`` without saving anything inside; rerun it with grad in backward."""

    @staticmethod
    def forward(ctx, fn, x, *params):  # type: ignore[override]
        ctx.fn, ctx.param_list = fn, params
        ctx.save_for_backward(x)  # the only tensor kept: the segment's input
        with torch.no_grad():
            try:
                return fn(x)
            except RuntimeError as err:  # a shape or dtype the segment does not take
                shape = tuple(x.shape)
                raise ValueError(f"the segment failed on x of shape {shape}, {x.dtype}: {err}") from err

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        params = ctx.needs_input_grad[2:]
        x = x.detach().requires_grad_(ctx.needs_input_grad[1])
        with torch.enable_grad():
            out = ctx.fn(x)  # the extra forward: recompute the segment's activations
        inputs = [x] if x.requires_grad else []
        param_list = [p for p, need in zip(ctx.param_list, params, strict=True) if need]
        grads = torch.autograd.grad(out, inputs + param_list, grad_out, allow_unused=True)
        grad_x = grads[0] if x.requires_grad else None
        it = iter(grads[len(inputs):])
        grad_params = [next(it) if need else None for need in params]
        return (None, grad_x, *grad_params)


def checkpoint(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               params: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """``fn(x)`` that keeps only ``x`` for backward and recomputes the rest (Chen et al. 2016).

    Args:
        fn: a deterministic function of one tensor (no dropout: the recompute must match).
        x: its input, shape whatever ``fn`` takes.
        params: the parameters ``fn`` uses (gradients flow to them through the recompute).

    Returns:
        ``fn(x)``, whose backward pass runs ``fn`` once more.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _check_activation("x", x)
    params = list(params)
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params must contain tensors, got {type(p).__name__}")
    return _Checkpoint.apply(fn, x, *params)


def checkpoint_sequential(layers: Sequence[nn.Module], segments: int, x: torch.Tensor) -> torch.Tensor:
    """Run ``layers`` in ``segments`` checkpointed chunks; the last chunk is not checkpointed.

    With :math:`n` layers and :math:`k` segments, the forward keeps :math:`k - 1` segment inputs,
    and the backward rebuilds one segment of :math:`\\lfloor n/k \\rfloor` layers at a time (the
    last segment, which also takes the remainder, is kept whole), so the
    activation memory is about :math:`(k + n/k)` layer activations, smallest at
    :math:`k = \\sqrt n` (:math:`2\\sqrt n`). The checkpointed layers run forward twice: at
    most one extra forward pass. ``segments=1`` is plain backprop; ``segments=n`` checkpoints
    every layer but the last. Same convention as ``torch.utils.checkpoint.checkpoint_sequential``.
    """
    layers = list(layers)
    if not layers or not all(isinstance(m, nn.Module) for m in layers):
        raise TypeError("layers must be a non-empty sequence of nn.Module")
    check_int("segments", segments)
    if segments > len(layers):
        raise ValueError(f"segments must be <= the number of layers {len(layers)}, got {segments}")
    _check_activation("x", x)
    size = len(layers) // segments  # as torch's: k - 1 chunks of floor(n/k), the rest last
    chunks = [layers[i * size:(i + 1) * size] for i in range(segments - 1)]
    chunks.append(layers[(segments - 1) * size:])
    for chunk in chunks[:-1]:
        seq = nn.Sequential(*chunk)
        x = checkpoint(seq, x, [p for p in seq.parameters() if p.requires_grad])
    try:
        for layer in chunks[-1]:
            x = layer(x)
    except RuntimeError as err:
        raise ValueError(f"the last segment failed on x of shape {tuple(x.shape)}: {err}") from err
    return x


# ---------------------------------------------------------------------------------------------
# Gradient accumulation
# ---------------------------------------------------------------------------------------------


def accumulated_gradients(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batch: int,
) -> list[torch.Tensor]:
    """Gradient of the mean loss over ``(x, y)``, summed from micro-batches of ``micro_batch``.

    With a mean-reduced loss, :math:`\\nabla \\frac1N \\sum_i \\ell_i = \\sum_j \\frac{|B_j|}{N}
    \\nabla \\frac{1}{|B_j|} \\sum_{i \\in B_j} \\ell_i`: each micro-batch's loss is weighted by
    its share of the batch (the last chunk may be smaller). ``loss_fn`` must reduce by mean.
    Floating-point targets ``y`` (regression, soft labels) must have the shape of ``model(x)``
    (a ``(N,)`` target against a ``(N, 1)`` output would broadcast to ``(N, N)`` in ``mse_loss``);
    integer targets (class indices) may have any shape ``loss_fn`` takes.

    Returns:
        the gradients, one per parameter of ``model`` (in ``model.parameters()`` order);
        ``model``'s ``.grad`` fields are left as they were.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x and y must share a non-empty first dimension, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    check_int("micro_batch", micro_batch)
    for name, t in (("x", x), ("y", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    n = x.shape[0]
    for start in range(0, n, micro_batch):
        xb, yb = x[start:start + micro_batch], y[start:start + micro_batch]
        try:
            out = model(xb)
            if yb.is_floating_point() and isinstance(out, torch.Tensor) and out.shape[1:] != yb.shape[1:]:
                raise ValueError(f"y (floating-point targets) must have the shape of model(x) "
                                 f"(N, *{tuple(out.shape[1:])}), got {tuple(y.shape)}: the loss would "
                                 f"broadcast them")
            loss = loss_fn(out, yb) * (xb.shape[0] / n)
        except RuntimeError as err:  # a shape or dtype the model or loss does not take
            raise ValueError(f"model/loss_fn failed on x of shape {tuple(xb.shape)} and y of shape "
                             f"{tuple(yb.shape)}: {err}") from err
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc += g
    return total
