"""Sphinx extension with the course's additions to the Jupyter Book site.

- **Colab and downloads.** Every chapter is exported to ``notebooks/<chapter>.ipynb`` in the
  site (jupytext), with a first cell (:data:`INSTALL_CELL`) that installs ``tutorlib`` and the
  chapter's extras (front matter ``course: extras: [rl]``) at the revision the site was built
  from, without upgrading what Colab has already imported. Each chapter page gets "Open in
  Colab" and "Download .ipynb" buttons; Colab's needs the repository (:func:`repository`), and a
  build without one says so on the page. ``course: colab_gpu: true`` asks Colab for a GPU.
- **Execution status.** ``{course-environment}`` prints the machine the chapters were executed
  on; the role ``{exec-time}`chapter``` prints a chapter's measured execution time.
- **No thebe.** Jupyter Book always loads sphinx-thebe; the course has no live-kernel buttons,
  the script is declared twice on every page (a console error) and points at a third-party
  host, so its scripts are dropped.
"""

from __future__ import annotations

import datetime
import os
import platform
import posixpath
import re
import subprocess
from pathlib import Path
from typing import Any

import nbformat
from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

NOTEBOOK_DIR = "notebooks"

# The first cell of every exported notebook. It must run on Colab (whose kernel has already
# imported ipython, ipywidgets, traitlets, numpy, torch... at Colab's versions) and in a bare
# Jupyter, so it only uses the standard library. @@NAME@@ placeholders are filled per chapter.
INSTALL_CELL = '''\
# @title Set-up: install tutorlib, the course's library (run this cell first)
# It installs tutorlib at the revision this notebook was built from, so text and code agree,
# plus what this chapter needs beyond it. It never upgrades a package this kernel has already
# imported; if an install would change one, it stops and asks you to restart the runtime.
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

REVISION = "@@REVISION@@"  # the git commit this notebook was built from
REPOSITORY = "@@REPOSITORY@@"  # empty when the notebook was built without one
EXTRAS = "@@EXTRAS@@"  # tutorlib's optional dependencies this chapter uses
NEEDS = @@NEEDS@@  # modules this chapter imports beyond tutorlib's core


def tutorlib_source():
    """Where the installed tutorlib came from (a commit or a file URL); None when it is absent."""
    try:
        info = json.loads(importlib.metadata.distribution("tutorlib").read_text("direct_url.json") or "{}")
    except importlib.metadata.PackageNotFoundError:
        return None
    if info.get("dir_info", {}).get("editable"):
        return "editable"  # a checkout installed with `pip install -e`: yours, left alone
    return info.get("vcs_info", {}).get("commit_id") or info.get("url", "unknown")


def loaded_versions():
    """The version of every installed package that provides a module this kernel has imported."""
    provides = importlib.metadata.packages_distributions()
    names = {d for m in list(sys.modules) for d in provides.get(m.partition(".")[0], [])}
    return {n: importlib.metadata.version(n) for n in names}


local = os.environ.get("TUTORLIB_SPEC")  # e.g. a path to your clone; the course's tests set it
if local:
    spec, wanted = local + EXTRAS, pathlib.Path(local).resolve().as_uri()
else:
    spec, wanted = f"tutorlib{EXTRAS} @ git+{REPOSITORY}@{REVISION}", REVISION
missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
source = tutorlib_source()
if source in (wanted, "editable") and not missing:
    print(f"tutorlib is installed ({source if ':' in source else source[:12]}); nothing to do.")
elif not REPOSITORY and not local:
    if source is None or missing:
        raise RuntimeError(
            "This notebook was built without a repository address, so it cannot install "
            f"tutorlib{EXTRAS} itself. From a clone of the course run `pip install -e .{EXTRAS}` "
            "(or set TUTORLIB_SPEC to a path or pip requirement)."
        )
    print(f"Using the installed tutorlib ({source[:12]}); this notebook was built from {REVISION[:12]}.")
else:
    before = loaded_versions()
    print(f"Installing {spec} ...")
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--quiet", "--progress-bar", "off",
         "--upgrade", "--upgrade-strategy", "only-if-needed", spec]
    )
    importlib.invalidate_caches()
    after = loaded_versions()
    changed = [f"{n} {v} -> {after[n]}" for n, v in before.items() if after.get(n, v) != v]
    if changed or "tutorlib" in sys.modules:
        reason = ", ".join(changed) or "tutorlib itself, which this kernel had already imported"
        raise RuntimeError(
            f"RESTART NEEDED: the install changed {reason}. Restart the runtime (Colab: "
            "Runtime > Restart session; Jupyter: Kernel > Restart), then run the notebook again "
            "from this cell; it will find everything installed."
        )
    print("tutorlib", importlib.metadata.version("tutorlib"), "installed; the chapter can run.")
'''

