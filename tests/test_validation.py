"""tutorlib.validation: the argument checks every topic module shares."""

import math

import pytest
import torch

from tutorlib.validation import check_int, check_points, check_positive


def test_check_int_accepts_and_refuses():
    assert check_int("n", 3) == 3
    assert check_int("n", 0, minimum=0) == 0
    with pytest.raises(TypeError, match=r"n must be an int >= 1, got float 2.0"):
        check_int("n", 2.0)
    with pytest.raises(TypeError, match="got bool True"):
        check_int("n", True)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int("n", 0)


def test_check_positive_accepts_and_refuses():
    assert check_positive("lr", 3) == 3.0 and isinstance(check_positive("lr", 3), float)
    assert check_positive("w", 0.0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"lr must be finite and > 0, got 0"):
        check_positive("lr", 0)
    with pytest.raises(ValueError, match=r"w must be finite and >= 0, got -1"):
        check_positive("w", -1, allow_zero=True)
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match="lr must be finite"):
            check_positive("lr", bad)
    with pytest.raises(TypeError, match="lr must be a real number, got str '1'"):
        check_positive("lr", "1")
    with pytest.raises(TypeError, match="got bool True"):
        check_positive("lr", True)


def test_check_points_accepts_and_refuses():
    x = torch.zeros(3, 2)
    assert check_points("x", x) is x
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor of shape"):
        check_points("x", [[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\) with N >= 1, got \(3,\)"):
        check_points("x", torch.zeros(3))
    with pytest.raises(ValueError, match=r"got \(0, 2\)"):
        check_points("x", torch.zeros(0, 2))
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got torch\.int64"):
        check_points("x", torch.zeros(3, 2, dtype=torch.long))
