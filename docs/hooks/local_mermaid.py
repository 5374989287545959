"""MkDocs hook: serve a local Mermaid build when one is present, so diagrams render offline.

The 3.5 MB ``mermaid.min.js`` is not tracked (no file over 2 MB in the repository). Put any Mermaid 11
build at ``docs/javascripts/vendor/mermaid.min.js`` (ignored by git) and the site loads it; without it,
Material loads Mermaid from its CDN when a page with a diagram is opened.
"""

from __future__ import annotations

from pathlib import Path

LOCAL = "javascripts/vendor/mermaid.min.js"


def on_config(config, **kwargs):  # noqa: ANN001, ANN201 - MkDocs hook signature
    if (Path(config["docs_dir"]) / LOCAL).is_file() and LOCAL not in config["extra_javascript"]:
        config["extra_javascript"].append(LOCAL)
    return config
