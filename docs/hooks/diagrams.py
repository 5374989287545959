"""MkDocs hook: each ```` ```mermaid ```` fence is shown as its committed, pre-rendered SVG.

The Markdown keeps the Mermaid source (the one place a diagram is edited); ``benchmarks/render_diagrams.py``
renders every fence once, at authoring time, into ``docs/diagrams/<sha256 of the source, 16 hex>.svg``
(Mermaid from npm, headless Chromium). At build time this hook swaps each fence for an image of that file,
so ``mkdocs build`` and ``mkdocs serve`` show diagrams with no JavaScript, no network and no npm.

A fence whose SVG is missing (its source was edited and not re-rendered) is left as it is and logged as a
warning, which fails ``mkdocs build --strict`` (``make test``); ``mkdocs serve`` then shows it through
Material's Mermaid from the CDN when online. Run ``make diagrams`` to render it.
"""

from __future__ import annotations

import hashlib
import html
import logging
import posixpath
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.diagrams")

SVG_DIR = "diagrams"  # under docs_dir
# A fenced block opened by ```mermaid (any indent, 3+ backticks) and closed by the same fence.
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})mermaid[ \t]*\n(?P<body>.*?)\n(?P=indent)(?P=ticks)[ \t]*$",
                   re.MULTILINE | re.DOTALL)
_SIZE = re.compile(r'<svg width="(\d+)" height="(\d+)"')
_LABEL = re.compile(r'[\[\(\{]+"?([^"\[\]\(\)\{\}]+?)"?[\]\)\}]+')


def source_of(body: str, indent: str = "") -> str:
    """The diagram source as hashed: the fence's indent removed, trailing blanks of each line dropped."""
    lines = [line[len(indent):] if line.startswith(indent) else line for line in body.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def diagram_hash(source: str) -> str:
    """The SVG's file stem: 16 hex digits of the SHA-256 of the normalised source."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def find_diagrams(markdown: str) -> list[str]:
    """Every Mermaid source of one Markdown text, normalised, in page order."""
    return [source_of(m["body"], m["indent"]) for m in FENCE.finditer(markdown)]


def alt_text(source: str, limit: int = 300) -> str:
    """A plain-text alternative: the diagram's node labels in order, duplicates dropped."""
    labels: list[str] = []
    for raw in _LABEL.findall(source):
        label = " ".join(html.unescape(re.sub(r"<br\s*/?>", " ", raw)).split())
        if label and label not in labels:
            labels.append(label)
    text = "Diagram: " + " -> ".join(labels)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def on_page_markdown(markdown: str, page, config, **kwargs) -> str:  # noqa: ANN001, ANN003 - hook signature
    docs_dir = Path(config["docs_dir"])
    page_dir = posixpath.dirname(page.file.src_uri)

    def _swap(m: re.Match) -> str:
        source = source_of(m["body"], m["indent"])
        name = f"{SVG_DIR}/{diagram_hash(source)}.svg"
        if not (docs_dir / name).is_file():
            log.warning("%s: a Mermaid diagram has no rendered SVG (docs/%s); run `make diagrams`",
                        page.file.src_uri, name)
            return m[0]
        rel = posixpath.relpath(name, page_dir or ".")
        alt = alt_text(source).replace("[", "(").replace("]", ")")
        size = _SIZE.search((docs_dir / name).read_text(encoding="utf-8")[:2000])
        attrs = f" width={size[1]} height={size[2]}" if size else ""  # the page keeps its place while loading
        return f'{m["indent"]}[![{alt}]({rel}){{ .diagram{attrs} }}]({rel} "Open the diagram full size")'

    return FENCE.sub(_swap, markdown)
