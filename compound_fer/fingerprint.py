"""A run folder's fingerprint: which config and data its results come from, so runs never mix.

``fingerprint.json`` in the output folder holds the settings that shape results (not seeds, methods,
orders, shot counts or threads: those only add or skip rows, each in its own file) and a cheap digest
of the data folders (relative file names and sizes, no decoding). ``--resume`` into a folder with
another fingerprint is refused, naming what differs; a fresh run into a folder that already holds
results is refused unless ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from compound_fer.config import ProtocolConfig, load_config
from compound_fer.data.index import walk_tree
from compound_fer.errors import ConfigError
from compound_fer.io import write_json

log = logging.getLogger(__name__)

FILE = "fingerprint.json"
FORMAT = 1

#: Config keys that select which rows a run computes (each row has its own file), not what a row holds.
IGNORED_KEYS = frozenset({
    "name", "seeds", "threads", "device", "loggers", "data.path", "data.test_path",
    "continual.methods", "continual.orders", "fewshot.enabled", "fewshot.shots", "fewshot.compounds",
    "fewshot.repeats",
})

#: What a run writes in its folder: removed by ``--overwrite`` (nothing else there is touched).
RUN_ARTEFACTS = ("rows", "checkpoints", "models", "logs", "figures", "results.json", "results.csv", "results.md",
                 "config.yaml", FILE)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "method_options":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_settings(cfg: Any) -> dict[str, Any]:
    """The flat ``section.key -> value`` settings of a config that shape its results."""
    flat = _flatten(cfg.model_dump(mode="json"))
    return {k: v for k, v in sorted(flat.items()) if k not in IGNORED_KEYS}


def data_digest(path: str | os.PathLike | None) -> dict[str, Any]:
    """Where the data is and a digest of its file names and sizes (seconds for thousands of files)."""
    if path is None:
        return {"path": "synthetic"}
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        return {"path": str(root), "files": 0, "digest": None}
    h = hashlib.sha256()
    n = 0
    for dirpath, names in walk_tree(root):  # linked folders once each: a link loop is not walked round and round
        for name in names:
            p = Path(dirpath) / name
            try:
                size = p.stat().st_size
            except OSError:
                continue
            h.update(f"{p.relative_to(root).as_posix()}\0{size}\n".encode())
            n += 1
    return {"path": str(root), "files": n, "digest": h.hexdigest()}


def make(cfg: Any, *, data_path: str | os.PathLike | None, test_path: str | os.PathLike | None) -> dict[str, Any]:
    """The fingerprint of a run of ``cfg`` on ``data_path`` (None: the synthetic faces) and ``test_path``."""
    settings = config_settings(cfg)
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    synthetic = cfg.data.source == "synthetic" and data_path is None
    return {
        "format": FORMAT,
        "config_name": cfg.name,
        "config_sha256": hashlib.sha256(blob).hexdigest(),
        "settings": settings,
        "data": data_digest(None if synthetic else (data_path or cfg.data.path)),
        "test_data": data_digest(test_path) if test_path else None,
    }


def differences(old: dict[str, Any], new: dict[str, Any], *, limit: int = 8) -> list[str]:
    """Human lines naming what differs between two fingerprints (empty: the same run)."""
    lines: list[str] = []
    a, b = old.get("settings", {}), new.get("settings", {})
    # a key this code added since the folder was written counts as its default there (the only value it had)
    defaults = config_settings(ProtocolConfig())
    a = {k: a.get(k, defaults.get(k, "(unset)")) for k in b}
    changed = [k for k in sorted(b) if a[k] != b[k]]
    lines += [f"{k}: {a[k]!r} in the folder, {b[k]!r} now" for k in changed[:limit]]
    if len(changed) > limit:
        lines.append(f"... and {len(changed) - limit} more setting(s)")
    for which in ("data", "test_data"):
        da, db = old.get(which) or {}, new.get(which) or {}
        if da.get("digest") != db.get("digest") or (da.get("digest") is None and da.get("path") != db.get("path")):
            what = "different files" if da.get("path") == db.get("path") else "another folder"
            lines.append(f"{which}: {_where(da)} in the folder, {_where(db)} now: {what}")
    return lines


def _where(d: dict[str, Any]) -> str:
    if not d:
        return "none"
    if d.get("path") == "synthetic":
        return "the synthetic faces"
    return f"{d.get('path')} ({d.get('files', 0)} files)"


def holds_results(out_dir: Path) -> bool:
    """True when ``out_dir`` holds rows, models or results of a run (a fingerprint alone does not count)."""
    if any((out_dir / f).is_file() for f in ("results.json", "results.md")):
        return True
    return any(any((out_dir / sub).glob(pat)) for sub, pat in (("rows", "*.json"), ("models", "*.pt"),
                                                                ("checkpoints", "*.ckpt")))


def _legacy(out_dir: Path) -> dict[str, Any] | None:
    """A folder written before fingerprints: its config.yaml gives the settings (the data is unknown)."""
    p = out_dir / "config.yaml"
    if not p.is_file():
        return None

    try:
        return {"settings": config_settings(load_config(p)), "legacy": True}
    except ConfigError:
        return None


def read(out_dir: Path) -> dict[str, Any] | None:
    """The folder's fingerprint, or None when it has none; a torn file is a ConfigError naming it."""
    p = out_dir / FILE
    if not p.is_file():
        return _legacy(out_dir)
    try:
        fp = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{p} is unreadable ({err}); the folder's origin is unknown: use another --out, or "
                          f"--overwrite to start it again") from None
    if not isinstance(fp, dict) or "settings" not in fp:
        raise ConfigError(f"{p} is not a run fingerprint; use another --out, or --overwrite to start it again")
    return fp


def clear(out_dir: Path) -> list[Path]:
    """Remove what a previous run wrote in ``out_dir`` (only the run's own files and folders)."""
    gone = []
    for name in RUN_ARTEFACTS:
        p = out_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        gone.append(p)
    return gone


def claim(out_dir: str | os.PathLike, fp: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Check that a run with fingerprint ``fp`` may write in ``out_dir``, then record ``fp`` there.

    Refused (ConfigError): ``resume`` into a folder of another config or data (naming what differs);
    a fresh run into a folder holding results, unless ``overwrite`` (which clears the old run first).
    """
    out_dir = Path(out_dir)
    if overwrite:
        if resume:
            raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                              "--overwrite deletes it")
        gone = clear(out_dir) if out_dir.is_dir() else []
        if gone:
            log.info("--overwrite: removed the previous run in %s (%s)", out_dir, ", ".join(p.name for p in gone))
    elif out_dir.is_dir() and holds_results(out_dir):
        if not resume:
            raise ConfigError(f"--out {out_dir} already holds a run; add --resume to continue it (completed rows are "
                              f"kept), --overwrite to replace it, or choose another --out")
        old = read(out_dir)
        if old is not None:
            diff = differences(old, fp)
            if old.get("legacy"):
                diff = [d for d in diff if not d.startswith(("data:", "test_data:"))]
            if diff:
                raise ConfigError(f"--resume: {out_dir} holds a run of another config or data, so its rows cannot be "
                                  f"reused; it differs in\n  " + "\n  ".join(diff)
                                  + "\nuse another --out, the folder's config (" + str(out_dir / "config.yaml")
                                  + "), or --overwrite to replace it")
    write_json(out_dir / FILE, fp)
