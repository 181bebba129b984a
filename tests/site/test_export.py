"""The exported notebooks run where a learner opens them: on Colab and in a bare Jupyter.

Each chapter's exported notebook (``_build/html/notebooks/<chapter>.ipynb``, the site's
*Download* and *Open in Colab* files) is run top to bottom through its own first cell, which
installs tutorlib (here from this checkout, through ``TUTORLIB_SPEC``):

- in a **Colab-like** environment (``notebook_envs.colab_env``): the whole notebook runs, no
  package Colab preloads changes version, its widgets are in the outputs (drawn on demand with
  Colab's ipywidgets 7.7.1), and the first cell says what it installed;
- in a **bare** environment (torch and a kernel only): the first cell installs everything the
  chapter imports. Every import of the chapter runs after it; the full chapters run under nbval
  and in the Colab-like environment already, so here only ``bias`` runs to the end (the
  difference a bare environment makes is what gets installed, and the imports show that).

Times per chapter and environment go to ``_build/notebook-runs.json``. ``make test`` runs this
file in the background while nbval executes the chapters (two streams for two cores), on the
notebooks ``site/_ext/course_site.py`` exports (``COURSE_NOTEBOOKS``); ``test_site.py`` then
checks that the built site serves the same notebooks.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from pathlib import Path

import bookcache
import nbformat
import notebook_envs as envs
import pytest
from conftest import ROOT, SITE

CHAPTERS = [p.stem for p in bookcache.chapters()]
REPORT = ROOT / "_build" / "notebook-runs.json"
#: Packages that chapters' extras bring in (pyproject.toml); removed from the bare environment
#: before each chapter so that each chapter's own first cell must install what it needs.
EXTRA_PACKAGES = ("gymnasium", "pycocotools")
#: The bare environment runs these chapters to the end (the rest: first cell plus imports).
BARE_FULL = ("bias",)


_RESULTS: dict[tuple[str, str], dict] = {}


def _record(env: str, chapter: str, result: dict, before: dict, after: dict) -> None:
    _RESULTS[env, chapter] = result
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    cells = [s for s in result["cell_seconds"] if s is not None]
    report.setdefault(env, {})[chapter] = {
        "seconds": round(result["seconds"], 1),
        "first_cell_seconds": round(cells[0], 1) if cells else None,
        "first_output": result["first_output"][-300:],
        "installed_by_first_cell": sorted(n for n in after if n not in before),
        "widget_cell_seconds": [result["cell_seconds"][i] for i in result["widget_cells"]],
    }
    REPORT.write_text(json.dumps(report, indent=1, sort_keys=True))


#: The exported notebooks to run: those of the built site, or (``make test``, which runs these
#: tests while it executes the book) the same export written by ``site/_ext/course_site.py``.
NOTEBOOKS = Path(os.environ.get("COURSE_NOTEBOOKS") or SITE / "notebooks").resolve()


def _notebook(chapter: str) -> Path:
    path = NOTEBOOKS / f"{chapter}.ipynb"
    assert path.exists(), f"{path} is missing: run `make book` first (or set COURSE_NOTEBOOKS)"
    return path


@pytest.fixture(scope="module")
def colab_python() -> Path:
    return envs.colab_env()


@pytest.fixture(scope="module")
def bare_python() -> Path:
    return envs.bare_env()


def test_the_colab_like_environment_has_colabs_versions(colab_python):
    colab, have = envs.colab_versions(), envs.installed(colab_python)
    for name in ("ipython", "ipywidgets", "traitlets", "numpy", "matplotlib", "scikit-learn"):
        assert have[name] == colab[name], name
    assert "tutorlib" not in have, "the notebooks' first cell must install tutorlib"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_runs_on_colab_without_upgrading_what_colab_preloads(chapter, colab_python, tmp_path):
    before = envs.installed(colab_python)
    result = envs.run_notebook(colab_python, _notebook(chapter), tmp_path)
    after = envs.installed(colab_python)
    _record("colab", chapter, result, before, after)
    assert result["error"] is None, result["error"]
    assert result["executed"] == result["code_cells"]
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert changed == {} or set(changed) == {"tutorlib"}, f"the first cell changed {changed}"
    # what the first cell installed must not move a package Colab ships off Colab's version
    colab = envs.colab_versions()
    off = {n: (v, colab[n]) for n, v in after.items()
           if before.get(n) != v and n in colab and not n.startswith(envs.NOT_FROM_COLAB) and v != colab[n]}
    assert off == {}, f"the first cell installed packages at versions other than Colab's: {off}"
    assert "tutorlib" in after
    # every widget cell displayed a widget (live mode, ipywidgets 7.7.1)
    assert set(result["widget_cells"]) <= set(result["widget_views"]), result


def test_live_widget_shows_its_first_figure_at_once_on_colab(colab_python, tmp_path):
    """The bias chapter's widget took 15 s when it pre-rendered its 48 settings in the kernel."""
    result = _RESULTS.get(("colab", "bias")) or envs.run_notebook(colab_python, _notebook("bias"), tmp_path)
    assert result["error"] is None
    [cell] = result["widget_cells"]
    seconds = result["cell_seconds"][cell]
    print(f"bias widget cell, live mode: {seconds:.2f} s")
    assert seconds < 2.0  # measured about 0.3 s; pre-rendering every setting took 15 s


