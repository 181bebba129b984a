"""One home for the log-log slope that several chapters fit to measurements.

``tutorlib.flash.loglog_slope`` and ``tutorlib.erf.power_law_exponent`` are this
function under the names their chapters use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["loglog_slope"]


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x`: :math:`a` in :math:`y \propto x^a`.

    .. math::  a = \frac{\sum_i (u_i - \bar u)(v_i - \bar v)}{\sum_i (u_i - \bar u)^2},
               \qquad u = \log x, \ v = \log y .

    Args:
        x, y: 1-D sequences (lists, arrays or tensors) of positive, finite numbers of the same
            length, at least 2, with at least two different ``x``.

    Returns:
        The fitted exponent.

    Raises:
        TypeError: not numbers.
        ValueError: wrong shapes, non-positive or non-finite values, all ``x`` equal.
    """
    try:
        x_t = torch.as_tensor(x, dtype=torch.float64)
        y_t = torch.as_tensor(y, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"x and y must be sequences of numbers, got {type(x).__name__} and "
                        f"{type(y).__name__}") from err
    if x_t.ndim != 1 or x_t.shape != y_t.shape or len(x_t) < 2:
        raise ValueError(f"x and y must be 1-D with the same length >= 2, got shapes {tuple(x_t.shape)} "
                         f"and {tuple(y_t.shape)}")
    for name, t in (("x", x_t), ("y", y_t)):
        if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
            raise ValueError(f"{name} must hold positive finite numbers for a log-log fit")
    lx, ly = x_t.log(), y_t.log()
    lx_c = lx - lx.mean()
    if not bool((lx_c != 0).any()):
        raise ValueError("x must hold at least two different values to fit a slope")
    return ((lx_c * (ly - ly.mean())).sum() / (lx_c**2).sum()).item()
