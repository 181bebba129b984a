"""Widgets that work in every place a chapter is read: the static website, Jupyter and Colab.

:func:`interact` has two ways to turn slider positions into figures, one per place:

**Static (the website).** A static page cannot call Python when a slider moves. So the drawing
function is called for *every* setting of the controls ahead of time, each figure is stored as a
PNG in an ``ipywidgets.Stack``, and each slider is linked to the stack's ``selected_index`` with
``ipywidgets.jslink``. The link lives in the browser: the page switches images with no kernel.
Because every setting is rendered when the book is built, a setting that raises makes the build
fail: the build is a test of every slider position. With two or more controls the stacks are
nested: the outer stack follows the first slider, each of its children is a stack that follows
the second, and so on (``jslink`` can only copy one value to another).

**Live (a kernel: Jupyter, Colab, VS Code).** A reader should see the first figure at once, not
after every setting has been drawn, and Colab renders ipywidgets **7**, which has no ``Stack``.
So the figure is drawn on demand: the first setting when the widget is made, then the setting a
slider moves to, each drawn once and cached. This uses only ``SelectionSlider``, ``Image`` and
``observe``, which ipywidgets 7 and 8 share.

The mode comes from the environment variable ``TUTORLIB_WIDGETS``: ``static`` when the book is
built (the Makefile and the test plugin set it), anything else or unset means ``live``. Static
mode needs ipywidgets 8; with ipywidgets 7 it falls back to live mode with a warning.
"""

from __future__ import annotations

import html
import inspect
import io
import itertools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as w
import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["draw_setting", "figure_to_png", "interact", "render_settings", "widget_mode"]

#: Settings rendered at most by one call, to keep pages light (each PNG is ~20–60 kB).
MAX_SETTINGS = 256
#: Resolution of the pre-rendered images: lower than the book's figures, since a widget
#: embeds one PNG per setting in the page.
WIDGET_DPI = 80
#: The environment variable that selects the mode, and its values.
MODE_VARIABLE = "TUTORLIB_WIDGETS"
MODES = ("static", "live")


def widget_mode() -> str:
    """``"static"`` (every setting pre-rendered, for the website) or ``"live"`` (drawn on demand).

    Read from ``TUTORLIB_WIDGETS`` each call: ``static`` selects static mode; unset or empty
    selects live mode. Static mode needs ``ipywidgets.Stack`` (ipywidgets 8); without it this
    warns and returns ``"live"``.

    Raises:
        ValueError: ``TUTORLIB_WIDGETS`` holds something other than ``static`` or ``live``.
    """
    mode = os.environ.get(MODE_VARIABLE, "").strip().lower() or "live"
    if mode not in MODES:
        raise ValueError(f"{MODE_VARIABLE} must be one of {MODES} (or unset), got {mode!r}")
    if mode == "static" and not hasattr(w, "Stack"):
        warnings.warn(
            f"{MODE_VARIABLE}=static needs ipywidgets>=8 (ipywidgets.Stack); this kernel has "
            f"ipywidgets {w.__version__}, so widgets are drawn on demand instead",
            stacklevel=2,
        )
        return "live"
    return mode


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check_params(draw: Callable[..., Figure], params: Mapping[str, Sequence[object]]) -> None:
    if not callable(draw):
        raise TypeError(f"draw must be a function returning a matplotlib Figure, got {draw!r}")
    if not params:
        raise ValueError("interact needs at least one parameter, e.g. interact(draw, b=[-1, 0, 1])")
    signature = inspect.signature(draw)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    known = [n for n, p in signature.parameters.items() if p.kind is not p.VAR_KEYWORD]
    for name, values in params.items():
        if not accepts_any and name not in known:
            raise ValueError(
                f"unknown parameter {name!r}: {getattr(draw, '__name__', 'draw')} accepts {known}"
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise TypeError(
                f"values of {name!r} must be a list or tuple of settings, got {type(values).__name__}"
            )
        if len(values) == 0:
            raise ValueError(f"parameter {name!r} has an empty list of values; give at least one")
    missing = [
        n
        for n, p in signature.parameters.items()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in params
    ]
    if missing:
        raise ValueError(f"draw needs values for {missing}; pass them as lists to interact")


def figure_to_png(fig: Figure, dpi: float = WIDGET_DPI) -> bytes:
    """Encode a matplotlib figure as optimised PNG bytes and close it (so it is not shown twice)."""
    if not isinstance(fig, Figure):
        raise TypeError(f"draw must return a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    # The book style lays figures out with constrained layout, so the slow "tight" bounding-box
    # pass of savefig is not needed: a fixed canvas renders about 3x faster.
    with mpl.rc_context({"savefig.bbox": "standard"}):
        fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"optimize": True})
    plt.close(fig)
    return buffer.getvalue()


