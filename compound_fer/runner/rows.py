"""Rows on disk between runs: a completed row read back (resume), the temporary files a killed write left."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["read_row", "remove_stale_temp_files"]


def read_row(path: Path) -> dict | None:
    """A completed row written by this runner, or None when absent or unusable (then it is recomputed).

    Rows are written atomically, so a torn row means outside damage; it is logged and never trusted.
    """
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("resume: %s is unreadable (%s); recomputing it", path, err)
        return None
    if not isinstance(row, dict) or "kind" not in row or "seed" not in row:
        log.warning("resume: %s is not a results row; recomputing it", path)
        return None
    return row


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete the temporary files a killed atomic write left (``.<name>.*.tmp``); they are never read."""
    gone = []
    for sub in ("rows", "checkpoints", "models"):
        for tmp in (out_dir / sub).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    if gone:
        log.info("resume: removed %d temporary file(s) left by an interrupted write", len(gone))
    return gone
