"""One look for every figure in the book.

Call :func:`use_book_style` once at the top of a chapter. Colours come from the Okabe–Ito
palette, which stays distinguishable for readers with colour-vision deficiencies; use them by
role through :data:`COLORS` so that, across chapters, "with bias" and "without bias", "data" and
"model" keep their colours.
"""

from __future__ import annotations

import matplotlib as mpl
from cycler import cycler

__all__ = [
    "BOOK_RC",
    "COLORS",
    "use_book_style",
]

#: Colours by role (Okabe & Ito 2008, "Color Universal Design").
COLORS: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "red": "#D55E00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#7F7F7F",
    # roles
    "with": "#0072B2",  # the model with the feature under study (e.g. with a bias)
    "without": "#D55E00",  # the same model without it
    "data": "#7F7F7F",
    "class0": "#E69F00",
    "class1": "#56B4E9",
}

_CYCLE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000"]

BOOK_RC: dict[str, object] = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.prop_cycle": cycler(color=_CYCLE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style (sizes, palette, grid) to every later figure."""
    mpl.rcParams.update(BOOK_RC)
