"""tutorlib.validation: the argument checks every topic module shares."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tutorlib.validation import all_finite, check_int, check_points, check_positive


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


def test_check_real_and_probability():
    from tutorlib.validation import check_nonnegative, check_probability, check_real

    assert check_real("x", -3) == -3.0
    assert check_real("x", 0.5, 0.0, 1.0) == 0.5
    assert check_real("x", torch.tensor(0.25)) == 0.25
    with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 1\], got 2"):
        check_real("x", 2, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"x must be a finite number in \(0, 1\], got 0"):
        check_real("x", 0, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match="x must be a finite"):
        check_real("x", math.nan)
    with pytest.raises(TypeError, match="x must be a real number, got str"):
        check_real("x", "1")
    assert check_probability("p", 1) == 1.0 and check_probability("p", 0.0) == 0.0
    for bad in (-0.1, 1.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="p must be a finite number in"):
            check_probability("p", bad)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \[0, 1\)"):
        check_probability("gamma", 1.0, allow_one=False)
    assert check_nonnegative("w", 0) == 0.0
    with pytest.raises(ValueError, match="w must be finite and >= 0"):
        check_nonnegative("w", -1e-9)


def test_check_index_and_indices():
    from tutorlib.validation import check_index, check_indices

    assert check_index("i", 0, 3) == 0 and check_index("i", 2, 3) == 2
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=rf"i must be an index in \[0, 3\), got {bad}"):
            check_index("i", bad, 3)
    with pytest.raises(TypeError, match="i must be an int index"):
        check_index("i", 1.0, 3)
    t = torch.tensor([0, 2])
    assert check_indices("labels", t, 3) is t
    with pytest.raises(ValueError, match=r"labels must hold indices in \[0, 3\), got values in \[-1, 2\]"):
        check_indices("labels", torch.tensor([-1, 2]), 3)
    with pytest.raises(ValueError, match="labels must hold indices"):
        check_indices("labels", torch.tensor([3]), 3)
    with pytest.raises(TypeError, match=r"labels must be an integer tensor, got torch\.float32"):
        check_indices("labels", torch.tensor([1.0]), 3)


def test_check_choice():
    from tutorlib.validation import check_choice

    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode must be one of 'a', 'b'; got 'c'"):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="order must be one of 1, 2; got True"):
        check_choice("order", True, (1, 2))  # True == 1 but is not the int 1
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice("mode", ["a"], ("a", "b"))  # unhashable
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice("mode", torch.tensor(1), (1, 2))


def test_check_tensor_shapes_dtypes_finiteness():
    from tutorlib.validation import check_finite, check_tensor

    dims: dict[str, int] = {}
    boxes = check_tensor("boxes", torch.zeros(3, 4), ("N", 4), dims=dims)
    assert boxes.shape == (3, 4) and dims == {"N": 3}
    check_tensor("scores", torch.zeros(3), ("N",), dims=dims)
    # no silent broadcasting: (3, 1) is not (3,)
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\), got \(3, 1\)"):
        check_tensor("scores", torch.zeros(3, 1), ("N",), dims=dims)
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\) with N = 3 .*got \(2,\)"):
        check_tensor("scores", torch.zeros(2), ("N",), dims=dims)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\), got \(3, 5\)"):
        check_tensor("boxes", torch.zeros(3, 5), ("N", 4))
    # leading ellipsis: any batch axes in front
    check_tensor("x", torch.zeros(2, 5, 3), ("...", 3))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        check_tensor("x", torch.zeros(2, 4), ("...", 3))
    with pytest.raises(ValueError, match="x must have 2 or 3 axes"):
        check_tensor("x", torch.zeros(2), ndim=(2, 3))
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got torch\.int64"):
        check_tensor("x", torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="x must be a integer tensor"):
        check_tensor("x", torch.zeros(2), dtype="int")
    check_tensor("x", torch.zeros(2, dtype=torch.long), dtype="int")
    check_tensor("x", torch.zeros(2, dtype=torch.float64), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor of shape \(N, 4\), got list"):
        check_tensor("x", [[0.0] * 4], ("N", 4))
    converted = check_tensor("x", [[0.0] * 4], ("N", 4), convert=True)
    assert converted.dtype == torch.float32 and converted.shape == (1, 4)
    for bad, word in ((math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "inf")):
        with pytest.raises(ValueError, match=f"x must be finite, got a tensor containing {word}"):
            check_tensor("x", torch.tensor([0.0, bad]))
    assert torch.isnan(check_tensor("x", torch.tensor([math.nan]), finite=False)).all()
    check_finite("x", torch.tensor([1, 2]))  # integer tensors are always finite


def test_check_same_shape():
    from tutorlib.validation import check_same_shape

    check_same_shape(a=torch.zeros(2), b=torch.zeros(2), c=None)
    with pytest.raises(ValueError, match=r"baseline must have the same shape as returns \(2,\), got"):
        check_same_shape(returns=torch.zeros(2), baseline=torch.zeros(2, 1))


def test_check_fields_in_post_init():
    from dataclasses import dataclass

    from tutorlib.validation import check_fields, check_int, check_probability, optional

    @dataclass
    class Config:
        steps: int = 10
        gamma: float = 0.9
        clip: float | None = None
        start: int = 0

        def __post_init__(self):
            check_fields(self, {"steps": check_int, "gamma": check_probability,
                                "clip": (optional, check_positive), "start": (check_int, 0)})

    Config()
    Config(clip=1.0, start=0)
    with pytest.raises(ValueError, match=r"Config\.steps must be >= 1, got 0"):
        Config(steps=0)
    with pytest.raises(ValueError, match=r"Config.gamma must be a finite number in \[0, 1\]"):
        Config(gamma=1.5)
    with pytest.raises(ValueError, match=r"Config\.clip must be finite and > 0, got -1"):
        Config(clip=-1.0)
    with pytest.raises(ValueError, match=r"Config\.start must be >= 0"):
        Config(start=-1)
    with pytest.raises(TypeError, match="obj must be a dataclass instance"):
        check_fields(object(), {})


def test_numpy_scalars_count_as_numbers():
    import numpy as np

    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_positive("lr", np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match="n must be an int"):
        check_int("n", np.float64(3.0))
    with pytest.raises(TypeError, match="got bool"):
        check_int("n", True)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=50))
def test_all_finite_agrees_with_the_elementwise_test(values):
    x = torch.tensor(values, dtype=torch.float32)
    assert all_finite(x) == bool(torch.isfinite(x).all())


def test_all_finite_survives_a_sum_that_overflows():
    x = torch.full((4,), 3e38)  # finite entries whose float32 sum is inf
    assert all_finite(x) and not bool(torch.isfinite(x.sum()))
    assert not all_finite(torch.tensor([1.0, float("nan")]))
    assert not all_finite(torch.tensor([float("inf"), -float("inf")]))
    assert all_finite(torch.tensor([1, 2]))  # integers are always finite
