"""MkDocs hook: Sphinx cross-reference roles in docstrings (:func:`name`) render as plain code, not as a
stray ``:func:`` before it.

The docstrings are also read by ``help()`` and IDEs, where the roles are the common convention; in the API
pages mkdocstrings leaves them as text. ``~pkg.mod.name`` shows ``name``, as Sphinx would.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj|const):(<code[^>]*>)(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    tag, short, target = match.groups()
    return f"{tag}{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs) -> str:  # noqa: ANN003 - MkDocs hook signature
    return _ROLE.sub(_plain, html)
