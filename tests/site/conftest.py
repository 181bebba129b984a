"""Fixtures for the browser tests: the built site served on localhost, and headless Chromium.

These tests read ``_build/html``: run them after ``make book`` (``make test`` does both).
Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright's Python package through
``executable_path``; no browser is downloaded. Every request that does not go to the local
server is aborted and recorded, so a page that needs the internet fails.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"

# Flags for a root user in a closed network (see the machine notes): no sandbox, no GPU, and
# none of Chromium's background connections to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    if not (SITE / "index.html").exists():
        raise RuntimeError(f"{SITE} is not built: run `make book` before the browser tests")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("google-chrome")
    if executable is None:
        raise RuntimeError("Debian's chromium is not installed: `apt-get install chromium`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class PageReport:
    """What went wrong while a page loaded."""

    blocked: list[str] = field(default_factory=list)  # requests to another host
    failed: list[str] = field(default_factory=list)  # requests that failed or got >= 400
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser, site_url):
    """``open_page(path, width=1280) -> (page, report)``, with outside requests blocked."""
    contexts = []

    def _open(path: str, width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        report = PageReport()

        def route(route):
            if route.request.url.startswith(site_url) or route.request.url.startswith("data:"):
                route.continue_()
            else:
                report.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and report.console_errors.append(m.text))
        page.on("pageerror", lambda e: report.console_errors.append(str(e)))
        page.on("requestfailed", lambda r: report.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and report.failed.append(f"{r.url} ({r.status})"))
        page.goto(f"{site_url}/{path}", wait_until="networkidle")
        return page, report

    yield _open
    for context in contexts:
        context.close()
