"""Argument checks shared by the topic modules: one message format for every public boundary.

Every check takes the argument's ``name`` first and raises ``TypeError`` (wrong kind of value) or
``ValueError`` (right kind, wrong value) with a message of the form
``"<name> must be <what was expected>, got <what was received>"``. Checks return the (possibly
converted) value, so a boundary reads ``steps = check_int("steps", steps)``.

Validate once at the public boundary, never inside a hot loop.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "all_finite",
    "check_choice",
    "check_fields",
    "check_finite",
    "check_index",
    "check_indices",
    "check_int",
    "check_nonnegative",
    "check_points",
    "check_positive",
    "check_probability",
    "check_real",
    "check_same_shape",
    "check_tensor",
    "optional",
]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool; NumPy integers are fine)
    and at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an int; the message names ``name``, the type and the value.
        ValueError: ``value < minimum``; the message names ``name``, the bound and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number in the given interval.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open``; ``None`` means no bound.

    Raises:
        TypeError: ``value`` is not an int or float (bools and strings are refused).
        ValueError: ``value`` is NaN, infinite or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if low is None or low_open else "["
    right = ")" if high is None or high_open else "]"
    interval = f"{left}{lo}, {hi}{right}"
    if (
        not math.isfinite(value)
        or (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
    ):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return float(value)


def check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number ``> 0`` (``>= 0`` with ``allow_zero``).

    Raises:
        TypeError: ``value`` is not an int or float (bools are refused); the message names ``name``.
        ValueError: ``value`` is NaN, infinite, negative, or zero when zero is not allowed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """``check_positive(name, value, allow_zero=True)``: a finite real number ``>= 0``."""
    return check_positive(name, value, allow_zero=True)


def check_probability(name: str, value: object, *, allow_zero: bool = True, allow_one: bool = True) -> float:
    """Return ``value`` as a float if it is a probability in ``[0, 1]`` (ends optionally excluded)."""
    return check_real(name, value, 0.0, 1.0, low_open=not allow_zero, high_open=not allow_one)


def check_index(name: str, value: object, size: int) -> int:
    """Return ``value`` if it is an int in ``[0, size)``: no negative wrap-around."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int index in [0, {size}), got {type(value).__name__} {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be an index in [0, {size}), got {value}")
    return int(value)


def check_indices(name: str, t: torch.Tensor, size: int) -> torch.Tensor:
    """Return ``t`` if it is an integer tensor whose entries all lie in ``[0, size)``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be an integer torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        raise ValueError(
            f"{name} must hold indices in [0, {size}), got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t


def check_choice(name: str, value: object, choices: Iterable[object]) -> Any:
    """Return ``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    try:
        ok = any(type(value) is type(c) and bool(value == c) for c in choices)
    except (TypeError, ValueError, RuntimeError):  # incomparable (e.g. a tensor)
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite (no NaN, no inf), in one reduction.

    A NaN or an infinity makes the sum non-finite, so a finite sum proves every entry finite.
    Only a non-finite sum (a bad entry, or finite entries whose sum overflows) needs the
    element-wise test. The sum is about ten times cheaper than ``torch.isfinite(x).all()``,
    which writes a boolean tensor as large as ``x``: it matters in checks that run every
    training step. Integer and boolean tensors are always finite.
    """
    if not (x.is_floating_point() or x.is_complex()):
        return True
    if bool(torch.isfinite(x.detach().sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` if every entry is finite (no NaN, no inf)."""
    if not all_finite(x):
        bad = "NaN" if bool(torch.isnan(x).any()) else "inf"
        raise ValueError(f"{name} must be finite, got a tensor containing {bad}")
    return x


_DTYPES = {"float": "floating-point", "int": "integer", "bool": "bool", "real": "real (int or float)"}


def _dtype_ok(t: torch.Tensor, dtype: str | torch.dtype) -> bool:
    if isinstance(dtype, torch.dtype):
        return t.dtype == dtype
    if dtype == "float":
        return t.is_floating_point()
    if dtype == "int":
        return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
    if dtype == "bool":
        return t.dtype == torch.bool
    if dtype == "real":
        return not (t.is_complex() or t.dtype == torch.bool)
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")


