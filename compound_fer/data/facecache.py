"""The on-disk face-crop cache: one file per (folder, parameters), an entry per image keyed by its path,
size, mtime and landmark row; written atomically, a damaged file ignored and rebuilt.

An entry is ``("ok", crop (S, S, 3) uint8, packed masks, how, regions, crop landmarks (K, 2) or None,
scheme or None, landmark source or None)`` or ``("skip", reason)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Bump when the crop, mask or landmark geometry (or the entry layout) changes: entries of another
#: version live in another file (the version is part of its name) and are recomputed, not read.
#: 2: crops carry their landmarks (scheme, source); automatic detection options.
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$COMPOUND_FER_CACHE`` or ``~/.cache/compound_fer/faces``."""
    env = os.environ.get("COMPOUND_FER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "compound_fer" / "faces"


def file_key(path: str, lm: np.ndarray | None) -> str:
    """Cache key of one image: absolute path, byte size, mtime and a digest of its landmark row."""
    try:
        st = os.stat(path)
        stat = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stat = "missing"
    lmh = "-" if lm is None else hashlib.sha1(np.ascontiguousarray(lm, dtype=np.float32).tobytes()).hexdigest()[:16]
    return f"{os.path.abspath(path)}|{stat}|{lmh}"


def note_old_versions(cache_file: Path, params: dict) -> None:
    """Say (once per file) that caches of an older version sit beside ``cache_file`` and are not used."""
    if cache_file.is_file() or not cache_file.parent.is_dir():
        return
    import torch

    for other in cache_file.parent.glob("faces-*.pt"):
        try:
            old = torch.load(other, map_location="cpu", weights_only=True).get("params", {})
        except Exception:  # noqa: BLE001 - unreadable files are not ours to judge here
            continue
        same = {k: v for k, v in old.items() if k in params and k != "version"} \
            == {k: v for k, v in params.items() if k in old and k != "version"}
        if old.get("version") != params["version"] and same:
            log.warning("face cache %s was written by cache version %s (now %s): its crops carry no landmarks, so "
                        "these faces are preprocessed again into %s; the old file is left in place (delete it to "
                        "free space)", other, old.get("version"), params["version"], cache_file.name)


def load_cache(path: Path, params: dict) -> dict[str, tuple]:
    """Entries of a cache file whose parameters equal ``params`` ({} when absent, other or damaged)."""
    import torch

    if not path.is_file():
        return {}
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("params") != params:
            return {}
        out: dict[str, tuple] = {}
        imgs = blob["images"].numpy()
        for j, (key, status) in enumerate(zip(blob["keys"], blob["status"])):
            if status != "ok":
                out[key] = ("skip", status)
                continue
            slot = blob["slot"][j]
            lm = blob["landmarks"][slot]
            out[key] = ("ok", imgs[slot].transpose(1, 2, 0), blob["masks"][slot].numpy(), blob["methods"][j],
                        blob["regions"][j], None if lm.numel() == 0 else lm.numpy(), blob["schemes"][j] or None,
                        blob["lm_sources"][j] or None)
        return out
    except Exception as exc:  # a damaged cache is rebuilt, never fatal
        log.warning("ignoring unreadable face cache %s (%s); it will be rebuilt", path, exc)
        return {}


def save_cache(path: Path, params: dict, fresh: dict[str, tuple], old: dict[str, tuple]) -> None:
    """Write ``old`` entries updated with ``fresh`` ones, atomically; a failed write only warns."""
    import torch

    from compound_fer.io import save_torch

    entries = {**old, **fresh}
    cols: dict[str, list] = {k: [] for k in ("keys", "status", "methods", "regions", "slot", "schemes", "lm_sources")}
    imgs, masks, lms = [], [], []
    for key, r in entries.items():
        cols["keys"].append(key)
        ok = r[0] == "ok"
        cols["status"].append("ok" if ok else r[1])
        cols["slot"].append(len(imgs) if ok else -1)
        cols["methods"].append(r[3] if ok else "")
        cols["regions"].append(r[4] if ok else "")
        cols["schemes"].append((r[6] or "") if ok else "")
        cols["lm_sources"].append((r[7] or "") if ok else "")
        if ok:
            imgs.append(np.asarray(r[1]).transpose(2, 0, 1))
            masks.append(np.asarray(r[2]))
            lms.append(torch.zeros(0) if r[5] is None else torch.from_numpy(np.asarray(r[5], dtype=np.float32)))
    size = params["size"]
    blob = {
        "params": params, **cols, "landmarks": lms,
        "images": torch.from_numpy(np.stack(imgs)) if imgs else torch.zeros((0, 3, size, size), dtype=torch.uint8),
        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, 1), dtype=torch.uint8),
    }
    try:
        save_torch(path, blob)
    except OSError as exc:
        log.warning("could not write the face cache %s (%s); next run will preprocess again", path, exc)
