"""Visible checks: every claim a chapter makes is printed with its numbers and raises if false.

A chapter that says "the model without a bias is capped at 60% accuracy" ends the experiment
with::

    check("no-bias accuracy stays below 0.7", acc_nobias < 0.7, acc_nobias=acc_nobias)

which prints ``✔ no-bias accuracy stays below 0.7 (acc_nobias=0.61)``. If a change to the
library or the data makes the claim false, the cell raises :class:`ClaimError`, the chapter's
nbval test fails and the book does not build.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = [
    "ClaimError",
    "check",
]


class ClaimError(AssertionError):
    """A claim the text makes no longer holds."""


def _fmt(value: object) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


def check(claim: str, ok: bool | np.bool_ | torch.Tensor, **measured: object) -> None:
    """Print ``claim`` with the numbers behind it; raise :class:`ClaimError` if ``ok`` is false.

    Args:
        claim: the sentence the text asserts, e.g. ``"DDIM-50 within 6% of DDPM-1000"``.
        ok: whether it holds (a Python bool, a NumPy bool or a one-element boolean tensor).
        **measured: the numbers the claim is about; printed next to it either way.

    Raises:
        TypeError: ``claim`` is not a non-empty string, or ``ok`` is not a boolean.
        ClaimError: ``ok`` is false.
    """
    if not isinstance(claim, str) or not claim.strip():
        raise TypeError("claim must be a non-empty string describing what is asserted")
    if isinstance(ok, torch.Tensor):
        if ok.numel() != 1 or ok.dtype != torch.bool:
            raise TypeError(f"ok must be a one-element bool tensor, got {ok.dtype} {tuple(ok.shape)}")
        ok = bool(ok.item())
    if not isinstance(ok, bool | np.bool_):
        raise TypeError(f"ok must be a bool (the result of a comparison), got {type(ok).__name__}")
    numbers = _format_measured(measured)
    if not ok:
        raise ClaimError(f"claim no longer holds: {claim}{numbers}")
    print(f"✔ {claim}{numbers}")


def _format_measured(measured: Mapping[str, object]) -> str:
    if not measured:
        return ""
    return " (" + ", ".join(f"{k}={_fmt(v)}" for k, v in measured.items()) + ")"
