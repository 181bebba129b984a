"""tutorlib's core: device, seeding, claims, showing source, the book style."""

import matplotlib as mpl
import numpy as np
import pytest
import torch

import tutorlib
from tutorlib import ClaimError, check, show_source
from tutorlib.neuron import neuron


def test_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tutorlib.device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tutorlib.device() == torch.device("cuda")  # constructing the device needs no GPU
    monkeypatch.undo()
    assert torch.ones(2, device=tutorlib.device()).sum().item() == 2  # the real one works


def test_seed_everything_makes_runs_repeat():
    def draw():
        g = tutorlib.seed_everything(123)
        legacy = np.random.rand(3)  # noqa: NPY002 -- the global RNG that seed_everything seeds
        return (legacy, torch.rand(3), torch.rand(3, generator=g))

    first, second = draw(), draw()
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert torch.equal(first[2], second[2])
    tutorlib.seed_everything(124)
    assert not torch.equal(torch.rand(3), second[1])


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_a_value_error(seed):
    with pytest.raises(ValueError, match="seed must be in"):
        tutorlib.seed_everything(seed)


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_seed_of_wrong_type_is_a_type_error(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        tutorlib.seed_everything(seed)


def test_check_prints_the_claim_with_its_numbers(capsys):
    check("two is more than one", 2 > 1, two=2, ratio=0.123456)
    out = capsys.readouterr().out
    assert "✔ two is more than one" in out
    assert "two=2" in out and "ratio=0.1235" in out


def test_check_raises_when_the_claim_is_false():
    with pytest.raises(ClaimError, match=r"one is more than two.*a=1"):
        check("one is more than two", 1 > 2, a=1)


def test_check_accepts_numpy_and_tensor_booleans(capsys):
    check("numpy", np.bool_(True))
    check("tensor", torch.tensor(True))
    with pytest.raises(ClaimError):
        check("tensor false", torch.tensor(1.0) > 2)


@pytest.mark.parametrize("ok", [1, 0.0, "yes", torch.tensor([True, False]), torch.tensor(1.0)])
def test_check_refuses_non_booleans(ok):
    with pytest.raises(TypeError, match="ok must be"):
        check("a claim", ok)


def test_check_needs_a_claim():
    with pytest.raises(TypeError, match="claim must be a non-empty string"):
        check("", True)


def test_show_source_shows_the_real_code_with_its_location():
    md = show_source(neuron).data
    assert "`tutorlib/neuron.py`, lines" in md
    assert "def neuron(x" in md and "```python" in md
    assert "Returns:" in md  # docstring kept by default
    assert "Returns:" not in show_source(neuron, docstring=False).data
    assert "return (x @ w + b > 0)" in show_source(neuron, docstring=False).data


def test_show_source_sees_through_a_decorator():
    from tutorlib import gan

    md = show_source(gan.clip_weights, docstring=False).data  # wrapped by @torch.no_grad()
    assert "`tutorlib/gan.py`, lines" in md and "def clip_weights(" in md


def test_show_source_refuses_code_outside_tutorlib_and_non_functions():
    with pytest.raises(TypeError, match="only shows tutorlib code"):
        show_source(pytest.raises)
    with pytest.raises(TypeError, match="expects a function or class"):
        show_source(42)


def test_book_style_sets_the_palette():
    with mpl.rc_context():
        tutorlib.use_book_style()
        assert mpl.rcParams["axes.spines.top"] is False
        first = mpl.rcParams["axes.prop_cycle"].by_key()["color"][0]
        assert first.lower() == tutorlib.COLORS["blue"].lower()
