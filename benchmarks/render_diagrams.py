"""Render every Mermaid fence of the docs into a committed SVG (authoring time only; the build needs neither).

Usage: ``make diagrams`` (fetches the pinned Mermaid from npm once), or
``python benchmarks/render_diagrams.py --mermaid-tgz .cache/npm/mermaid-11.17.2.tgz [--force]``;
``--check`` only reports missing and stale SVGs (no browser, no npm; exit 1 when any).

Each ```` ```mermaid ```` fence in ``docs/**/*.md`` is rendered by Mermaid's own ``mermaid.render`` in headless
Chromium (driven over the DevTools protocol, as in ``docs_render_check.py``) into
``docs/diagrams/<hash>.svg``, named by the SHA-256 of its source (``docs/hooks/diagrams.py``, which swaps the
fence for that image at build time). Labels are Mermaid's usual HTML labels (XHTML in ``<foreignObject>``,
re-serialised as XML so an ``<img>`` reads the file; its SVG-text labels drop the ``>`` of ``->``), measured
in Arial metrics (Liberation Sans here), so the file shows the same on any machine with Arial or a
metric-compatible font. SVGs no fence uses any more are deleted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

from docs_render_check import Browser

ROOT = Path(__file__).resolve().parents[1]
MERMAID_CONFIG = {
    "startOnLoad": False,
    "securityLevel": "strict",
    "theme": "default",
    "flowchart": {"useMaxWidth": False},
    "fontFamily": "Arial, 'Liberation Sans', Helvetica, sans-serif",
    "themeVariables": {"fontFamily": "Arial, 'Liberation Sans', Helvetica, sans-serif"},
}


# Mermaid returns HTML markup (labels are XHTML in <foreignObject>, with <br>): re-serialise it as XML, so
# the file is a well-formed SVG that an <img> (an XML parser) reads.
XML_JS = ("new XMLSerializer().serializeToString("
          "new DOMParser().parseFromString(r.svg, 'text/html').body.querySelector('svg'))")


def load_hook():  # noqa: ANN201 - the module docs/hooks/diagrams.py
    spec = importlib.util.spec_from_file_location("docs_diagrams_hook", ROOT / "docs/hooks/diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(docs_dir: Path) -> dict[str, tuple[str, str]]:
    """``{hash: (source, first page)}`` for every Mermaid fence under ``docs_dir``."""
    hook, found = load_hook(), {}
    for md in sorted(docs_dir.rglob("*.md")):
        for source in hook.find_diagrams(md.read_text(encoding="utf-8")):
            found.setdefault(hook.diagram_hash(source), (source, md.relative_to(docs_dir).as_posix()))
    return found


def finish_svg(svg: str, *, digest: str, page: str, version: str) -> str:
    """Give the SVG its pixel size (an ``<img>`` then has one) and a header naming its source."""
    box = re.search(r'viewBox="([-\d.]+) ([-\d.]+) ([\d.]+) ([\d.]+)"', svg)
    if not box:
        raise ValueError("Mermaid returned an SVG without a viewBox")
    width, height = (f"{float(v):.0f}" for v in box.groups()[2:])
    tag = svg[: svg.index(">") + 1]  # the opening <svg ...>: its own size and max-width style go
    bare = re.sub(r'\s(?:width|height|style)="[^"]*"', "", tag)
    svg = bare.replace("<svg", f'<svg width="{width}" height="{height}"', 1) + svg[len(tag):]
    head = (f"<!-- Mermaid {version}, rendered by benchmarks/render_diagrams.py from a fence in docs/{page};"
            f" source sha256 {digest}: edit the fence, then run `make diagrams`. -->\n")
    ElementTree.fromstring(svg)  # well-formed XML, or raise
    return head + svg + "\n"


def render(jobs: dict[str, tuple[str, str]], *, tgz: Path, chromium: str) -> dict[str, str]:
    """``{hash: svg}``: each source rendered by the Mermaid build inside ``tgz``."""
    with tarfile.open(tgz) as tar, tempfile.TemporaryDirectory() as tmp:
        version = json.load(tar.extractfile("package/package.json"))["version"]
        (Path(tmp) / "mermaid.min.js").write_bytes(tar.extractfile("package/dist/mermaid.min.js").read())
        (Path(tmp) / "index.html").write_text('<!doctype html><meta charset="utf-8">'
                                              '<script src="mermaid.min.js"></script><body></body>')
        browser = Browser(chromium=chromium)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            browser.send("Page.navigate", {"url": (Path(tmp) / "index.html").as_uri()}, session)

            def evaluate(expr: str) -> object:
                reply = browser.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                                          "returnByValue": True}, session, timeout=60.0)
                if "exceptionDetails" in reply:
                    raise RuntimeError(reply["exceptionDetails"].get("exception", {}).get("description", reply))
                return reply["result"].get("value")

            deadline = time.monotonic() + 30
            while evaluate("typeof mermaid") != "object":
                if time.monotonic() > deadline:
                    raise TimeoutError("mermaid.min.js did not load")
                time.sleep(0.2)
            evaluate(f"mermaid.initialize({json.dumps(MERMAID_CONFIG)}); document.fonts.ready.then(() => 1)")
            out = {}
            for digest, (source, page) in jobs.items():
                svg = evaluate(f"mermaid.render('d{digest}', {json.dumps(source)}).then(r => {XML_JS})")
                out[digest] = finish_svg(svg, digest=digest, page=page, version=version)
            return out
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    ap.add_argument("--mermaid-tgz", type=Path, help="the npm tarball of Mermaid (`npm pack mermaid@11.17.2`)")
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--force", action="store_true", help="render every diagram again, not only new ones")
    ap.add_argument("--check", action="store_true", help="only report missing and stale SVGs; exit 1 if any")
    args = ap.parse_args(argv)
    svg_dir = args.docs_dir / load_hook().SVG_DIR
    found = collect(args.docs_dir)
    have = {p.stem for p in svg_dir.glob("*.svg")}
    missing = sorted(d for d in found if d not in have)
    stale = sorted(have - set(found))
    if args.check:
        for d in missing:
            print(f"missing: {svg_dir / d}.svg (a diagram in docs/{found[d][1]})")
        for d in stale:
            print(f"stale: {svg_dir / d}.svg (no fence has this source any more)")
        print(f"{len(found)} diagrams, {len(missing)} missing, {len(stale)} stale")
        return 1 if missing or stale else 0
    jobs = {d: found[d] for d in (found if args.force else missing)}
    if jobs:
        if not args.mermaid_tgz or not args.mermaid_tgz.is_file():
            print("error: --mermaid-tgz is needed to render (run `make diagrams`)", file=sys.stderr)
            return 2
        svg_dir.mkdir(parents=True, exist_ok=True)
        for digest, svg in render(jobs, tgz=args.mermaid_tgz, chromium=args.chromium).items():
            (svg_dir / f"{digest}.svg").write_text(svg, encoding="utf-8")
            print(f"rendered {svg_dir / digest}.svg ({len(svg)} bytes) from docs/{found[digest][1]}")
    for d in stale:
        (svg_dir / f"{d}.svg").unlink()
        print(f"removed {svg_dir / d}.svg (no fence uses it)")
    print(f"{len(found)} diagrams: {len(jobs)} rendered, {len(stale)} removed, {len(found) - len(jobs)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
