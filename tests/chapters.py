"""pytest plugin: run every chapter listed in ``_toc.yml`` under nbval, once.

A chapter cannot escape CI: the list comes from ``_toc.yml`` itself. Each chapter (MyST
Markdown) is read as a notebook and handed to nbval's collector, so every code cell is a test
item that fails on an exception (``--nbval-lax``: outputs are not compared; the chapters check
their claims with ``tutorlib.check``). When all cells pass, the outputs are stored in the build's
cache (see ``bookcache.py``) so that ``jupyter-book build`` does not execute the chapter again.

Loaded with ``-p chapters`` (``pyproject.toml``). ``pytest book/<topic>.md`` runs one chapter,
even one not yet listed in ``_toc.yml``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

import bookcache
import pytest
from nbformat.v4 import new_code_cell
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

# Runs in the chapter's kernel after its last cell: the state of every live widget, which the
# static page needs to show widgets without a kernel.
WIDGET_STATE_CODE = """\
import json as _json, sys as _sys
if "ipywidgets" in _sys.modules:
    from ipywidgets import Widget as _Widget
    print(_json.dumps(_Widget.get_manager_state(drop_defaults=True)))
else:
    print("{}")
"""

_CHAPTERS: set[Path] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    # The outputs go to the website, which has no kernel: widgets pre-render every setting
    # (tutorlib.widgets' static mode). The chapters' kernels inherit this variable.
    os.environ.setdefault("TUTORLIB_WIDGETS", "static")
    bookcache.reset_if_stale()
    _CHAPTERS.update(bookcache.chapters())
    # A chapter named on the command line runs even before it is in _toc.yml (new chapters).
    for arg in session.config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path.suffix == ".md" and path.is_file() and bookcache.is_notebook(path):
            _CHAPTERS.add(path)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".md" and file_path.resolve() in _CHAPTERS:
        return ChapterNotebook.from_parent(parent, path=file_path)
    return None


class ChapterCell(IPyNbCell):
    """One code cell of a chapter; remembers whether it ran without error."""

    passed = False

    def runtest(self) -> None:
        super().runtest()
        self.passed = True


class ChapterNotebook(IPyNbFile):
    """A MyST chapter collected as nbval cells, plus a last item that reads the widget state."""

    def collect(self):  # mirrors nbval's IPyNbFile.collect, reading MyST instead of .ipynb
        self.nb = bookcache.read_chapter(self.path)
        self.nb.cells.append(new_code_cell(WIDGET_STATE_CODE))
        self.items: list[ChapterCell] = []
        self.started = time.perf_counter()
        code_cells = [c for c in self.nb.cells if c.cell_type == "code"]
        for cell_num, cell in enumerate(code_cells):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                options = defaultdict(bool, find_metadata_tags(cell.metadata))
                options.update(dict(find_comment_markers(cell.source)))
            options.setdefault("check", self.compare_outputs)
            last = cell_num == len(code_cells) - 1
            name = "widget state" if last else f"Cell {cell_num}"
            item = ChapterCell.from_parent(self, name=name, cell_num=cell_num, cell=cell,
                                           options=options)
            self.items.append(item)
            yield item

    def setup(self) -> None:
        super().setup()
        self.started = time.perf_counter()

    def teardown(self) -> None:
        seconds = time.perf_counter() - self.started
        super().teardown()
        if self.items and all(item.passed for item in self.items):
            *cells, state_item = self.items
            text = "".join(o.get("text", "") for o in state_item.test_outputs or [])
            bookcache.store_executed(
                self.path,
                [list(item.test_outputs or []) for item in cells],
                json.loads(text or "{}"),
                seconds,
            )
