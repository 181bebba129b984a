"""Argument checks shared by the topic modules: one message format for every public boundary."""

from __future__ import annotations

import math

import torch


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) and at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an int; the message names ``name``, the type and the value.
        ValueError: ``value < minimum``; the message names ``name``, the bound and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number ``> 0`` (``>= 0`` with ``allow_zero``).

    Raises:
        TypeError: ``value`` is not an int or float (bools are refused); the message names ``name``.
        ValueError: ``value`` is NaN, infinite, negative, or zero when zero is not allowed.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return float(value)


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