def _shape_text(shape: Sequence[object]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(
    name: str,
    x: object,
    shape: Sequence[int | str | None] | None = None,
    *,
    dims: dict[str, int] | None = None,
    dtype: str | torch.dtype | None = "float",
    finite: bool = True,
    ndim: int | Sequence[int] | None = None,
    convert: bool = False,
) -> torch.Tensor:
    """Return ``x`` if it is a tensor of the expected dtype, rank, shape and finiteness.

    Args:
        name: the argument's name, used in every message.
        x: the value to check. With ``convert=True`` a list/tuple/number/array is first turned
            into a tensor (float32 for ``dtype="float"``); otherwise a non-tensor is a ``TypeError``.
        shape: the expected shape, one entry per axis: an ``int`` (exact size), a ``str`` (a named
            size: every axis with that name, in this and later calls sharing ``dims``, must agree;
            an all-digits name is never used), or ``None`` (any size). A leading ``"..."`` allows
            any number of extra leading axes. The rank must match exactly: no silent broadcasting.
        dims: the named sizes seen so far; filled in by this call (pass the same dict to check
            that two arguments agree, e.g. ``boxes (N, 4)`` and ``scores (N,)``).
        dtype: ``"float"``, ``"int"``, ``"bool"``, ``"real"``, a ``torch.dtype``, or ``None``.
        finite: refuse NaN and inf.
        ndim: allowed rank(s) when ``shape`` is not given.
        convert: accept array-likes.

    Raises:
        TypeError: not a tensor (and not converted), or the wrong dtype.
        ValueError: the wrong rank or size, a named size that disagrees, NaN/inf.
    """
    if not isinstance(x, torch.Tensor):
        array_like = isinstance(x, list | tuple | float | int) or hasattr(x, "__array__")
        if convert and array_like and not isinstance(x, bool):
            try:
                x = torch.as_tensor(x, dtype=torch.get_default_dtype() if dtype == "float" else None)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"{name} must be a tensor or array-like of numbers, got {x!r}") from err
        else:
            expected = f" of shape {_shape_text(shape)}" if shape is not None else ""
            raise TypeError(f"{name} must be a torch.Tensor{expected}, got {type(x).__name__}")
    if dtype is not None and not _dtype_ok(x, dtype):
        want = _DTYPES.get(dtype, str(dtype)) if isinstance(dtype, str) else str(dtype)
        raise TypeError(f"{name} must be a {want} tensor, got {x.dtype}")
    if shape is not None:
        spec = _shape_text(shape)
        shape = list(shape)
        leading = bool(shape) and shape[0] == "..."
        if leading:
            shape = shape[1:]
        if x.ndim < len(shape) if leading else x.ndim != len(shape):
            raise ValueError(f"{name} must have shape {spec}, got {tuple(x.shape)}")
        dims = {} if dims is None else dims
        actual = x.shape[x.ndim - len(shape):]
        for want, got in zip(shape, actual, strict=True):
            if want is None:
                continue
            if isinstance(want, str):
                if want in dims and dims[want] != got:
                    raise ValueError(
                        f"{name} must have shape {spec} with {want} = {dims[want]} "
                        f"(from another argument), got {tuple(x.shape)}"
                    )
                dims[want] = got
            elif want != got:
                raise ValueError(f"{name} must have shape {spec}, got {tuple(x.shape)}")
    elif ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} axes, got shape {tuple(x.shape)}"
            )
    if finite:
        check_finite(name, x)
    return x


def check_same_shape(**tensors: torch.Tensor | None) -> None:
    """Refuse tensors (given by keyword, ``None`` skipped) whose shapes differ: no broadcasting."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    if not items:
        return
    first, ref = items[0]
    for key, value in items[1:]:
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(
                f"{key} must have the same shape as {first} {tuple(ref.shape)}, got {tuple(value.shape)}"
            )


def check_points(name: str, x: object) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor of points ``(N, D)`` with ``N >= 1``.

    Raises:
        TypeError: not a tensor, or not floating point; the message names ``name``.
        ValueError: not two-dimensional, or empty.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


Rule = Callable[..., object] | tuple


def check_fields(obj: object, rules: Mapping[str, Rule]) -> None:
    """Check the fields of a config dataclass; call it from ``__post_init__``.

    Args:
        obj: the dataclass instance.
        rules: field name -> a check (``check_int``, ``check_positive``, ...) or a tuple
            ``(check, *extra)``; each is called as ``check(f"{Class}.{field}", value, *extra)``.
            A field whose value is ``None`` is skipped when its rule is wrapped as
            ``(optional, check, *extra)``.

    Example::

        @dataclass
        class Config:
            steps: int = 100
            lr: float = 1e-3

            def __post_init__(self):
                check_fields(self, {"steps": check_int, "lr": check_positive})
    """
    if not dataclasses.is_dataclass(obj):
        raise TypeError(f"obj must be a dataclass instance, got {type(obj).__name__}")
    cls = type(obj).__name__
    for field, rule in rules.items():
        value = getattr(obj, field)
        check, *extra = rule if isinstance(rule, tuple) else (rule,)
        if check is optional:
            if value is None:
                continue
            check, *extra = extra
        check(f"{cls}.{field}", value, *extra)


def optional() -> None:  # pragma: no cover - a marker for check_fields, never called
    """Marker for :func:`check_fields`: ``(optional, check, ...)`` lets a field be ``None``."""