#: The optional dependencies of tutorlib (pyproject.toml's extras) and the modules they provide.
EXTRA_MODULES = {"rl": "gymnasium", "detection": "pycocotools", "flash": "triton"}


def course_metadata(path: Path) -> dict:
    """The ``course:`` block of a chapter's front matter (``extras``, ``colab_gpu``)."""
    import yaml

    text = path.read_text(encoding="utf8")
    if not text.startswith("---"):
        return {}
    front = yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---")) or {}
    meta = front.get("course") or {}
    unknown = set(meta) - {"extras", "colab_gpu"}
    extras = meta.get("extras", [])
    if unknown or not isinstance(extras, list) or set(extras) - set(EXTRA_MODULES):
        raise ValueError(
            f"{path}: the front matter's course block takes extras (a list from "
            f"{sorted(EXTRA_MODULES)}) and colab_gpu (true/false), got {meta!r}"
        )
    return meta


def install_cell(repository: str, revision: str, extras: list[str]) -> str:
    """The first cell of an exported notebook (see :data:`INSTALL_CELL`)."""
    fills = {
        "@@REVISION@@": revision,
        "@@REPOSITORY@@": repository,
        "@@EXTRAS@@": f"[{','.join(extras)}]" if extras else "",
        "@@NEEDS@@": repr([EXTRA_MODULES[e] for e in extras]),
    }
    cell = INSTALL_CELL
    for key, value in fills.items():
        cell = cell.replace(key, value)
    return cell


# ----------------------------------------------------------------------------------------------
# which pages are chapters, and where their notebooks go
# ----------------------------------------------------------------------------------------------
def is_chapter(app: Sphinx, docname: str) -> bool:
    """A page is an executable chapter when its front matter names a kernel."""
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md" or not path.exists():
        return False
    front = path.read_text(encoding="utf8").split("\n---", 1)[0]
    return "kernelspec:" in front


def notebook_path(docname: str) -> str:
    """Site-relative path of the exported notebook of a chapter."""
    return f"{NOTEBOOK_DIR}/{posixpath.basename(docname)}.ipynb"


def repository(app: Sphinx | None = None) -> str:
    """The course's GitHub repository as ``https://github.com/owner/name``, or ``""``.

    From ``COURSE_REPOSITORY`` or ``GITHUB_REPOSITORY`` (``owner/name``, set by GitHub Actions
    in the deploy workflow), else ``repository.url`` in ``_config.yml``. A local build usually
    has none: its pages then say that the Colab button needs one, instead of linking nowhere.
    """
    name = os.environ.get("COURSE_REPOSITORY") or os.environ.get("GITHUB_REPOSITORY")
    if name:
        return "https://github.com/" + name.strip().strip("/").removeprefix("https://github.com/")
    url = app.config.html_theme_options.get("repository_url", "") if app is not None else ""
    return (url or "").rstrip("/")


def revision(app: Sphinx | None = None) -> str:
    """The commit the site is built from: ``COURSE_REVISION``, ``GITHUB_SHA``, or git's HEAD."""
    for variable in ("COURSE_REVISION", "GITHUB_SHA"):
        if os.environ.get(variable):
            return os.environ[variable]
    cwd = app.srcdir if app is not None else Path(__file__).parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        import tutorlib

        return f"v{tutorlib.__version__}"


def colab_url(app: Sphinx, docname: str) -> str:
    """The Colab address of a chapter's notebook on the published branch; ``""`` without a repository."""
    github = repository(app).removeprefix("https://github.com/")
    if not github:
        return ""
    branch = app.config.course_pages_branch
    return f"https://colab.research.google.com/github/{github}/blob/{branch}/{notebook_path(docname)}"


