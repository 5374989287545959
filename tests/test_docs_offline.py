"""The docs render offline from committed files (no browser here: benchmarks/docs_render_check.py has one).

Every Mermaid fence has its committed SVG (rendered from that very source), the diagram hook swaps each fence
for it, and every script or stylesheet the site adds is a file under docs/, not a CDN address.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_diagrams_hook", DOCS / "hooks" / "diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md"))


def test_every_diagram_has_its_svg_rendered_from_the_same_source_and_none_is_stale():
    hook = _hook()
    wanted = {hook.diagram_hash(src) for page in _pages() for src in hook.find_diagrams(page.read_text("utf-8"))}
    assert wanted, "the docs have Mermaid fences"
    have = {p.stem: p for p in (DOCS / hook.SVG_DIR).glob("*.svg")}
    assert not wanted - have.keys(), "missing SVG: run `make diagrams`"
    assert not have.keys() - wanted, "stale SVG (no fence has its source): run `make diagrams`"
    for digest, path in have.items():
        head = path.read_text("utf-8")[:400]
        assert f"source sha256 {digest}" in head and "<svg" in head
        assert "<script" not in path.read_text("utf-8")
        assert ElementTree.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"  # an <img> reads XML


def test_the_hook_swaps_every_fence_for_its_svg_image():
    hook = _hook()
    for page in _pages():
        text = page.read_text("utf-8")
        if not hook.find_diagrams(text):
            continue
        src_uri = page.relative_to(DOCS).as_posix()
        out = hook.on_page_markdown(text, SimpleNamespace(file=SimpleNamespace(src_uri=src_uri)),
                                    {"docs_dir": str(DOCS)})
        assert "```mermaid" not in out
        image = r"\]\((?:\.\./)*diagrams/[0-9a-f]{16}\.svg\)\{ \.diagram width=\d+ height=\d+ \}"
        assert len(re.findall(image, out)) == len(hook.find_diagrams(text))


def test_a_fence_without_its_svg_is_left_and_logged(tmp_path, caplog):
    hook = _hook()
    md = "text\n\n```mermaid\nflowchart LR\n  A --> B\n```\n"
    page = SimpleNamespace(file=SimpleNamespace(src_uri="x.md"))
    assert hook.on_page_markdown(md, page, {"docs_dir": str(tmp_path)}) == md
    assert "make diagrams" in caplog.text
    (tmp_path / "diagrams").mkdir()
    (tmp_path / "diagrams" / f"{hook.diagram_hash(hook.find_diagrams(md)[0])}.svg").write_text("<svg/>")
    assert "diagrams/" in hook.on_page_markdown(md, page, {"docs_dir": str(tmp_path)})


def test_site_scripts_and_styles_are_local_files_and_math_is_configured():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text("utf-8"), Loader=Loader)  # noqa: S506 - SafeLoader
    assets = [a if isinstance(a, str) else a["path"] for a in config["extra_javascript"] + config["extra_css"]]
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), asset
        assert (DOCS / asset).is_file(), asset
    assert "javascripts/vendor/katex/katex.min.js" in assets
    assert (DOCS / "javascripts/vendor/katex/LICENSE").is_file()
    arithmatex = [e for e in config["markdown_extensions"] if isinstance(e, dict) and "pymdownx.arithmatex" in e]
    assert arithmatex and arithmatex[0]["pymdownx.arithmatex"]["generic"] is True
    css = (DOCS / "javascripts/vendor/katex/katex.min.css").read_text("utf-8")
    for font in re.findall(r"url\((fonts/[^)]+\.woff2)\)", css):
        assert (DOCS / "javascripts/vendor/katex" / font).is_file(), font
