"""The built website as a reader meets it, in headless Chromium with the internet cut off."""

from __future__ import annotations

import os

import bookcache
import pytest
from conftest import ROOT

PAGES = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in bookcache.toc_files()]
CHAPTERS = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in bookcache.chapters()]


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_everything_from_the_site_itself(open_page, path):
    page, report = open_page(path)
    assert report.blocked == [], "the page asked for something outside the site"
    assert report.failed == []
    assert report.console_errors == []
    broken = page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    assert broken == [], "figures that did not load"


@pytest.mark.parametrize("path", CHAPTERS)
def test_math_is_typeset_and_fits_the_column(open_page, path):
    page, report = open_page(path)
    # every .math element (visible or not: some sit in collapsed menus) gets a MathJax container
    page.wait_for_function(
        """() => { const m = [...document.querySelectorAll('.math')];
                   return m.length > 0 && m.every(e => e.querySelector('mjx-container')); }""",
        timeout=60_000,  # MathJax is slow on a loaded 2-core CPU
    )
    errors = page.eval_on_selector_all("mjx-merror", "els => els.map(e => e.textContent)")
    assert errors == [], "TeX that MathJax could not typeset"
    assert report.blocked == []
    # On a 1280 px desktop no visible display equation may need its own horizontal scroll bar:
    # a wider one is split with `aligned`. MathJax's container scrolls inside the column, so its
    # own scrollWidth is what grows. (Equations in collapsed solutions are not laid out.)
    wide = page.eval_on_selector_all(
        "div.math mjx-container",
        """els => els.filter(c => c.offsetParent !== null && c.scrollWidth > c.clientWidth + 1)
                   .map(c => `${c.scrollWidth - c.clientWidth}px too wide: `
                             + MathJax.startup.document.getMathItemsWithin(c.parentElement)
                                 .map(item => item.math.trim().slice(0, 60)).join(' '))""",
    )
    assert wide == [], "display equations wider than the text column"


def _visible_widget_image(widget) -> str:
    """The src of the one image of a widget that is currently shown."""
    return widget.evaluate(
        """w => [...w.querySelectorAll('img')].filter(i => i.offsetParent !== null)
                 .map(i => i.src).join('|')"""
    )


@pytest.mark.parametrize("path", CHAPTERS)
def test_every_widget_responds_to_its_sliders_without_a_kernel(open_page, path):
    page, report = open_page(path)
    widgets = page.locator(".cell_output .widget-vbox")
    page.wait_for_selector(".cell_output .widget-vbox img", timeout=60_000)
    assert widgets.count() >= 1
    for i in range(widgets.count()):
        widget = widgets.nth(i)
        sliders = widget.locator(".widget-slider .noUi-handle, .widget-slider .slider-handle")
        assert sliders.count() >= 1, "a widget without a slider"
        for j in range(sliders.count()):
            before = _visible_widget_image(widget)
            assert before, "no image shown"
            handle = sliders.nth(j)
            handle.focus()
            handle.press("End")  # jump to the last value (the first might already be shown)
            page.wait_for_timeout(200)
            after = _visible_widget_image(widget)
            if after == before:  # the initial value was the last one: go back to the first
                handle.press("Home")
                page.wait_for_timeout(200)
                after = _visible_widget_image(widget)
            assert after and after != before, f"moving slider {j} of widget {i} changed nothing"
    assert report.console_errors == []


@pytest.mark.parametrize("path", CHAPTERS)
def test_colab_and_download_buttons_point_at_the_exported_notebook(open_page, site_url, path):
    page, _ = open_page(path)
    name = path.rsplit("/", 1)[-1].replace(".html", ".ipynb")
    if os.environ.get("COURSE_REPOSITORY") or os.environ.get("GITHUB_REPOSITORY"):
        colab = page.get_attribute("a.course-colab", "href")
        assert colab.startswith("https://colab.research.google.com/github/")
        assert colab.endswith(f"/blob/gh-pages/notebooks/{name}")
    else:  # a local build has no repository address: the page says so instead of a dead link
        assert page.locator("a.course-colab").count() == 0
        assert "built without a repository address" in page.inner_text(".course-no-colab")
    download = page.locator("a.course-download")
    assert download.get_attribute("download") == name
    # the download link resolves, on this server, to a notebook whose first cell installs tutorlib
    response = page.request.get(page.evaluate("a => a.href", download.element_handle()))
    assert response.ok
    nb = response.json()
    assert nb["cells"][0]["cell_type"] == "code"
    assert "def tutorlib_source()" in "".join(nb["cells"][0]["source"])


def test_search_works_offline(open_page):
    page, report = open_page("search.html?q=perceptron")
    page.wait_for_selector("#search-results li", timeout=15_000)
    hits = page.locator("#search-results li a").all_inner_texts()
    assert any("bias" in h.lower() for h in hits), hits
    assert report.blocked == [] and report.console_errors == []


@pytest.mark.parametrize("path", CHAPTERS)
def test_every_citation_links_to_its_reference(open_page, path):
    page, _ = open_page(path)
    targets = page.eval_on_selector_all(
        "a.footnote-reference", "as => as.map(a => a.getAttribute('href'))"
    )
    assert targets, "a chapter cites its sources"
    for href in targets:
        assert page.locator(f"[id='{href.lstrip('#')}']").count() == 1, f"{href} has no entry"


SCREENSHOTS = ROOT / "_build" / "screenshots"


@pytest.mark.parametrize("width,label", [(1280, "desktop"), (390, "phone")])
@pytest.mark.parametrize("path", ["book/intro.html", *CHAPTERS[:1]])
def test_screenshots_and_no_horizontal_scroll(open_page, path, width, label):
    """Keep screenshots to look at; on a phone the page must not scroll sideways."""
    page, _ = open_page(path, width=width, height=844 if label == "phone" else 900)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stem = path.rsplit("/", 1)[-1].removesuffix(".html")
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-{label}.png"), full_page=False)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a {width}px screen"


@pytest.mark.parametrize("path", PAGES)
def test_no_page_scrolls_sideways_on_a_phone(open_page, path):
    page, _ = open_page(path, width=390, height=844)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{path} is {overflow}px wider than a 390px phone screen"


@pytest.mark.parametrize("path", CHAPTERS)
def test_the_site_serves_the_notebooks_the_notebook_tests_ran(path):
    """make test runs the exported notebooks from _build/notebooks before the book is built."""
    import json

    name = path.rsplit("/", 1)[-1].replace(".html", ".ipynb")
    tested = ROOT / "_build" / "notebooks" / name
    if not tested.exists():
        pytest.skip("the notebook tests ran on the site's own notebooks")
    served = ROOT / "_build" / "html" / "notebooks" / name
    cells = [[c["source"] for c in json.loads(p.read_text())["cells"]] for p in (tested, served)]
    assert cells[0] == cells[1]
