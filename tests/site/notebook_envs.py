"""Fresh Python environments in which the exported notebooks run through their own first cell.

Two kinds, both made with ``venv`` under ``_build/envs/`` and reused while their recipe is
unchanged (a fresh clone, as in CI, builds them once):

- **colab**: what Google Colab's CPU runtime preloads, at Colab's versions
  (``tests/colab/pip-freeze.txt``, Colab's own published list): IPython 7.34, ipywidgets 7.7.1,
  traitlets 5.7.1, NumPy 2.1.3, ... Every other package pip brings in is held to Colab's version
  too (a constraints file made from the same list). Two differences, forced by this machine:
  Python is this machine's (Colab has 3.13) and torch is ``requirements.txt``'s (Colab has 2.11;
  here pip takes torch from local disk). No tutorlib: the notebook's first cell installs it.
- **bare**: a new environment with only torch and a Jupyter kernel, as in a fresh Jupyter.

``run_notebook`` executes a notebook with the environment's own kernel and returns what the tests
check: per-cell times, whether widgets were displayed, the first cell's output, any error.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "_build" / "envs"
COLAB_FREEZE = ROOT / "tests" / "colab" / "pip-freeze.txt"

#: What a Colab kernel has loaded (or can import) before a chapter's first cell runs, among the
#: packages the course touches, plus the kernel machinery nbclient needs.
COLAB_PRELOADED = [
    "ipython", "ipywidgets", "traitlets", "numpy", "scipy", "scikit-learn", "matplotlib", "tqdm",
    "gymnasium", "pycocotools", "pillow", "ipykernel", "jupyter_client", "nbclient", "nbformat",
]
#: Colab's packages that cannot be had at Colab's version here: the torch family (CUDA/CPU
#: builds; torch itself comes from requirements.txt) and what this torch needs newer than Colab
#: has (torch 2.13 requires setuptools>=77.0.3; Colab's torch 2.11 is content with its 75.2).
NOT_FROM_COLAB = ("torch", "triton", "nvidia-", "cuda-", "jax", "tensorflow", "tf-", "keras", "setuptools",
                  "pip")


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def colab_versions() -> dict[str, str]:
    """``{package: version}`` from Colab's published pip freeze (plain ``name==version`` lines)."""
    versions = {}
    for line in COLAB_FREEZE.read_text().splitlines():
        if "==" in line and "@" not in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            versions[normalise(name)] = version.strip()
    return versions


def pinned(*names: str) -> list[str]:
    """The ``requirements.txt`` pins of the given packages (``name==version``)."""
    pins = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    found = [p for p in pins if normalise(p.split("==")[0]) in {normalise(n) for n in names}]
    assert len(found) == len(names), f"pins missing for {names}: {found}"
    return found


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *args], check=True)


def _make(name: str, recipe: list[list[str]], files: dict[str, str]) -> Path:
    """A venv under ``_build/envs/<name>`` built by the pip commands in ``recipe``; reused if built."""
    where = ENVS / name
    python = where / "bin" / "python"
    stamp, baseline = where / ".recipe", where / ".baseline.json"
    key = hashlib.sha256(json.dumps([recipe, files], sort_keys=True).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == key and python.exists() and baseline.exists():
        # Reused: back to the state it was built in (an earlier run's first cells installed
        # tutorlib and its dependencies), or rebuilt if something it was built with changed.
        expected, now = json.loads(baseline.read_text()), installed(python)
        if all(now.get(n) == v for n, v in expected.items()):
            uninstall(python, *(n for n in now if n not in expected))
            return python
    subprocess.run(["rm", "-rf", str(where)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    for filename, text in files.items():
        (where / filename).write_text(text)
    for args in recipe:
        _pip(python, *[a.replace("{env}", str(where)) for a in args])
    baseline.write_text(json.dumps(installed(python)))
    stamp.write_text(key)
    return python


def colab_env() -> Path:
    """The Colab-like environment's python (see the module docstring)."""
    colab = colab_versions()
    constraints = "\n".join(
        f"{n}=={v}" for n, v in sorted(colab.items()) if not n.startswith(NOT_FROM_COLAB)
    )
    preload = [f"{n}=={colab[normalise(n)]}" for n in COLAB_PRELOADED]
    recipe = [["-c", "{env}/colab-constraints.txt", *pinned("torch")],
              ["-c", "{env}/colab-constraints.txt", *preload]]
    return _make("colab", recipe, {"colab-constraints.txt": constraints + "\n"})


def bare_env() -> Path:
    """A fresh environment with torch and a Jupyter kernel only."""
    return _make("bare", [pinned("torch", "ipykernel", "nbclient", "nbformat")], {})


def installed(python: Path) -> dict[str, str]:
    """``{package: version}`` of everything installed in an environment."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {normalise(k): v for k, v in json.loads(out.stdout).items()}


def uninstall(python: Path, *names: str) -> None:
    present = [n for n in names if normalise(n) in installed(python)]
    if present:
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", *present], check=True)


RUNNER = textwrap.dedent(
    """
    import datetime, json, sys, time
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(sys.argv[1], as_version=4)
    started = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    except CellExecutionError as e:
        failed = [(i, o) for i, c in enumerate(c for c in nb.cells if c.cell_type == "code")
                  for o in c.get("outputs", []) if o.get("output_type") == "error"]
        error = "; ".join(f"code cell {i}: {o['ename']}: {o['evalue']}" for i, o in failed)
        error = error or str(e)[-4000:]

    def seconds(cell):
        t = cell.metadata.get("execution", {})
        a, b = t.get("iopub.execute_input"), t.get("shell.execute_reply")
        if not (a and b):
            return None
        parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return (parse(b) - parse(a)).total_seconds()

    code = [c for c in nb.cells if c.cell_type == "code"]
    mime = "application/vnd.jupyter.widget-view+json"
    print("RESULT" + json.dumps({
        "seconds": time.perf_counter() - started,
        "code_cells": len(code),
        "executed": sum(c.get("execution_count") is not None for c in code),
        "cell_seconds": [seconds(c) for c in code],
        "widget_cells": [i for i, c in enumerate(code) if "interact(" in c.source],
        "widget_views": [i for i, c in enumerate(code)
                         if any(mime in o.get("data", {}) for o in c.get("outputs", []))],
        "first_output": "".join(o.get("text", "") for o in code[0].outputs),
        "error": error,
    }))
    """
)


def run_notebook(python: Path, notebook: Path, cwd: Path, spec: Path = ROOT) -> dict:
    """Execute ``notebook`` with ``python``'s kernel, the way a reader's Jupyter would.

    The first cell installs tutorlib from this checkout (``TUTORLIB_SPEC``, which the cell
    reads) instead of from GitHub. Widgets run in live mode (no ``TUTORLIB_WIDGETS``), and
    matplotlib uses the kernel's inline backend, as in Colab.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MPLBACKEND", "TUTORLIB_WIDGETS", "VIRTUAL_ENV")}
    env["TUTORLIB_SPEC"] = str(spec)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [str(python), "-c", RUNNER, str(notebook)],
        capture_output=True, text=True, env=env, cwd=cwd,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"the notebook runner failed:\n{result.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT"))
