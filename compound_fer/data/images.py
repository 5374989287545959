"""Robust image reading: any common file becomes 8-bit RGB, and every failure names the file.

Grey, palette, RGBA, CMYK and 16-bit images are converted; huge images are downscaled while
decoding; zero-byte, truncated and corrupt files raise :class:`~compound_fer.errors.DataError`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from compound_fer.errors import DataError

#: File name endings read as images (case-insensitive): every format the reader decodes (a .gif: its first frame).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Longest side kept when decoding; larger images are downscaled first (detection needs no more).
MAX_SIDE = 1600


class Skip(NamedTuple):
    """One file left out, and why."""

    file: str
    reason: str


class SkipReport(list):
    """A list of :class:`Skip` (file, reason) kept in ``FaceSet.meta['skipped']``."""

    def add(self, file: str | os.PathLike, reason: str) -> None:
        self.append(Skip(str(file), reason))

    def summary(self, *, limit: int = 10) -> str:
        """A short human summary: counts per reason, then the first ``limit`` files."""
        if not self:
            return "no files skipped"
        by_reason: dict[str, int] = defaultdict(int)
        for s in self:
            by_reason[s.reason.split(":")[0]] += 1
        head = ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
        lines = [f"skipped {len(self)} file(s): {head}"]
        lines += [f"  {s.file}: {s.reason}" for s in self[:limit]]
        if len(self) > limit:
            lines.append(f"  ... and {len(self) - limit} more (`compound-fer data-info --check-images FOLDER` "
                         f"lists them all)")
        return "\n".join(lines)


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file name with an image suffix (not hidden)."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike, *, max_side: int | None = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array; return it with the scale applied (<= 1).

    Raises DataError (naming the file and what to do) for zero-byte, truncated or undecodable files.
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions") from None
    if size == 0:
        raise DataError(f"{path}: zero-byte file; re-copy it from the original data or delete it")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img, (w0, _h0) = _open_image(path, max_side)
        with img:
            _refuse_bomb(img, path)
            img.load()
            scale = img.size[0] / w0  # < 1 when draft() decoded it at reduced size
            img = ImageOps.exif_transpose(img) if img.getexif() else img
            arr = _to_rgb8(img, path)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (corrupt or wrong format); replace or delete it") from None
    except Image.DecompressionBombError:
        raise DataError(f"{path}: image is too large to decode safely; downscale it (e.g. to 2000 px) first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        what = "truncated" if "truncated" in msg.lower() else "corrupt"
        raise DataError(f"{path}: {what} image ({msg}); re-copy it from the original data or delete it") from None
    h, w = arr.shape[:2]
    if max_side and max(h, w) > max_side:
        import cv2

        f = max_side / max(h, w)
        arr = cv2.resize(arr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        scale *= arr.shape[1] / w
    return np.ascontiguousarray(arr), scale


def _open_image(path: Path, max_side: int | None):
    """Open ``path`` lazily; return it with its full size. A JPEG larger than ``max_side`` is set to
    decode at 1/2, 1/4 or 1/8 size (``draft``), so a 100-megapixel photo costs a few megabytes; PIL's
    decompression-bomb check, which counts full-size pixels, is then applied to the reduced size
    instead (see ``_refuse_bomb``)."""
    from PIL import Image, JpegImagePlugin

    with open(path, "rb") as f:
        jpeg = f.read(3) == b"\xff\xd8\xff"
    if jpeg:
        img = JpegImagePlugin.JpegImageFile(str(path))  # no full-size pixel check before draft()
        full = img.size
        if max_side and max(full) > max_side:
            img.draft("RGB", (max_side, max_side))  # decode at reduced size: fast and small
        return img, full
    with warnings.catch_warnings():  # the size is checked by _refuse_bomb, with a message naming the file
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(path)
    return img, img.size


def _refuse_bomb(img, path: Path) -> None:
    """Refuse an image whose decoded size (after any JPEG draft) exceeds PIL's pixel limit."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if limit and w * h > limit:
        how = ("even at 1/8 size" if getattr(img, "format", None) == "JPEG"
               else "(only JPEGs are decoded at reduced size)")
        raise DataError(f"{path}: {w}x{h} pixels is too large to decode safely {how}; downscale it "
                        f"(e.g. to 2000 px) first")


def _to_rgb8(img, path: Path) -> np.ndarray:
    """Any PIL mode -> uint8 RGB: 16/32-bit integer and float images are rescaled, alpha dropped."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        from PIL import Image

        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))  # transparent pixels -> black, like the padding
        img = Image.alpha_composite(bg, img)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, P, CMYK, YCbCr, 1 ...
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise DataError(f"{path}: unexpected image shape {arr.shape}; convert it to an RGB JPEG or PNG")
    return arr


def file_digest(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes (duplicate detection)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_duplicates(paths: Iterable[str | os.PathLike]) -> list[list[str]]:
    """Groups of files with identical bytes (sorted; first of each group is the one kept).

    Cheap: only files sharing a byte size are hashed.
    """
    by_size: dict[int, list[str]] = defaultdict(list)
    for p in paths:
        try:
            by_size[os.path.getsize(p)].append(str(p))
        except OSError:
            continue
    groups: list[list[str]] = []
    for size, same in by_size.items():
        if len(same) < 2 or size == 0:
            continue
        by_hash: dict[str, list[str]] = defaultdict(list)
        for p in same:
            try:
                by_hash[file_digest(p)].append(p)
            except OSError:
                continue
        groups += [sorted(g) for g in by_hash.values() if len(g) > 1]
    return sorted(groups)
