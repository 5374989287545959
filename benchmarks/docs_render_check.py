"""Check that the docs render offline: every diagram as SVG and every formula as math, in headless Chromium.

Usage: ``make docs-check``, or ``python benchmarks/docs_render_check.py [--ref HEAD] [--site-dir DIR]``.

By default it checks a *clean tree*: ``git clone`` of ``--ref`` (HEAD) into a temporary folder, a plain
``mkdocs build --strict`` there (no ``make``, no npm), the site served by ``http.server`` on 127.0.0.1, and
every page loaded in headless Chromium with the network blocked (every host name resolves to nothing except
localhost, and a dead proxy; loopback bypasses it). ``--site-dir`` checks an existing build instead.

On each page it counts the diagrams (the ```` ```mermaid ```` fences of the page's Markdown) shown as a
loaded SVG image (``docs/hooks/diagrams.py``) or, for a fence left without its SVG, as an ``<svg>`` that
Mermaid drew (read with ``DOM.getDocument(pierce=true)``: Material draws into a closed shadow root), the
formulas (``.arithmatex``) typeset by KaTeX (a ``.katex`` inside, no ``.katex-error``), the requests that
left localhost or failed, and the code blocks wider than the page at 1280 px (they should wrap). It writes
``benchmarks/results/docs_render.json`` and exits 0 when everything rendered, nothing left localhost, no local
request failed and no code block scrolls; else 1.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_NETWORK = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",  # nothing resolves but loopback
    "--proxy-server=http://127.0.0.1:9",  # and every non-loopback request goes to a dead proxy
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", *NO_NETWORK,
)
WIDTH = 1280  # the window width pages are laid out at (a laptop)
LOCAL = re.compile(r"^(?:https?://(?:127\.0\.0\.1|localhost)(?::\d+)?/|data:|blob:|about:)")

# What one page shows, read once its images and fonts have loaded.
PAGE_JS = r"""(() => {
  const content = document.querySelector('.md-content') || document.body;
  const imgs = [...content.querySelectorAll('img.diagram')];
  const math = [...content.querySelectorAll('.arithmatex')];
  const raw = [];  // TeX delimiters left in the text outside code: math that was never typeset
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
  for (let n; (n = walker.nextNode());) {
    if (n.parentElement.closest('pre, code, .katex')) continue;
    if (/\$\$|\\\(|\\\[|\\(?:frac|mathrm|sum|big)\b/.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 60));
  }
  return JSON.stringify({
    ready: document.readyState === 'complete' && imgs.every(i => i.complete),
    diagram_images: imgs.length,
    diagram_svgs: imgs.filter(i => i.complete && i.naturalWidth > 0 && /\.svg$/.test(new URL(i.src).pathname)).length,
    formulas: math.length,
    formulas_rendered: math.filter(e => e.querySelector('.katex') && !e.querySelector('.katex-error')).length,
    raw_tex: raw,
    katex_fonts_loaded: [...document.fonts].filter(f => f.family.includes('KaTeX') && f.status === 'loaded').length,
    wide_code: [...content.querySelectorAll('pre > code')].filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => [e.scrollWidth - e.clientWidth, e.textContent.split('\n')[0].slice(0, 60)]),
    wide_tables: [...content.querySelectorAll('.md-typeset__scrollwrap, table')]
      .filter(e => e.scrollWidth > e.clientWidth + 1).length,
  });
})()"""


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


def check_page(browser: Browser, url: str, *, fences: int, formulas: int, wait_s: float,
               shot: Path | None = None) -> dict:
    """Load ``url`` in a fresh tab, wait until its ``fences`` diagrams and its formulas render (or ``wait_s``)."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": 2000, "deviceScaleFactor": 1, "mobile": False}, session)
    browser.send("Network.enable", {}, session)
    browser.events.clear()
    browser.send("Page.navigate", {"url": url}, session)
    deadline, state, drawn = time.monotonic() + wait_s, {}, 0
    while True:
        time.sleep(0.25)
        state = json.loads(browser.send("Runtime.evaluate", {"expression": PAGE_JS, "returnByValue": True},
                                        session)["result"]["value"])
        root = browser.send("DOM.getDocument", {"depth": -1, "pierce": True}, session)["root"]
        drawn = count_svg_diagrams(root)  # fences Mermaid drew itself (none while every SVG is committed)
        done = (state["ready"] and state["diagram_svgs"] + drawn >= fences
                and state["formulas_rendered"] >= max(formulas, state["formulas"]))
        if done or time.monotonic() > deadline:
            break
    if shot is not None:
        shot.write_bytes(__import__("base64").b64decode(browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session)["data"]))
    events = list(browser.events)
    browser.send("Target.closeTarget", {"targetId": target})
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in events if e.get("method") == "Network.requestWillBeSent"}
    failed = [urls.get(e["params"]["requestId"], "?") for e in events if e.get("method") == "Network.loadingFailed"]
    failed += [e["params"]["response"]["url"] for e in events
               if e.get("method") == "Network.responseReceived" and e["params"]["response"]["status"] >= 400]
    return {"url": url, "diagrams": fences, "diagrams_rendered": state["diagram_svgs"] + drawn,
            "diagram_images": state["diagram_images"], "formulas": max(formulas, state["formulas"]),
            "formulas_in_markdown": formulas, "math_elements": state["formulas"],
            "formulas_rendered": state["formulas_rendered"], "raw_tex": state["raw_tex"],
            "katex_fonts_loaded": state["katex_fonts_loaded"],
            "external_requests": sorted({u for u in urls.values() if not LOCAL.match(u)}),
            "failed_local_requests": sorted({u for u in failed if LOCAL.match(u)}),
            "wide_code": state["wide_code"], "wide_tables": state["wide_tables"]}