# ----------------------------------------------------------------------------------------------
# buttons on chapter pages
# ----------------------------------------------------------------------------------------------
def add_launch_buttons(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html" or not is_chapter(app, docname):
        return
    download = posixpath.relpath(notebook_path(docname), posixpath.dirname(docname) or ".")
    colab = colab_url(app, docname)
    if colab:
        colab_html = (
            f'<a class="course-button course-colab" href="{colab}" '
            'target="_blank" rel="noopener">Open in Colab</a>'
        )
    else:
        colab_html = (
            '<span class="course-no-colab">No Colab link: this copy of the site was built '
            "without a repository address (the deploy workflow sets GITHUB_REPOSITORY). "
            "Download the notebook, or open the chapter in Jupyter from a clone.</span>"
        )
    html = (
        '<div class="course-launch">'
        + colab_html +
        f'<a class="course-button course-download" href="{download}" '
        f'download="{posixpath.basename(download)}">Download .ipynb</a>'
        "</div>"
    )
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    title = next(iter(section.findall(nodes.title)), None)
    index = section.index(title) + 1 if title is not None else 0
    section.insert(index, nodes.raw("", html, format="html"))


# ----------------------------------------------------------------------------------------------
# notebooks for Colab and download
# ----------------------------------------------------------------------------------------------
_DROPDOWN = re.compile(
    r"^:::\{admonition\} (?P<title>[^\n]*)\n:class: dropdown\n\n(?P<body>.*?)\n:::$",
    re.S | re.M,
)
_CITE = re.compile(r"\{footcite:[pt]\}`([^`]*)`")
_REF = re.compile(r"\{(?:ref|doc)\}`(?:([^`<]*?)\s*<[^`>]*>|([^`]*))`")


def to_jupyter_markdown(text: str, cited: list[str]) -> str:
    """Turn the MyST-only syntax of a markdown cell into what Jupyter and Colab render."""
    text = _DROPDOWN.sub(
        lambda m: f"<details><summary>{m['title']}</summary>\n\n{m['body']}\n\n</details>", text
    )

    def cite(match: re.Match) -> str:
        keys = [k.strip() for k in match[1].split(",")]
        cited.extend(k for k in keys if k not in cited)
        return "[" + ", ".join(str(cited.index(k) + 1) for k in keys) + "]"

    text = _CITE.sub(cite, text)
    return _REF.sub(lambda m: (m[1] or m[2]).strip(), text)


def format_references(bibfile: Path, keys: list[str]) -> str:
    import codecs

    import latexcodec  # noqa: F401 -- registers the "ulatex" codec
    from pybtex.database import parse_file

    entries = parse_file(str(bibfile)).entries
    lines = []
    for number, key in enumerate(keys, start=1):
        entry = entries[key]
        authors = ", ".join(codecs.decode(str(p), "ulatex") for p in entry.persons.get("author", []))
        fields = entry.fields
        venue = fields.get("journal") or fields.get("booktitle") or fields.get("howpublished", "")
        venue = re.sub(r"\\url\{([^}]*)\}", r"<\1>", venue)  # \url{X} -> an autolink
        title = codecs.decode(fields.get("title", ""), "ulatex").replace("{", "").replace("}", "")
        lines.append(f"{number}. {authors} ({fields.get('year', '')}). {title}. *{venue}*.")
    return "\n".join(lines)


def export_notebook(app: Sphinx, docname: str, outdir: Path) -> Path:
    """Write ``notebooks/<chapter>.ipynb`` under ``outdir`` for one chapter of the Sphinx build."""
    source = Path(app.env.doc2path(docname))
    return write_notebook(source, outdir / notebook_path(docname), repository(app), revision(app))


def write_notebook(source: Path, target: Path, repository: str, revision: str) -> Path:
    """Export the MyST chapter ``source`` as a plain notebook: Jupyter/Colab markdown, numbered
    references, and the install cell (:func:`install_cell`) first."""
    import jupytext

    nb = jupytext.read(source, fmt="md:myst")
    cited: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = to_jupyter_markdown(cell.source, cited)
            if "{footbibliography}" in cell.source:
                refs = format_references(source.parent.parent / "references.bib", cited)
                # a function, not a string: a reference may contain backslashes (LaTeX accents)
                cell.source = re.sub(r"```\{footbibliography\}\n```", lambda _, r=refs: r, cell.source)
        cell.metadata.pop("lines_to_next_cell", None)
    meta = course_metadata(source)
    install = install_cell(repository, revision, meta.get("extras", []))
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        install, metadata={"tags": ["course-setup"], "cellView": "form"}))
    nb.metadata.pop("jupytext", None)
    nb.metadata.pop("course", None)
    nb.metadata["colab"] = {"provenance": []}
    if meta.get("colab_gpu"):  # Colab opens the notebook on a GPU runtime
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.from_dict(nb), target)
    return target


