"""MkDocs hook and script: the tables of methods, backbones and readers are made from their registries.

A page holds ``<!-- registry-table: NAME -->`` ... ``<!-- /registry-table -->`` (NAME: methods, backbones,
readers); what lies between is the table that registry gives. The hook fills it when the site is built,
so the site never lists a stale table; ``python docs/hooks/registry_tables.py`` rewrites the pages
themselves (``--check``: exit 1 naming the stale ones), and tests/test_registry_tables.py fails when a
page's table is out of date. Adding a method, backbone or reader therefore needs no hand-written row.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable

DOCS = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(<!-- registry-table: (\w+) -->\n)(.*?)(<!-- /registry-table -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def methods_table() -> str:
    """Every registered continual method, what it is, and the options ``continual.method_options`` takes."""
    from compound_fer.training.registry import available

    rows = ["| method | what it is | memory | options (`continual.method_options.<method>`) |", "|---|---|---|---|"]
    for name, entry in available().items():
        opts = "; ".join(f"`{k}`: {_cell(d)}" if d else f"`{k}`" for k, d in entry.options.items()) or "none"
        rows.append(f"| `{name}` | {_cell(entry.summary)} | {'yes' if entry.uses_memory else 'no'} | {opts} |")
    return "\n".join(rows)


def backbones_table() -> str:
    """Every registered backbone (compound_fer/backbones/): weights, default size, Grad-CAM layer, split."""
    from compound_fer import backbones

    rows = ["| backbone | ImageNet weights (offline) | default size | Grad-CAM layer | trunk / tail (feature size) |",
            "|---|---|---|---|---|"]
    for s in backbones.specs():
        rows.append(f"| `{s.name}` | {_cell(s.weights or 'none: always random init')} | {s.default_size} | "
                    f"`{s.target_layer}` | {_cell(s.split)} |")
    return "\n".join(rows)


def readers_table() -> str:
    """The reader table (compound_fer.data.load.READERS) in the order a folder is tried."""
    from compound_fer.data.load import READERS

    rows = ["| tried | reader | a folder of it holds | read with |", "|---|---|---|---|"]
    for i, r in enumerate(READERS, start=1):
        rows.append(f"| {i} | `{r.name}` | {_cell(r.layout)} | `{r.read.__module__}.{r.read.__name__}` |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {"methods": methods_table, "backbones": backbones_table,
                                        "readers": readers_table}


def render(markdown: str) -> str:
    """``markdown`` with every registry-table block holding its registry's current table."""
    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise ValueError(f"unknown registry table {name!r}; known: {', '.join(TABLES)}")
        return f"{m.group(1)}{TABLES[name]()}\n{m.group(4)}"

    return _BLOCK.sub(fill, markdown)


def stale_pages(docs: Path = DOCS) -> list[Path]:
    """The pages under ``docs`` whose registry tables differ from the registries."""
    return [p for p in sorted(docs.glob("*.md")) if _BLOCK.search(t := p.read_text(encoding="utf-8"))
            and render(t) != t]


def on_page_markdown(markdown: str, **kwargs) -> str:  # noqa: ANN003 - MkDocs hook signature
    return render(markdown) if "<!-- registry-table:" in markdown else markdown


def main(argv: list[str]) -> int:
    """Rewrite the stale pages (``--check``: only name them, exit 1)."""
    stale = stale_pages()
    for p in stale:
        if "--check" not in argv:
            p.write_text(render(p.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"{'stale' if '--check' in argv else 'updated'}: {p.relative_to(DOCS.parent)}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.path.insert(0, str(DOCS.parent))  # the checkout's package, run from anywhere
    raise SystemExit(main(sys.argv[1:]))
