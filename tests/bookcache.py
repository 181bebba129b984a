"""The chapters of the book and the one cache of their executed notebooks.

Each chapter is executed **once** per change. ``pytest`` runs every chapter under nbval (the
test), and :func:`store_executed` puts the outputs of that run into the same jupyter-cache that
``jupyter-book build`` reads (``execute_notebooks: cache`` in ``_config.yml``). The build then
renders those outputs instead of executing the chapters again. A chapter the tests did not run
(or that failed) is simply executed by the build.

The cache is keyed by the code of each chapter. A chapter also depends on ``tutorlib`` and on
the pinned packages, which the key does not see; :func:`reset_if_stale` empties the cache when
they change, so stale outputs are never rendered.

Run as a script (``python tests/bookcache.py``) it does just that reset; the Makefile calls it
before every build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from myst_nb.core.read import read_myst_markdown_notebook

ROOT = Path(__file__).resolve().parents[1]
# BOOK_CACHE_DIR lets a second test run (e.g. of one new chapter) use its own cache.
CACHE_DIR = Path(os.environ.get("BOOK_CACHE_DIR", ROOT / "_build" / ".jupyter_cache")).resolve()
FINGERPRINT = CACHE_DIR.with_name(CACHE_DIR.name + ".fingerprint")


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """Every page listed in ``_toc.yml`` (root, chapters, sections), as ``.md`` paths."""
    entries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    entries.append(node[key])
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc.read_text(encoding="utf8")))
    return [ROOT / (e if e.endswith(".md") else e + ".md") for e in entries]


def is_notebook(md: Path) -> bool:
    """A page is an executable chapter when its front matter names a kernel."""
    return "kernelspec:" in md.read_text(encoding="utf8").split("\n---", 1)[0]


def chapters() -> list[Path]:
    """The executable chapters listed in ``_toc.yml``, in book order."""
    return [md for md in toc_files() if is_notebook(md)]


def read_chapter(md: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook, read exactly as the book build (myst-nb) reads it.

    Using myst-nb's own reader (jupytext's MyST format is the same format; jupytext is what
    Jupyter uses to open the file) guarantees that the cache key computed here equals the one
    the build computes.
    """
    return read_myst_markdown_notebook(md.read_text(encoding="utf8"), add_source_map=True, path=md)


def fingerprint() -> str:
    """A hash of everything outside a chapter's code that its outputs depend on."""
    digest = hashlib.sha256()
    files = [*sorted((ROOT / "src" / "tutorlib").rglob("*.py")), ROOT / "requirements.txt"]
    for path in files:
        if path.exists():
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def reset_if_stale() -> bool:
    """Empty the cache when tutorlib or the pinned requirements changed; True if it did."""
    current = fingerprint()
    stale = FINGERPRINT.exists() and FINGERPRINT.read_text().strip() != current
    if stale or not FINGERPRINT.exists():
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
    FINGERPRINT.parent.mkdir(parents=True, exist_ok=True)
    FINGERPRINT.write_text(current)
    return stale


def store_executed(
    md: Path, outputs: list[list[dict]], widget_state: dict | None, seconds: float
) -> None:
    """Put the executed chapter into the build's cache.

    Args:
        md: the chapter's source.
        outputs: one list of nbformat outputs per code cell, in order.
        widget_state: the kernel's ``Widget.get_manager_state()`` after the last cell.
        seconds: the execution time, shown on the execution-statistics page.
    """
    nb = read_chapter(md)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if len(code_cells) != len(outputs):
        raise ValueError(f"{md.name}: {len(code_cells)} code cells but {len(outputs)} outputs")
    for count, (cell, outs) in enumerate(zip(code_cells, outputs, strict=True), start=1):
        cell.outputs = [nbformat.from_dict(dict(o)) for o in outs]
        cell.execution_count = count
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = count
    if widget_state and widget_state.get("state"):
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": widget_state}
    cache = get_cache(str(CACHE_DIR))
    cache.cache_notebook_bundle(
        CacheBundleIn(nb, str(md), data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )


if __name__ == "__main__":
    if reset_if_stale():
        print("tutorlib or requirements changed: emptied the cache of executed chapters")
    sys.exit(0)
