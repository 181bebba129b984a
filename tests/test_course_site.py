"""The site extension's notebook export: repository and revision from the environment, the
first cell of every exported notebook, and the chapters' ``course:`` front matter."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "site" / "_ext"))
import course_site  # noqa: E402


def test_repository_comes_from_the_ci_environment(monkeypatch):
    monkeypatch.delenv("COURSE_REPOSITORY", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "someone/course")
    assert course_site.repository() == "https://github.com/someone/course"
    monkeypatch.setenv("COURSE_REPOSITORY", "other/book")
    assert course_site.repository() == "https://github.com/other/book"


def test_without_a_repository_there_is_none(monkeypatch):
    monkeypatch.delenv("COURSE_REPOSITORY", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert course_site.repository() == ""


def test_revision_comes_from_the_ci_environment_else_git(monkeypatch):
    monkeypatch.delenv("COURSE_REVISION", raising=False)
    monkeypatch.setenv("GITHUB_SHA", "0123abc")
    assert course_site.revision() == "0123abc"
    monkeypatch.delenv("GITHUB_SHA")
    head = course_site.revision()
    assert len(head) == 40 and int(head, 16) >= 0  # git's HEAD of this checkout


def test_install_cell_names_the_revision_repository_and_extras():
    cell = course_site.install_cell("https://github.com/a/b", "f00d", ["rl", "detection"])
    compile(cell, "first-cell", "exec")  # valid Python once filled in
    assert '"@@' not in cell
    assert 'REVISION = "f00d"' in cell and 'REPOSITORY = "https://github.com/a/b"' in cell
    assert 'EXTRAS = "[rl,detection]"' in cell
    assert "NEEDS = ['gymnasium', 'pycocotools']" in cell
    plain = course_site.install_cell("", "f00d", [])
    assert 'EXTRAS = ""' in plain and "NEEDS = []" in plain


def test_every_extra_is_an_extra_of_the_package():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(course_site.EXTRA_MODULES) == set(extras)


def test_chapters_declare_the_extras_they_import():
    """A chapter that imports gymnasium or pycocotools (or tutorlib.rl) declares the extra."""
    import bookcache

    for md in bookcache.chapters():
        text = md.read_text(encoding="utf8")
        extras = course_site.course_metadata(md).get("extras", [])
        for extra, module in course_site.EXTRA_MODULES.items():
            uses = f"import {module}" in text or f"from {module}" in text
            if extra == "rl":
                rl_module = r"\brl(_ddpg|_envs)?\b"  # rl, rl_ddpg, rl_envs import gymnasium; rl_lm does not
                pattern = rf"from tutorlib import .*{rl_module}|tutorlib\.{rl_module[2:]} import"
                uses = uses or bool(re.search(pattern, text))
            if extra != "flash":  # triton is optional: the chapter runs without it
                assert uses == (extra in extras), f"{md.name}: extra {extra!r}"


def test_bad_course_front_matter_is_refused(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("---\ncourse:\n  extras: [nope]\n---\n# x\n")
    with pytest.raises(ValueError, match="extras"):
        course_site.course_metadata(page)
    page.write_text("---\ncourse:\n  gpu: true\n---\n# x\n")
    with pytest.raises(ValueError, match="colab_gpu"):
        course_site.course_metadata(page)
