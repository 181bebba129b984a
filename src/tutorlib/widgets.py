"""Widgets that work on the static website, where no Python kernel runs.

A static page cannot call Python when a slider moves. So :func:`interact` calls the drawing
function for *every* setting of the controls ahead of time, stores each figure as a PNG in an
``ipywidgets.Stack`` and links each slider to the stack's ``selected_index`` with
``ipywidgets.jslink``. The link lives in the browser: the page switches images with no kernel.
In Jupyter the same widget works unchanged.

Because every setting is rendered when the book is built, a setting that raises makes the
build fail: the build is a test of every slider position.

With two or more controls the stacks are nested: the outer stack follows the first slider and
each of its children is a stack that follows the second, and so on. ``jslink`` can only copy
one value to another, so nesting is how a combination of sliders picks one image.
"""

from __future__ import annotations

import inspect
import io
import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as w
import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: Settings rendered at most by one call, to keep pages light (each PNG is ~20–60 kB).
MAX_SETTINGS = 256
#: Resolution of the pre-rendered images: lower than the book's figures, since a widget
#: embeds one PNG per setting in the page.
WIDGET_DPI = 80


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
    names = list(params)
    sizes = [len(params[n]) for n in names]
    total = math.prod(sizes)
    if total > max_settings:
        raise ValueError(
            f"{' × '.join(map(str, sizes))} = {total} settings exceed max_settings={max_settings}; "
            "use fewer values per parameter"
        )
    pngs = {}
    for index in itertools.product(*(range(s) for s in sizes)):
        setting = {n: params[n][i] for n, i in zip(names, index, strict=True)}
        try:
            fig = draw(**setting)
        except Exception as error:
            error.add_note(f"tutorlib.widgets: raised while drawing the setting {setting}")
            raise
        pngs[index] = figure_to_png(fig, dpi)
    return pngs


def interact(
    draw: Callable[..., Figure],
    *,
    initial: Mapping[str, object] | None = None,
    max_settings: int = MAX_SETTINGS,
    dpi: float = WIDGET_DPI,
    **params: Sequence[object],
) -> w.VBox:
    """Sliders plus the figure they select, rendered ahead of time so they work without a kernel.

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
        An ``ipywidgets.VBox``: one ``SelectionSlider`` per parameter above the figure.

    Raises:
        TypeError: ``draw`` is not callable or returns something other than a Figure, or a
            parameter's values are not a list/tuple.
        ValueError: no parameters, an unknown parameter name, an empty list of values, a
            parameter of ``draw`` without values, an ``initial`` value not in its list, or more
            than ``max_settings`` combinations.
    """
    pngs = render_settings(draw, params, max_settings, dpi)
    names = list(params)
    start = _initial_index(params, initial or {})

    label_width = f"{max(len(n) for n in names) + 1}ch"  # align the sliders of one widget
    sliders = [
        w.SelectionSlider(
            options=[(_label(v), i) for i, v in enumerate(params[n])],
            index=start[j],
            description=n,
            continuous_update=True,
            style={"description_width": label_width},
            layout=w.Layout(width="min(100%, 420px)"),
        )
        for j, n in enumerate(names)
    ]
    stacks_at_level: list[list[w.Stack]] = [[] for _ in names]

    def build(prefix: tuple[int, ...]) -> w.Widget:
        level = len(prefix)
        if level == len(names):
            return w.Image(
                value=pngs[prefix],
                format="png",
                layout=w.Layout(max_width="100%", height="auto"),
            )
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
