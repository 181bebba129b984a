"""tutorlib.widgets: every setting rendered, linked in the browser, clear errors."""

import ipywidgets as w
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from tutorlib.widgets import figure_to_png, interact, render_settings


def draw(a, b=0.0):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [a, b])
    ax.set_title(f"{a} {b}")
    return fig


def test_render_settings_draws_every_combination_once():
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return draw(a, b)

    pngs = render_settings(spy, {"a": [1, 2, 3], "b": [0.5, 1.5]})
    assert sorted(calls) == sorted((a, b) for a in [1, 2, 3] for b in [0.5, 1.5])
    assert set(pngs) == {(i, j) for i in range(3) for j in range(2)}
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())
    assert len(set(pngs.values())) == 6  # different settings give different images
    assert plt.get_fignums() == []  # figures are closed, not leaked


def _links(box):
    return box._tutorlib_links


def test_interact_links_each_slider_to_the_stacks_of_its_level():
    box = interact(draw, a=[1, 2, 3], b=[0.0, 1.0])
    slider_a, slider_b, outer = box.children
    assert isinstance(slider_a, w.SelectionSlider) and slider_a.description == "a"
    assert isinstance(outer, w.Stack) and len(outer.children) == 3
    assert all(isinstance(s, w.Stack) and len(s.children) == 2 for s in outer.children)
    assert all(isinstance(img, w.Image) for s in outer.children for img in s.children)
    links = _links(box)
    assert len(links) == 1 + 3  # slider a -> outer stack; slider b -> each inner stack
    sources = [link.source for link in links]
    assert sources.count((slider_a, "index")) == 1
    assert sources.count((slider_b, "index")) == 3
    assert {link.target[1] for link in links} == {"selected_index"}


def test_interact_image_at_index_is_the_drawing_of_that_setting():
    box = interact(draw, a=[1, 2], b=[0.0, 5.0])
    expected = render_settings(draw, {"a": [1, 2], "b": [0.0, 5.0]})
    outer = box.children[-1]
    assert outer.children[1].children[0].value == expected[(1, 0)]


def test_initial_setting_selects_the_start_image():
    box = interact(draw, a=[1, 2, 3], b=[0.0, 1.0], initial={"a": 3, "b": 1.0})
    slider_a, slider_b, outer = box.children
    assert slider_a.index == 2 and slider_b.index == 1
    assert outer.selected_index == 2
    assert all(inner.selected_index == 1 for inner in outer.children)


def test_empty_values_are_refused():
    with pytest.raises(ValueError, match="'a' has an empty list of values"):
        interact(draw, a=[])


def test_unknown_parameter_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown parameter 'c': draw accepts \['a', 'b'\]"):
        interact(draw, a=[1], c=[1])


def test_missing_required_parameter_is_refused():
    with pytest.raises(ValueError, match=r"needs values for \['a'\]"):
        interact(draw, b=[1.0])


def test_no_parameters_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="at least one parameter"):
        interact(draw)
    with pytest.raises(TypeError, match="must be a list or tuple"):
        interact(draw, a="123")
    with pytest.raises(TypeError, match="must be a function"):
        interact(42, a=[1])


def test_bad_initial_values_are_refused():
    with pytest.raises(ValueError, match="initial value 7 for 'a' is not one of"):
        interact(draw, a=[1, 2], initial={"a": 7})
    with pytest.raises(ValueError, match="initial names unknown parameters"):
        interact(draw, a=[1, 2], initial={"z": 1})


def test_too_many_settings_are_refused():
    with pytest.raises(ValueError, match="exceed max_settings=4"):
        interact(draw, a=[1, 2, 3], b=[0, 1], max_settings=4)


def test_a_setting_that_raises_fails_and_names_the_setting():
    def fragile(a):
        if a == 2:
            raise ZeroDivisionError("boom")
        return draw(a)

    with pytest.raises(ZeroDivisionError, match="boom") as info:
        interact(fragile, a=[1, 2])
    assert any("{'a': 2}" in note for note in info.value.__notes__)


def test_draw_must_return_a_figure():
    with pytest.raises(TypeError, match="must return a matplotlib Figure, got int"):
        interact(lambda a: 1, a=[1])
    with pytest.raises(TypeError):
        figure_to_png("not a figure")