def export_notebooks(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    count = 0
    for docname in sorted(app.env.found_docs):
        if is_chapter(app, docname):
            export_notebook(app, docname, outdir)
            count += 1
    logger.info(f"[course] exported {count} chapter notebooks to {outdir / NOTEBOOK_DIR}")


# ----------------------------------------------------------------------------------------------
# execution status: the environment, and each chapter's measured time
# ----------------------------------------------------------------------------------------------
def environment_rows() -> list[tuple[str, str]]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
    return [
        ("Python", platform.python_version()),
        ("PyTorch", torch.__version__),
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("GPU", gpu),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("built", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


class CourseEnvironment(Directive):
    """A table of the machine the book was built and its chapters executed on."""

    def run(self) -> list[nodes.Node]:
        self.state.document.settings.env.note_reread()  # the build time changes every build
        rows = environment_rows()
        table = nodes.table(classes=["course-environment"])
        group = nodes.tgroup(cols=2)
        table += group
        group += [nodes.colspec(colwidth=1), nodes.colspec(colwidth=3)]
        body = nodes.tbody()
        group += body
        for key, value in rows:
            row = nodes.row()
            for text in (key, value):
                entry = nodes.entry()
                entry += nodes.paragraph(text=text)
                row += entry
            body += row
        return [table]


class exec_time(nodes.inline):  # docutils node classes are lower case
    """Placeholder for a chapter's execution time, filled in once every page is read."""


def exec_time_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    node = exec_time(rawtext, "", chapter=text.strip())
    return [node], []


def fill_exec_times(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    from myst_nb.sphinx_ import NbMetadataCollector

    for node in list(doctree.findall(exec_time)):
        target = node["chapter"]
        data = NbMetadataCollector.get_exec_data(app.env, target) or {}
        runtime = data.get("runtime")
        text = f"{runtime:.0f} s" if runtime else "not measured"
        node.replace_self(nodes.Text(text))


# ----------------------------------------------------------------------------------------------
# thebe
# ----------------------------------------------------------------------------------------------
def _is_thebe(asset: Any) -> bool:
    filename = getattr(asset, "filename", None) or ""
    body = (getattr(asset, "attributes", None) or {}).get("body", "") or ""
    return "thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    context["script_files"] = [s for s in context.get("script_files", []) if not _is_thebe(s)]
    context["css_files"] = [c for c in context.get("css_files", []) if not _is_thebe(c)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_pages_branch", "gh-pages", "html")
    app.connect("builder-inited", lambda app: app.config.html_static_path.append(
        str(Path(__file__).parent / "static")))
    app.add_css_file("course.css")
    app.add_directive("course-environment", CourseEnvironment)
    app.add_role("exec-time", exec_time_role)
    app.add_node(exec_time)
    app.connect("doctree-resolved", fill_exec_times)
    app.connect("doctree-resolved", add_launch_buttons)
    app.connect("build-finished", export_notebooks)
    app.connect("html-page-context", drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    # ``python site/_ext/course_site.py OUTDIR book/a.md ...``: export chapters without Sphinx,
    # exactly as the build does (the tests run them while the book is being executed).
    import sys

    out = Path(sys.argv[1])
    for arg in sys.argv[2:]:
        path = Path(arg)
        print(write_notebook(path, out / f"{path.stem}.ipynb", repository(), revision()))
