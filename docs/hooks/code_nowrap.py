"""MkDocs hook: short inline code without spaces (``--threads``, ``model.geometry_weight``) never wraps.

Browsers break lines after a hyphen, so ``--threads`` could end a line as ``--``; CSS alone cannot tell a
flag from a sentence of code. Spans of at most 32 characters with no whitespace get ``class="nowrap"``
(styled in docs/stylesheets/extra.css); longer ones may still wrap, so a narrow screen never scrolls.
"""

from __future__ import annotations

import re

MAX_CHARS = 32
_CODE = re.compile(r"<code>([^<\s]{1,%d})</code>" % MAX_CHARS)


def on_page_content(html: str, **kwargs) -> str:  # noqa: ANN003 - MkDocs hook signature
    return _CODE.sub(r'<code class="nowrap">\1</code>', html)
