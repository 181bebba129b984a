"""Time every code cell of a chapter: `.venv/bin/python tests/profile_chapter.py book/<topic>.md`.

Executes the chapter in a fresh kernel (as nbval does, from the `book/` folder) and prints the
total and the slowest cells, so that a chapter over its budget can be cut where it matters.
"""

from __future__ import annotations

import argparse
import os
import time

import jupytext
from nbclient import NotebookClient


def profile(path: str, top: int) -> None:
    nb = jupytext.read(path, fmt="md:myst")
    os.environ.setdefault("TUTORLIB_WIDGETS", "static")  # as when the book is built
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "book"}})
    times: list[tuple[float, int, str]] = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            client.execute_cell(cell, index)
            first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            times.append((time.perf_counter() - start, index, first_line[:80]))
    print(f"{path}: {sum(t for t, _, _ in times):.1f} s in {len(times)} code cells")
    for seconds, index, line in sorted(times, reverse=True)[:top]:
        print(f"{seconds:7.1f} s  cell {index:3d}  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="a chapter, e.g. book/diffusion.md")
    parser.add_argument("--top", type=int, default=10, help="how many of the slowest cells to list")
    args = parser.parse_args()
    profile(args.chapter, args.top)
