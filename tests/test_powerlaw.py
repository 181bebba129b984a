"""tutorlib.powerlaw: the one log-log slope that flash and receptive_field re-export."""

import math

import numpy as np
import pytest

from tutorlib import flash, receptive_field
from tutorlib.powerlaw import loglog_slope


def test_slope_matches_numpy_polyfit_and_recovers_exact_power_laws():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1000, 12)
    y = 3.0 * x**1.7 * np.exp(0.05 * rng.normal(size=12))
    expected = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert loglog_slope(x, y) == pytest.approx(expected, rel=1e-12)
    assert loglog_slope([1, 2, 4, 8], [5, 10, 20, 40]) == pytest.approx(1.0, abs=1e-12)
    assert loglog_slope([1, 10], [1, math.sqrt(10)]) == pytest.approx(0.5, abs=1e-12)
    assert flash.loglog_slope is loglog_slope
    assert receptive_field.power_law_exponent(x, y) == loglog_slope(x, y)


def test_slope_refuses_what_has_no_logarithm():
    with pytest.raises(ValueError, match="y must hold positive finite numbers"):
        loglog_slope([1, 2], [1, 0])
    with pytest.raises(ValueError, match="x must hold positive finite numbers"):
        loglog_slope([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="same length >= 2"):
        loglog_slope([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="two different values"):
        loglog_slope([2, 2], [1, 3])
    with pytest.raises(TypeError, match="x and y must be sequences of numbers"):
        loglog_slope(["a", "b"], [1, 2])
