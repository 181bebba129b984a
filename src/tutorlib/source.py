"""Show the code a chapter teaches, straight from tutorlib, so the book never keeps a copy."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

from IPython.display import Markdown

__all__ = [
    "show_source",
]

_PACKAGE_ROOT = Path(__file__).resolve().parent


def show_source(obj: object, *, docstring: bool = True) -> Markdown:
    """Display the source of a tutorlib function or class as a highlighted code block.

    In a notebook, on the website and on Colab alike the reader sees the code that actually
    runs, with the file and line numbers it comes from.

    Args:
        obj: a function, class or method defined in ``tutorlib``.
        docstring: keep the docstring (default) or drop it to show only the code.

    Returns:
        An ``IPython.display.Markdown`` object; make it the last expression of a cell.

    Raises:
        TypeError: ``obj`` is not a function or class, or is not defined in ``tutorlib``.
    """
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        raise TypeError(
            f"show_source expects a function or class from tutorlib, got {type(obj).__name__}"
        )
    if inspect.isfunction(obj):  # a decorated function (``@torch.no_grad()``): show the code under it
        obj = inspect.unwrap(obj)
    path = Path(inspect.getsourcefile(obj) or "").resolve()
    if _PACKAGE_ROOT not in path.parents:
        raise TypeError(
            f"show_source only shows tutorlib code; {obj.__qualname__} is defined in {path}"
        )
    lines, first = inspect.getsourcelines(obj)
    code = textwrap.dedent("".join(lines))
    if not docstring:
        code = _drop_docstring(code, obj)
    relative = path.relative_to(_PACKAGE_ROOT.parent).as_posix()
    header = f"`{relative}`, lines {first}–{first + len(lines) - 1}"
    return Markdown(f"{header}\n\n```python\n{code.rstrip()}\n```")


def _drop_docstring(code: str, obj: object) -> str:
    doc = inspect.getdoc(obj)
    if not doc:
        return code
    start = code.find('"""')
    end = code.find('"""', start + 3)
    if start == -1 or end == -1:
        return code
    line_start = code.rfind("\n", 0, start) + 1
    line_end = code.find("\n", end)
    return code[:line_start] + code[line_end + 1 :]
