"""The on-disk face-crop cache: one file per (folder, parameters), an entry per image keyed by its path,
size, mtime and landmark row; written atomically, a damaged file ignored and rebuilt.

An entry is a :class:`Cropped` face or a :class:`Skipped` file (named tuples, as the face workers return them).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

from compound_fer.io import save_torch

log = logging.getLogger(__name__)

#: Bump when the crop, mask or landmark geometry (or the entry layout) changes: entries of another
#: version live in another file (the version is part of its name) and are recomputed, not read.
#: 2: crops carry their landmarks (scheme, source); automatic detection options.
CACHE_VERSION = 2


class Cropped(NamedTuple):
    """A face made from one file: (S, S, 3) uint8 crop, packed region masks, how it was placed, where its
    regions came from, its landmarks in crop pixels ((K, 2) or None) with their scheme and source."""

    status: str  # "ok"
    image: np.ndarray
    masks: np.ndarray
    how: str
    regions: str
    landmarks: np.ndarray | None
    scheme: str | None
    source: str | None


class Skipped(NamedTuple):
    """A file that gave no face, and why."""

    status: str  # "skip"
    reason: str


#: One cache entry, as a face worker returns it.
Entry = Union[Cropped, Skipped]


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


def load_cache(path: Path, params: dict) -> dict[str, Entry]:
    """Entries of a cache file whose parameters equal ``params`` ({} when absent, other or damaged)."""
    import torch

    if not path.is_file():
        return {}
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("params") != params:
            return {}
        out: dict[str, Entry] = {}
        imgs = blob["images"].numpy()
        for j, (key, status) in enumerate(zip(blob["keys"], blob["status"])):
            if status != "ok":
                out[key] = Skipped("skip", status)
                continue
            slot = blob["slot"][j]
            lm = blob["landmarks"][slot]
            out[key] = Cropped("ok", imgs[slot].transpose(1, 2, 0), blob["masks"][slot].numpy(), blob["methods"][j],
                        blob["regions"][j], None if lm.numel() == 0 else lm.numpy(), blob["schemes"][j] or None,
                        blob["lm_sources"][j] or None)
        return out
    except Exception as exc:  # a damaged cache is rebuilt, never fatal
        log.warning("ignoring unreadable face cache %s (%s); it will be rebuilt", path, exc)
        return {}


def save_cache(path: Path, params: dict, fresh: dict[str, Entry], old: dict[str, Entry]) -> None:
    """Write ``old`` entries updated with ``fresh`` ones, atomically; a failed write only warns."""
    import torch

    entries = {**old, **fresh}
    cols: dict[str, list] = {k: [] for k in ("keys", "status", "methods", "regions", "slot", "schemes", "lm_sources")}
    imgs, masks, lms = [], [], []
    for key, r in entries.items():
        cols["keys"].append(key)
        ok = r.status == "ok"
        cols["status"].append("ok" if ok else r.reason)
        cols["slot"].append(len(imgs) if ok else -1)
        cols["methods"].append(r.how if ok else "")
        cols["regions"].append(r.regions if ok else "")
        cols["schemes"].append((r.scheme or "") if ok else "")
        cols["lm_sources"].append((r.source or "") if ok else "")
        if ok:
            imgs.append(np.asarray(r.image).transpose(2, 0, 1))
            masks.append(np.asarray(r.masks))
            lms.append(torch.zeros(0) if r.landmarks is None else torch.from_numpy(np.asarray(r.landmarks,
                                                                                          dtype=np.float32)))
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
