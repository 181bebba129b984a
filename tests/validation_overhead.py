"""Share of a chapter's time spent in argument checks.

Usage: `.venv/bin/python tests/validation_overhead.py book/<topic>.md ...`.

Issue 18 asks that the argument checks make no chapter more than 5% slower. Timing a chapter
before and after is noisy on a shared 2-core machine (±10% between runs), so this measures the
checks directly: it runs the chapter's code cells in one IPython shell under ``cProfile`` and
reports the time spent inside ``tutorlib.validation`` and inside the modules' private
``_check*`` helpers, as a share of the whole run. cProfile charges each Python call a fixed
overhead, and the checks are many small Python calls, so the share it reports is an upper
bound on the share without the profiler.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import jupytext


def _is_check(filename: str, name: str) -> bool:
    if "tutorlib" not in filename:
        return False
    return filename.endswith("validation.py") or name.startswith(("_check", "check_"))


def overhead(path: str) -> tuple[float, float]:
    """(total seconds, seconds inside argument checks) for one chapter, profiled."""
    from IPython.core.interactiveshell import InteractiveShell

    os.environ.setdefault("TUTORLIB_WIDGETS", "static")
    os.environ.setdefault("MPLBACKEND", "Agg")
    notebook = jupytext.read(path, fmt="md:myst")
    cwd = os.getcwd()
    os.chdir(Path(path).parent)  # chapters run from book/, as under nbval
    shell = InteractiveShell.instance()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    try:
        for cell in notebook.cells:
            if cell.cell_type == "code":
                profiler.enable()
                result = shell.run_cell(cell.source, silent=True)
                profiler.disable()
                if not result.success:
                    raise RuntimeError(f"{path}: a cell failed: {cell.source[:200]}")
    finally:
        os.chdir(cwd)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    # The cumulative time of each outermost check (one called from outside the checks), taken
    # per caller, so nested checks are not counted twice.
    checks = 0.0
    for (filename, _, name), (_, _, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not _is_check(filename, name):
            continue
        outer_calls = {c: v for c, v in callers.items() if not _is_check(c[0], c[2])}
        if outer_calls:  # share of cumtime that came from non-check callers
            checks += sum(v[3] for v in outer_calls.values())
    return total, checks


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+")
    args = parser.parse_args()
    for chapter in args.chapters:
        total, checks = overhead(chapter)
        print(f"{chapter}: {total:.1f} s profiled, {checks:.2f} s in argument checks "
              f"({100 * checks / total:.2f}%)", flush=True)
        sys.stdout.flush()
