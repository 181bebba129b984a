"""The book's structure: every chapter is in _toc.yml, read the way the build reads it."""

import re
from pathlib import Path

import bookcache
import pytest
from jupyter_cache import get_cache

ROOT = Path(__file__).resolve().parents[1]


def test_every_page_in_book_is_in_the_toc_and_every_toc_entry_exists():
    listed = set(bookcache.toc_files())
    assert all(p.exists() for p in listed), [p for p in listed if not p.exists()]
    pages = set((ROOT / "book").glob("*.md"))
    assert pages <= listed, f"not in _toc.yml: {sorted(p.name for p in pages - listed)}"


def test_chapters_are_found_from_the_toc():
    names = [p.stem for p in bookcache.chapters()]
    assert "bias" in names
    assert "intro" not in names and "notation" not in names  # prose pages are not executed


@pytest.mark.parametrize("md", bookcache.chapters(), ids=lambda p: p.stem)
def test_chapter_pattern(md):
    """Every chapter: a label, a widget, checked claims, 3+ exercises with hidden solutions."""
    text = md.read_text(encoding="utf8")
    assert f"(chapter-{md.stem})=" in text, "label the chapter for cross-references"
    assert "interact(" in text, "at least one tutorlib.widgets.interact widget"
    assert "check(" in text, "claims are checked with tutorlib.check"
    assert "show_source(" in text, "show the tutorlib code the chapter teaches"
    assert text.count(":class: dropdown") >= 3, "at least three exercises with hidden solutions"
    assert "## References" in text
    assert "\n## Summary" in text, "end the chapter's body with a summary"
    others = set(re.findall(r"\{ref\}`chapter-(\w+)`", text)) - {md.stem}
    assert others, "link at least one other chapter with {ref}`chapter-<name>`"


def test_cache_key_of_the_tests_matches_the_build(tmp_path):
    """The notebook nbval runs hashes like the one the build reads, so the build reuses it."""
    cache = get_cache(str(tmp_path / "cache"))
    for md in bookcache.chapters():
        nb = bookcache.read_chapter(md)
        _, key_tests = cache.create_hashed_notebook(nb)
        from myst_nb.core.read import read_myst_markdown_notebook

        build_nb = read_myst_markdown_notebook(md.read_text("utf8"), add_source_map=True, path=md)
        _, key_build = cache.create_hashed_notebook(build_nb)
        assert key_tests == key_build


def test_every_cited_key_is_in_the_bibliography():
    """A missing key stops the notebook export and the build; find it here first."""
    bib = (ROOT / "references.bib").read_text(encoding="utf8")
    keys = {k.lower() for k in re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M)}
    missing = [(md.name, key.strip()) for md in sorted((ROOT / "book").glob("*.md"))
               for cited in re.findall(r"\{(?:foot)?cite(?::[pt])?\}`([^`]+)`", md.read_text(encoding="utf8"))
               for key in cited.split(",") if key.strip().lower() not in keys]
    assert missing == []
