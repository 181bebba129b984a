"""tutorlib: the tested helper library behind the course.

Every chapter of the book imports what it teaches from here. The modules:

- :mod:`tutorlib.core`: :func:`device`, :func:`seed_everything`;
- :mod:`tutorlib.style`: the book's matplotlib style (:func:`use_book_style`, :data:`COLORS`);
- :mod:`tutorlib.widgets`: :func:`interact`, a control whose every setting is rendered ahead
  of time, so it works on the static website without a kernel;
- :mod:`tutorlib.source`: :func:`show_source`, how a chapter shows the code it teaches;
- :mod:`tutorlib.checks`: :func:`check`, a printed claim that raises when it stops holding;
- one module per chapter topic, e.g. :mod:`tutorlib.neuron` ("Why neurons have a bias").
"""

from tutorlib.checks import ClaimError, check
from tutorlib.core import device, seed_everything
from tutorlib.source import show_source
from tutorlib.style import COLORS, use_book_style

__version__ = "0.1.0"

__all__ = [
    "COLORS",
    "ClaimError",
    "check",
    "device",
    "seed_everything",
    "show_source",
    "use_book_style",
]