def render_settings(
    draw: Callable[..., Figure],
    params: Mapping[str, Sequence[object]],
    max_settings: int = MAX_SETTINGS,
    dpi: float = WIDGET_DPI,
) -> dict[tuple[int, ...], bytes]:
    """Call ``draw`` for every combination of parameter values; return PNGs by index tuple.

    Args:
        draw: ``draw(**setting) -> Figure``.
        params: parameter name -> the list of values it takes, in slider order.
        max_settings: refuse grids larger than this (their pages would be heavy).
        dpi: resolution of each image.

    Returns:
        ``{(i_1, ..., i_k): png_bytes}`` where ``i_j`` indexes the values of the j-th parameter.

    Raises:
        TypeError, ValueError: bad ``draw`` or ``params`` (see :func:`interact`).
    """
    _check_params(draw, params)
    _check_size(params, max_settings)
    names = list(params)
    sizes = [len(params[n]) for n in names]
    pngs = {}
    for index in itertools.product(*(range(s) for s in sizes)):
        setting = {n: params[n][i] for n, i in zip(names, index, strict=True)}
        pngs[index] = draw_setting(draw, setting, dpi)
    return pngs


def draw_setting(draw: Callable[..., Figure], setting: Mapping[str, object], dpi: float) -> bytes:
    """``draw(**setting)`` as PNG bytes; an error raised by ``draw`` gets a note naming the setting."""
    try:
        fig = draw(**setting)
    except Exception as error:
        note = f"tutorlib.widgets: raised while drawing the setting {dict(setting)}"
        if hasattr(error, "add_note"):  # Python >= 3.11
            error.add_note(note)
        else:  # pragma: no cover - Python 3.10
            error.__notes__ = [*getattr(error, "__notes__", []), note]
        raise
    return figure_to_png(fig, dpi)


def interact(
    draw: Callable[..., Figure],
    *,
    initial: Mapping[str, object] | None = None,
    max_settings: int = MAX_SETTINGS,
    dpi: float = WIDGET_DPI,
    **params: Sequence[object],
) -> w.VBox:
    """Sliders plus the figure they select, on the static website and in a live kernel.

    In static mode (``TUTORLIB_WIDGETS=static``, set when the book is built) every setting is
    rendered ahead of time, so the widget works on the website with no kernel. In live mode (the
    default: Jupyter, Colab) the first setting is drawn at once and each other setting when a
    slider first moves there; drawings are cached. See the module docstring.

    Example::

        def draw(w, b):
            fig, ax = plt.subplots()
            ...
            return fig

        interact(draw, w=[-2, -1, 0, 1, 2], b=[-1.0, 0.0, 1.0])

    Args:
        draw: a function of the parameters that returns a new matplotlib ``Figure``.
        initial: the setting shown first, ``{name: value}``; default: the first value of each.
        max_settings: the largest number of combinations to render.
        dpi: resolution of each pre-rendered image.
        **params: one list of values per parameter; each becomes a slider. (``initial``,
            ``max_settings`` and ``dpi`` are this function's own arguments, so a drawing
            function cannot use them as parameter names.)

    Returns:
        An ``ipywidgets.VBox``: one ``SelectionSlider`` per parameter above the figure (static:
        nested ``Stack``s of ``Image``s; live: an error line, empty unless a setting raised, and
        one ``Image``).

    Raises:
        TypeError: ``draw`` is not callable or returns something other than a Figure, or a
            parameter's values are not a list/tuple.
        ValueError: no parameters, an unknown parameter name, an empty list of values, a
            parameter of ``draw`` without values, an ``initial`` value not in its list, or more
            than ``max_settings`` combinations.
    """
    _check_params(draw, params)
    _check_size(params, max_settings)
    start = _initial_index(params, initial or {})
    sliders = _sliders(params, start)
    if widget_mode() == "static":
        return _static_widget(draw, params, sliders, start, max_settings, dpi)
    return _live_widget(draw, params, sliders, dpi)


