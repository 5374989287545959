"""The docs tables of methods, backbones and readers are made from their registries
(docs/hooks/registry_tables.py), and the pages hold the current ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "registry_tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("registry_tables", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pages_hold_the_registries_current_tables(tables):
    assert tables.stale_pages() == [], "run `python docs/hooks/registry_tables.py` to regenerate the docs tables"
    pages = {p.name: p.read_text(encoding="utf-8") for p in tables.DOCS.glob("*.md")}
    assert "<!-- registry-table: methods -->" in pages["configuration.md"]
    assert "<!-- registry-table: backbones -->" in pages["configuration.md"]
    assert "<!-- registry-table: readers -->" in pages["data.md"]


def test_a_stale_table_is_replaced_and_an_unknown_one_refused(tables):
    from compound_fer import backbones

    page = "intro\n<!-- registry-table: backbones -->\n| old | row |\n<!-- /registry-table -->\nend\n"
    out = tables.render(page)
    assert "| old | row |" not in out and out.startswith("intro\n") and out.endswith("end\n")
    assert all(f"| `{name}` |" in out for name in backbones.names())
    assert tables.render(out) == out
    assert tables.on_page_markdown("no table here", page=None) == "no table here"
    with pytest.raises(ValueError, match="unknown registry table 'heads'"):
        tables.render("<!-- registry-table: heads -->\n<!-- /registry-table -->")


def test_every_method_reader_and_option_has_its_row(tables):
    from compound_fer.data.load import READERS
    from compound_fer.training.registry import available

    methods, readers = tables.methods_table(), tables.readers_table()
    for name, entry in available().items():
        row = next(line for line in methods.splitlines() if line.startswith(f"| `{name}` |"))
        assert all(f"`{key}`" in row for key in entry.options), name
    assert [line.split("|")[2].strip() for line in readers.splitlines()[2:]] == [f"`{r.name}`" for r in READERS]
