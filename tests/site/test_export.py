"""The exported notebooks work where tutorlib is not installed, as on Colab.

A fresh virtual environment gets only what Colab already has (torch, a Jupyter kernel); the
notebook's own first cell must install tutorlib (here from this checkout, through the
TUTORLIB_SPEC variable the cell reads) and the chapter must then run to the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, SITE

RUN_NOTEBOOK = textwrap.dedent(
    """
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    first = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    print("CELLS", sum(c.cell_type == "code" for c in nb.cells), "FIRST_OUTPUT", repr(first))
    """
)


def pinned(*names: str) -> list[str]:
    """The requirements.txt pins of the given packages."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [ln.split("#")[0].strip() for ln in lines]
    found = [p for p in pins if p.split("==")[0].lower() in names]
    assert len(found) == len(names), f"pins missing for {names}"
    return found


def test_exported_chapter_installs_tutorlib_itself_and_runs(tmp_path: Path):
    notebook = SITE / "notebooks" / "bias.ipynb"
    assert notebook.exists(), "run `make book` first"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # What Colab provides before the notebook runs: torch and a kernel (no tutorlib).
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet",
         *pinned("torch", "ipykernel", "nbclient", "nbformat")],
        check=True,
    )
    absent = subprocess.run([python, "-c", "import tutorlib"], capture_output=True)
    assert absent.returncode != 0, "the fresh environment must not have tutorlib yet"

    env = {**os.environ, "TUTORLIB_SPEC": str(ROOT), "MPLBACKEND": "agg"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [python, "-c", RUN_NOTEBOOK, str(notebook)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CELLS" in result.stdout
    installed = subprocess.run(
        [python, "-c", "import tutorlib, json; print(json.dumps(tutorlib.__file__))"],
        capture_output=True, text=True, check=True,
    )
    assert "site-packages" in json.loads(installed.stdout), "tutorlib came from the install cell"
