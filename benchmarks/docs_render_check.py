"""Check that every Mermaid diagram of the built docs renders as SVG in headless Chromium with no network.

Usage: ``python benchmarks/docs_render_check.py [--site-dir site] [--chromium chromium]`` after ``make docs``.
It serves the site on 127.0.0.1, loads each page that has a diagram in headless Chromium with every other
host blocked (a dead proxy; loopback bypasses it), and counts the ``<svg>`` inside each ``.mermaid`` element.

Material for MkDocs renders a diagram into a *closed* shadow root of ``div.mermaid``, which
``chromium --dump-dom`` does not serialise; so the script speaks the DevTools protocol over
``--remote-debugging-pipe`` and reads the DOM with ``pierce: true``, which includes closed shadow roots.
Exit 0 when every page shows as many SVGs as it has diagrams, else 1. ``--layout`` also lists, for every
page, the tables and code blocks wider than the page at 1280 px (they scroll sideways).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",  # every non-loopback request fails: no network
)
WIDTH = 1280  # the window width pages are laid out at (a laptop)

# Tables and code blocks wider than the page at WIDTH (they scroll sideways): the first cell or line of each.
WIDE_JS = """JSON.stringify([...document.querySelectorAll(
  '.md-typeset__scrollwrap, .md-typeset table, .md-content pre > code')]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => [e.tagName === 'CODE' ? 'code' : 'table', e.scrollWidth - e.clientWidth,
             (e.querySelector('th, td') || e).textContent.trim().split('\\n')[0].slice(0, 50)]))"""


class Browser:
    """A headless Chromium driven over the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, *, chromium: str) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _fds() -> None:  # in the child: the protocol wants its pipes on fds 3 (in) and 4 (out)
            src_in, src_out = os.dup(to_child_r), os.dup(from_child_w)  # free of 3 and 4 before the moves
            os.dup2(src_in, 3)
            os.dup2(src_out, 4)

        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        cmd = [chromium, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", "about:blank"]
        self._proc = subprocess.Popen(cmd, preexec_fn=_fds, pass_fds=(3, 4),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf, self._next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send one command and return its result (events that arrive meanwhile go to ``self.events``)."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the protocol pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        """Ask Chromium to quit (kill it if it does not) and remove its temporary profile."""
        try:
            self.send("Browser.close", timeout=5.0)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        self._profile.cleanup()


def _walk(node: dict):
    yield node
    for child in node.get("children", []) + node.get("shadowRoots", []):
        yield from _walk(child)
    if "contentDocument" in node:
        yield from _walk(node["contentDocument"])


def count_svg_diagrams(root: dict) -> int:
    """How many ``.mermaid`` elements hold an ``<svg>`` in a DOM tree from ``DOM.getDocument``."""
    rendered = 0
    for node in _walk(root):
        attrs = node.get("attributes", [])
        classes = dict(zip(attrs[::2], attrs[1::2])).get("class", "").split()
        if "mermaid" in classes and any(n.get("localName") == "svg" for n in _walk(node) if n is not node):
            rendered += 1
    return rendered


def check_page(browser: Browser, url: str, *, expected: int, wait_s: float) -> dict:
    """Load ``url`` in a fresh tab and wait until its ``expected`` diagrams are SVG (or ``wait_s`` passes)."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": 2000, "deviceScaleFactor": 1, "mobile": False}, session)
    browser.send("Network.enable", {}, session)
    browser.events.clear()
    browser.send("Page.navigate", {"url": url}, session)
    deadline, rendered = time.monotonic() + wait_s, 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        root = browser.send("DOM.getDocument", {"depth": -1, "pierce": True}, session)["root"]
        rendered = count_svg_diagrams(root)
        if rendered >= expected:
            break
    wide = json.loads(browser.send("Runtime.evaluate", {"expression": WIDE_JS, "returnByValue": True},
                                   session)["result"]["value"])
    urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    hosts = sorted({m.group(1) for u in urls if (m := re.match(r"^https?://([^/:]+)", u))})
    browser.send("Target.closeTarget", {"targetId": target})
    return {"url": url, "diagrams": expected, "svg": rendered, "wide": wide,
            "blocked_hosts": [h for h in hosts if not h == "127.0.0.1"]}


def site_pages(site: Path) -> dict[str, int]:
    """Every site-relative page path, with how many Mermaid diagrams it holds."""
    return {html.relative_to(site).as_posix().removesuffix("index.html"):
            html.read_text(encoding="utf-8").count('<pre class="mermaid">')
            for html in sorted(site.rglob("*.html")) if html.name != "404.html"}


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``site`` on 127.0.0.1 (a free port) from a daemon thread."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: ANN002 - no access log on the terminal
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site-dir", type=Path, default=Path("site"))
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait for one page's diagrams")
    ap.add_argument("--layout", action="store_true",
                    help=f"also load the pages without diagrams and list tables and code wider than {WIDTH} px")
    args = ap.parse_args(argv)
    if not (args.site_dir / "index.html").is_file():
        print(f"error: {args.site_dir}/index.html not found (run `make docs` first)", file=sys.stderr)
        return 2
    pages = {p: n for p, n in site_pages(args.site_dir).items() if n or args.layout}
    local = (args.site_dir / "javascripts/vendor/mermaid.min.js").is_file()
    print(f"site {args.site_dir}: {sum(pages.values())} diagrams on {sum(1 for n in pages.values() if n)} pages; "
          f"local Mermaid build: {'yes' if local else 'no (the CDN, blocked here)'}")
    server, browser = serve(args.site_dir), Browser(chromium=args.chromium)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        results = [check_page(browser, base + page, expected=n, wait_s=args.wait if n else 1.0)
                   for page, n in pages.items()]
    finally:
        browser.close()
        server.shutdown()
    for r in results:
        if r["diagrams"]:
            print(f"{r['url']}: {r['svg']}/{r['diagrams']} diagrams as SVG; "
                  f"blocked requests to: {', '.join(r['blocked_hosts']) or 'none'}")
        for kind, extra, first in r["wide"] if args.layout else ():
            print(f"{r['url']}: {kind} {extra} px wider than the page at {WIDTH} px: {first!r}")
    ok = all(r["svg"] == r["diagrams"] for r in results)
    print("all diagrams render" if ok else "FAIL: some diagrams did not render")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
