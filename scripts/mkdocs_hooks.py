"""MkDocs hook: the API page's list of methods comes from the registry.

A line ``<!-- methods from the registry -->`` in a page becomes one mkdocstrings
``::: module.Class`` entry per registered method, in the registry's order, so a new
method reaches the API page without an edit there.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- methods from the registry -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from xai import registry

    entries = [
        f"::: {info.target.replace(':', '.')}"
        for info in (registry.get(name) for name in registry.methods())
    ]
    return markdown.replace(MARKER, "\n\n".join(entries))