def _first_cell_and_imports(notebook: Path, target: Path) -> None:
    """The notebook's first cell, then one cell with every top-level import of the chapter."""
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    imports = []
    for cell in code[1:]:
        source = "\n".join(ln for ln in cell.source.splitlines() if not re.match(r"\s*[%!]", ln))
        for node in ast.parse(source).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                line = ast.unparse(node)
                if line not in imports:
                    imports.append(line)
    nb.cells = [code[0], nbformat.v4.new_code_cell("\n".join(imports))]
    nbformat.write(nb, target)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_installs_what_it_imports_in_a_bare_environment(chapter, bare_python, tmp_path):
    envs.uninstall(bare_python, *EXTRA_PACKAGES)
    notebook = _notebook(chapter)
    if chapter not in BARE_FULL:
        _first_cell_and_imports(notebook, tmp_path / notebook.name)
        notebook = tmp_path / notebook.name
    before = envs.installed(bare_python)
    result = envs.run_notebook(bare_python, notebook, tmp_path)
    installed = envs.installed(bare_python)
    _record("bare", chapter, result, before, installed)
    assert result["error"] is None, result["error"]
    assert result["executed"] == result["code_cells"]
    assert "tutorlib" in installed
    assert {"tutorlib", "ipywidgets", "pot"} <= set(installed)


def test_first_cell_leaves_an_installed_tutorlib_alone_and_says_so(bare_python, tmp_path):
    """Run a second time, the first cell finds tutorlib at the wanted revision: no pip call."""
    envs.uninstall(bare_python, *EXTRA_PACKAGES)
    _first_cell_and_imports(_notebook("bias"), tmp_path / "a.ipynb")
    first = envs.run_notebook(bare_python, tmp_path / "a.ipynb", tmp_path)
    again = envs.run_notebook(bare_python, tmp_path / "a.ipynb", tmp_path)
    assert first["error"] is None and again["error"] is None
    assert "nothing to do" in again["first_output"], again["first_output"]


def test_first_cell_asks_for_a_restart_when_it_replaces_an_imported_tutorlib(bare_python, tmp_path):
    """A kernel that imported tutorlib, then installs another revision: the cell says restart."""
    copy = tmp_path / "other-tutorlib"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (copy / name).write_text((ROOT / name).read_text())
    shutil.copytree(ROOT / "src" / "tutorlib", copy / "src" / "tutorlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    install = nbformat.read(_notebook("bias"), as_version=4).cells[0]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import tutorlib"), install])
    nbformat.write(nb, tmp_path / "restart.ipynb")
    envs.run_notebook(bare_python, _notebook_first_cell(tmp_path), tmp_path)  # tutorlib present
    result = envs.run_notebook(bare_python, tmp_path / "restart.ipynb", tmp_path, spec=copy)
    assert result["error"] is not None and "RESTART NEEDED" in result["error"], result
    assert "Restart the runtime" in result["error"]


def _notebook_first_cell(tmp_path: Path) -> Path:
    nb = nbformat.read(_notebook("bias"), as_version=4)
    nb.cells = nb.cells[:1]
    nbformat.write(nb, tmp_path / "first.ipynb")
    return tmp_path / "first.ipynb"