_CODE = re.compile(r"^([ \t]*)(`{3,}|~{3,}).*?^\1\2[ \t]*$|`[^`\n]+`", re.MULTILINE | re.DOTALL)
_TEX = re.compile(r"\$\$.+?\$\$|\\\(.+?\\\)|\\\[.+?\\\]", re.DOTALL)


def page_sources(docs_dir: Path) -> dict[str, tuple[int, int]]:
    """Every page's site-relative URL (directory URLs), with the Mermaid fences and the formulas of its
    Markdown (``$$ .. $$``, ``\\[ .. \\]``, ``\\( .. \\)`` outside code; the docs use no single-``$`` math)."""
    # the fence pattern of this checkout's hook, also for an older tree that had no such hook
    spec = importlib.util.spec_from_file_location("docs_diagrams_hook", ROOT / "docs/hooks/diagrams.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    out = {}
    for md in sorted(docs_dir.rglob("*.md")):
        rel = md.relative_to(docs_dir).with_suffix("").as_posix()
        url = "" if rel == "index" else rel.removesuffix("/index") + "/" if rel.endswith("/index") else rel + "/"
        text = md.read_text(encoding="utf-8")
        out[url] = (len(hook.find_diagrams(text)), len(_TEX.findall(_CODE.sub("", text))))
    return out


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``site`` on 127.0.0.1 (a free port) from a daemon thread."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: ANN002 - no access log on the terminal
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def build_clean(ref: str, work: Path) -> tuple[Path, Path, str]:
    """``git clone`` this repository at ``ref`` into ``work`` and run a plain ``mkdocs build --strict`` there."""
    tree = work / "tree"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "checkout", "--quiet", "--detach", ref], check=True)
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(work / "site")],
                   cwd=tree, env=env, check=True)
    return tree / "docs", work / "site", commit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD", help="the commit to clone and build (default HEAD)")
    ap.add_argument("--site-dir", type=Path, help="check this existing build (of ./docs) instead of a clean clone")
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait for one page to render")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/docs_render.json")
    ap.add_argument("--screenshots", type=Path, help="save a PNG of every page with a diagram or a formula here")
    args = ap.parse_args(argv)
    command = "python benchmarks/docs_render_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="docs_render_") as tmp:
        if args.site_dir:
            docs_dir, site, tree = ROOT / "docs", args.site_dir, f"existing build {args.site_dir} of the working tree"
            commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip()
        else:
            docs_dir, site, commit = build_clean(args.ref, Path(tmp))
            tree = f"git clone of {args.ref}, plain `mkdocs build --strict` (no make, no npm)"
        if not (site / "index.html").is_file():
            print(f"error: {site}/index.html not found", file=sys.stderr)
            return 2
        pages = page_sources(docs_dir)
        server, browser = serve(site), Browser(chromium=args.chromium)
        try:
            version = browser.send("Browser.getVersion")["product"]
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
            results = []
            for page, (n, tex) in pages.items():
                shot = args.screenshots / ((page.strip("/").replace("/", "_") or "index") + ".png") \
                    if args.screenshots else None
                results.append(check_page(browser, base + page, fences=n, formulas=tex, wait_s=args.wait, shot=shot))
        finally:
            browser.close()
            server.shutdown()
    for r in results:
        r["url"] = r["url"].split("/", 3)[3] or "index"
        if shot_dir := args.screenshots:
            name = shot_dir / ((r["url"].strip("/").replace("/", "_") or "index") + ".png")
            if not (r["diagrams"] or r["formulas"]):
                name.unlink(missing_ok=True)
    total = {k: sum(r[k] for r in results) for k in ("diagrams", "diagrams_rendered", "formulas", "formulas_rendered")}
    external = sorted({u for r in results for u in r["external_requests"]})
    failed = sorted({u for r in results for u in r["failed_local_requests"]})
    raw = [(r["url"], t) for r in results for t in r["raw_tex"]]
    wide = [(r["url"], *w) for r in results for w in r["wide_code"]]
    ok = (total["diagrams_rendered"] == total["diagrams"] and total["formulas_rendered"] == total["formulas"]
          and all(r["diagrams_rendered"] == r["diagrams"] for r in results)
          and not raw and not external and not failed and not wide)
    for r in results:
        if r["diagrams"] or r["formulas"]:
            print(f"{r['url']}: {r['diagrams_rendered']}/{r['diagrams']} diagrams as SVG, "
                  f"{r['formulas_rendered']}/{r['formulas']} formulas typeset")
    for url, text in raw:
        print(f"{url}: raw TeX in the text: {text!r}")
    for url, extra, first in wide:
        print(f"{url}: a code block {extra} px wider than the page at {WIDTH} px: {first!r}")
    for u in external:
        print(f"request that left localhost: {u}")
    for u in failed:
        print(f"failed local request: {u}")
    report = {
        "command": command.strip(), "commit": commit, "tree": tree, "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "chromium": version, "network": " ".join(NO_NETWORK), "width_px": WIDTH,
        "pages_checked": len(results), "diagrams": total["diagrams"], "diagrams_rendered": total["diagrams_rendered"],
        "formulas": total["formulas"], "formulas_rendered": total["formulas_rendered"], "raw_tex": raw,
        "external_requests": external, "failed_local_requests": failed, "wide_code_blocks": wide,
        "pages_with_wide_tables": [r["url"] for r in results if r["wide_tables"]], "ok": ok,
        "pages": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"{len(results)} pages of {commit[:10]} ({tree}): {total['diagrams_rendered']}/{total['diagrams']} diagrams, "
          f"{total['formulas_rendered']}/{total['formulas']} formulas, {len(external)} external requests, "
          f"{len(failed)} failed local requests, {len(wide)} wide code blocks -> {args.out}")
    print("OK: everything renders offline" if ok else "FAIL: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