def _sliders(params: Mapping[str, Sequence[object]], start: list[int]) -> list[w.SelectionSlider]:
    """One ``SelectionSlider`` per parameter; its ``index`` is the position in the value list."""
    label_width = f"{max(len(n) for n in params) + 1}ch"  # align the sliders of one widget
    return [
        w.SelectionSlider(
            options=[(_label(v), i) for i, v in enumerate(values)],
            index=start[j],
            description=name,
            continuous_update=True,
            style={"description_width": label_width},
            layout=w.Layout(width="min(100%, 420px)"),
        )
        for j, (name, values) in enumerate(params.items())
    ]


def _static_widget(
    draw: Callable[..., Figure],
    params: Mapping[str, Sequence[object]],
    sliders: list[w.SelectionSlider],
    start: list[int],
    max_settings: int,
    dpi: float,
) -> w.VBox:
    """Every setting pre-rendered into nested ``Stack``s, switched in the browser by ``jslink``."""
    pngs = render_settings(draw, params, max_settings, dpi)
    names = list(params)
    stacks_at_level: list[list[w.Stack]] = [[] for _ in names]

    def build(prefix: tuple[int, ...]) -> w.Widget:
        level = len(prefix)
        if level == len(names):
            return w.Image(value=pngs[prefix], format="png", layout=_image_layout())
        children = [build((*prefix, i)) for i in range(len(params[names[level]]))]
        stack = w.Stack(children, selected_index=start[level])
        stacks_at_level[level].append(stack)
        return stack

    figure = build(())
    links = [
        w.jslink((slider, "index"), (stack, "selected_index"))
        for slider, stacks in zip(sliders, stacks_at_level, strict=True)
        for stack in stacks
    ]
    box = w.VBox([*sliders, figure])
    box._tutorlib_links = links  # keep the links alive as long as the widget
    return box


def _live_widget(
    draw: Callable[..., Figure],
    params: Mapping[str, Sequence[object]],
    sliders: list[w.SelectionSlider],
    dpi: float,
) -> w.VBox:
    """The figure of the sliders' setting, drawn when a slider moves there first, then cached.

    A setting that raises shows its error under the sliders instead of a figure (an exception in
    a widget callback would otherwise only reach the kernel's log).
    """
    names = list(params)
    cache: dict[tuple[int, ...], bytes] = {}

    def png_at(index: tuple[int, ...]) -> bytes:
        if index not in cache:
            setting = {n: params[n][i] for n, i in zip(names, index, strict=True)}
            cache[index] = draw_setting(draw, setting, dpi)
        return cache[index]

    # The first figure at once; a setting that raises here raises, as in static mode.
    image = w.Image(value=png_at(tuple(s.index for s in sliders)), format="png", layout=_image_layout())
    status = w.HTML(value="")

    def show(_change: object = None) -> None:
        try:
            image.value = png_at(tuple(slider.index for slider in sliders))
            status.value = ""
        except Exception as error:
            status.value = (
                f"<pre style='color:#b00'>{type(error).__name__}: {html.escape(str(error), quote=False)}\n"
                f"{html.escape(' '.join(getattr(error, '__notes__', [])), quote=False)}</pre>"
            )

    for slider in sliders:
        slider.observe(show, names="index")
    box = w.VBox([*sliders, status, image])
    box._tutorlib_cache = cache  # the PNGs drawn so far, by index tuple
    return box


def _image_layout() -> w.Layout:
    return w.Layout(max_width="100%", height="auto")


def _check_size(params: Mapping[str, Sequence[object]], max_settings: int) -> None:
    sizes = [len(values) for values in params.values()]
    total = math.prod(sizes)
    if total > max_settings:
        raise ValueError(
            f"{' × '.join(map(str, sizes))} = {total} settings exceed max_settings={max_settings}; "
            "use fewer values per parameter"
        )


def _initial_index(
    params: Mapping[str, Sequence[object]], initial: Mapping[str, object]
) -> list[int]:
    unknown = set(initial) - set(params)
    if unknown:
        raise ValueError(f"initial names unknown parameters {sorted(unknown)}; known: {list(params)}")
    start = []
    for name, values in params.items():
        if name not in initial:
            start.append(0)
            continue
        try:
            start.append(list(values).index(initial[name]))
        except ValueError:
            raise ValueError(
                f"initial value {initial[name]!r} for {name!r} is not one of its values {list(values)}"
            ) from None
    return start
