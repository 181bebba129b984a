"""tutorlib.widgets: static mode (every setting rendered, linked in the browser), live mode
(drawn on demand, ipywidgets 7 and 8), clear errors."""

import time

import ipywidgets as w
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from tutorlib import widgets
from tutorlib.widgets import figure_to_png, interact, render_settings, widget_mode


@pytest.fixture(autouse=True)
def static_mode(monkeypatch):
    """Most tests here are of the static widget the website shows; live tests override this."""
    monkeypatch.setenv("TUTORLIB_WIDGETS", "static")


@pytest.fixture
def live_mode(monkeypatch):
    monkeypatch.setenv("TUTORLIB_WIDGETS", "live")


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


# ------------------------------------------------------------------------------------------------
# live mode: a kernel (Jupyter, Colab)
# ------------------------------------------------------------------------------------------------
def _spy(calls):
    def spy(a, b=0.0):
        calls.append((a, b))
        return draw(a, b)

    return spy


def test_mode_is_live_unless_static_is_asked_for(monkeypatch):
    monkeypatch.delenv("TUTORLIB_WIDGETS")
    assert widget_mode() == "live"
    monkeypatch.setenv("TUTORLIB_WIDGETS", " Static ")
    assert widget_mode() == "static"
    monkeypatch.setenv("TUTORLIB_WIDGETS", "")
    assert widget_mode() == "live"
    monkeypatch.setenv("TUTORLIB_WIDGETS", "prerender")
    with pytest.raises(ValueError, match=r"TUTORLIB_WIDGETS must be one of.*'prerender'"):
        interact(draw, a=[1])


def test_live_widget_draws_only_the_initial_setting_at_first(live_mode):
    calls = []
    box = interact(_spy(calls), a=[1, 2, 3], b=[0.0, 1.0], initial={"a": 2, "b": 1.0})
    assert calls == [(2, 1.0)]
    slider_a, slider_b, status, image = box.children
    assert isinstance(image, w.Image) and status.value == ""
    assert (slider_a.index, slider_b.index) == (1, 1)
    assert image.value == render_settings(draw, {"a": [2], "b": [1.0]})[(0, 0)]
    assert not any(isinstance(child, getattr(w, "Stack", ())) for child in box.children)


def test_live_widget_draws_a_new_setting_once_and_then_reuses_it(live_mode):
    calls = []
    box = interact(_spy(calls), a=[1, 2, 3], b=[0.0, 1.0])
    slider_a, slider_b, _, image = box.children
    first = image.value
    slider_a.index = 2  # a = 3
    assert calls[-1] == (3, 0.0)
    assert image.value == render_settings(draw, {"a": [3], "b": [0.0]})[(0, 0)]
    slider_b.index = 1
    assert calls[-1] == (3, 1.0)
    slider_a.index = 0
    slider_b.index = 0  # back to the first setting: cached, not drawn again
    assert image.value == first
    assert calls.count((1, 0.0)) == 1
    assert len(calls) == len(set(calls)) == 4  # (1,0) (3,0) (3,1) (1,1)


def test_live_widget_shows_its_first_figure_at_once_however_many_settings(live_mode):
    """48 settings of 50 ms each would take 2.4 s to pre-render; live mode draws one."""

    def slow(a, b):
        time.sleep(0.05)
        return draw(a, b)

    started = time.perf_counter()
    interact(slow, a=list(range(8)), b=list(range(6)))
    assert time.perf_counter() - started < 1.0


def test_live_widget_shows_the_error_of_a_setting_that_raises_and_keeps_working(live_mode):
    def fragile(a):
        if a == 2:
            raise ZeroDivisionError("boom")
        return draw(a)

    box = interact(fragile, a=[1, 2, 3])
    slider, status, image = box.children
    before = image.value
    slider.index = 1
    assert "ZeroDivisionError: boom" in status.value and "{'a': 2}" in status.value
    assert image.value == before
    slider.index = 2
    assert status.value == "" and image.value != before


def test_live_widget_raises_when_the_initial_setting_raises(live_mode):
    def fragile(a):
        raise ValueError("bad a")

    with pytest.raises(ValueError, match="bad a") as info:
        interact(fragile, a=[1, 2])
    assert any("{'a': 1}" in note for note in info.value.__notes__)


def test_live_widget_checks_arguments_like_the_static_one(live_mode):
    with pytest.raises(ValueError, match="exceed max_settings=4"):
        interact(draw, a=[1, 2, 3], b=[0, 1], max_settings=4)
    with pytest.raises(ValueError, match="initial value 7"):
        interact(draw, a=[1, 2], initial={"a": 7})


def test_static_mode_without_stack_falls_back_to_live_with_a_warning(monkeypatch):
    """ipywidgets 7 (Colab) has no Stack: the widget is drawn on demand instead."""
    monkeypatch.delattr(widgets.w, "Stack", raising=False)
    with pytest.warns(UserWarning, match="needs ipywidgets>=8"):
        box = interact(draw, a=[1, 2])
    assert isinstance(box.children[-1], w.Image)
