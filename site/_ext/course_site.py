"""Sphinx extension with the course's adjustments to the Jupyter Book site.

- Drops sphinx-thebe's scripts. Jupyter Book always loads that extension; the course has no
  live-kernel buttons, the script is declared twice on every page (a console error) and it
  points at a third-party host.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _is_thebe(script: Any) -> bool:
    filename = getattr(script, "filename", None) or ""
    body = (getattr(script, "attributes", None) or {}).get("body", "") or ""
    return "thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    context["script_files"] = [s for s in context.get("script_files", []) if not _is_thebe(s)]
    context["css_files"] = [
        c for c in context.get("css_files", []) if "thebe" not in (getattr(c, "filename", "") or "")
    ]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
