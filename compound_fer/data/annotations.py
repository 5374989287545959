"""Per-image annotation files of a data folder: ``landmarks.csv`` (points) and ``aus.csv`` (action units).

Both are checked row by row; every problem is a DataError naming the file and line, raised before any
image is decoded (so a bad file never touches the face cache). Formats: docs/data.md.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path

import numpy as np

from compound_fer.data.delimited import decode
from compound_fer.data.schemes import SCHEMES, get_scheme
from compound_fer.errors import DataError
from compound_fer.taxonomy import ACTION_UNITS

#: A landmark point may lie this far (a fraction of the image's longer side) outside the image: chins and
#: jaw lines of tightly cropped photos run past the border; rows in another frame or garbage go further.
OUTSIDE_TOLERANCE = 0.25
#: FACS intensity letters -> [0, 1] (as the CFEE workbook).
AU_LETTERS = {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8, "e": 1.0}
_SCHEME_OF_K = {s.n_points: s.name for s in SCHEMES.values()}
log = logging.getLogger(__name__)


class LandmarkTable(dict):
    """{file name: (K, 2) float32} from a landmarks file, keyed by the ``file`` column as written;
    ``scheme`` names the point order, ``lines`` the line of each key, ``path`` the file. Match files
    with :func:`row_key`."""

    def __init__(self, *, path: Path, scheme: str) -> None:
        super().__init__()
        self.path, self.scheme, self.lines = Path(path), scheme, {}

    def where(self, name: str) -> str:
        """'landmarks.csv, line 12' for a key (for messages)."""
        return f"{self.path}, line {self.lines.get(name, '?')}"


def _rows(path: Path):

    try:
        reader = csv.reader(io.StringIO(decode(path)[0], newline=""))  # UTF-8, else cp1252 (one warning)
        header = next(reader, None)
        yield None, header
        for lineno, row in enumerate(reader, start=2):
            yield lineno, row
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read ({exc}); fix or remove it") from None


def _landmark_header(path: Path, header: list[str] | None) -> int:
    """Number of points K from a 'file,x0..x{K-1},y0..y{K-1}' header."""
    h = [c.strip() for c in header or []]
    k = (len(h) - 1) // 2
    want = ["file"] + [f"x{i}" for i in range(k)] + [f"y{i}" for i in range(k)]
    if k < 1 or h != want:
        raise DataError(f"{path}: expected a header 'file,x0..x{{K-1}},y0..y{{K-1}}' (K = 78 for the CFEE order); "
                        "fix the file or remove it (faces are then found by the detector or Haar cascades)")
    if k not in _SCHEME_OF_K:
        raise DataError(f"{path}: {k} points per face match no landmark scheme (known: "
                        f"{', '.join(f'{n} = {s}' for n, s in sorted(_SCHEME_OF_K.items()))}); convert the file or "
                        "remove it")
    return k


def read_landmarks(path: str | os.PathLike) -> LandmarkTable:
    """Read a landmarks file (``file,x0..x{K-1},y0..y{K-1}``, image pixels; K = 78 CFEE order or 468
    mediapipe order). DataError naming the line for a missing cell, a non-number, NaN/inf, a wrong
    number of values, or a file named twice with different points."""
    path = Path(path)
    rows = _rows(path)
    _, header = next(rows)
    k = _landmark_header(path, header)
    table = LandmarkTable(path=path, scheme=_SCHEME_OF_K[k])
    for lineno, row in rows:
        if not row or not "".join(row).strip():
            continue
        where = f"{path}, line {lineno}"
        name = row[0].strip().replace("\\", "/")
        if not name:
            raise DataError(f"{where}: the 'file' cell is empty; fill it or delete the line")
        cells = [c.strip() for c in row[1:]]
        if len(cells) != 2 * k:
            raise DataError(f"{where} ({name}): expected {2 * k} coordinates (x0..x{k - 1}, y0..y{k - 1}), got "
                            f"{len(cells)}; fix or delete that line")
        if "" in cells:
            col = header[1 + cells.index("")].strip()
            raise DataError(f"{where} ({name}): no value in column {col}; fix or delete that line")
        try:
            v = np.asarray([float(c) for c in cells], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where} ({name}): a landmark value is not a number; fix or delete that line") from None
        if not np.isfinite(v).all():
            col = header[1 + int(np.flatnonzero(~np.isfinite(v))[0])].strip()
            raise DataError(f"{where} ({name}): {col} is NaN or infinite; fix or delete that line")
        xy = np.stack([v[:k], v[k:]], axis=1).astype(np.float32)
        if name in table.lines and not np.array_equal(table[name], xy):
            raise DataError(f"{where}: {name} already has different points on line {table.lines[name]}; keep one")
        table[name], table.lines[name] = xy, lineno
    return table


def check_inside(points: np.ndarray, width: int, height: int, where: str, scheme: str = "cfee78") -> None:
    """DataError naming ``where`` when an eye centre lies outside the image, or any point further out than
    OUTSIDE_TOLERANCE of the image side (the row is in another frame, or wrong)."""
    problem = outside_problem(points, width, height, scheme)
    if problem:
        raise DataError(f"{where}: {problem}; fix that row or delete it")


def outside_problem(points: np.ndarray, width: int, height: int, scheme: str = "cfee78") -> str | None:
    """What :func:`check_inside` finds wrong with a row (None: every point is inside, within tolerance)."""
    p = np.asarray(points, dtype=np.float64)
    for side, c in zip(("image-left", "image-right"), get_scheme(scheme).eye_centres(p)):
        if not (0 <= c[0] <= width - 1 and 0 <= c[1] <= height - 1):
            return f"the {side} eye centre ({c[0]:.1f}, {c[1]:.1f}) lies outside the {width}x{height} image"
    tol = OUTSIDE_TOLERANCE * max(width, height)
    bad = (p[:, 0] < -tol) | (p[:, 0] > width - 1 + tol) | (p[:, 1] < -tol) | (p[:, 1] > height - 1 + tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return (f"point {i} ({p[i, 0]:.1f}, {p[i, 1]:.1f}) lies outside the {width}x{height} image "
                f"({int(bad.sum())} such points)")
    return None


_AU_COL = re.compile(r"^au\s*0*(\d+)$", re.IGNORECASE)


def au_value(cell: str, where: str) -> float:
    """An AU cell -> [0, 1]: empty -> 0, a number in [0, 1], or a FACS intensity letter a..e."""
    s = cell.strip().lower()
    if not s:
        return 0.0
    if s in AU_LETTERS:
        return AU_LETTERS[s]
    try:
        v = float(s)
    except ValueError:
        raise DataError(f"{where}: {cell!r} is neither a number in [0, 1] nor an intensity letter a..e") from None
    if not 0.0 <= v <= 1.0:
        raise DataError(f"{where}: {cell!r} is outside [0, 1]; use 0..1 or the letters a..e")
    return v


def read_au_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``aus.csv`` (``file,AU1,AU12,...``: any subset of taxonomy.ACTION_UNITS, values in [0, 1] or
    a..e, empty = 0) -> {file name and base name: (len(ACTION_UNITS),) float32}; AUs not in the header
    are 0. DataError naming the file and line for an unknown AU name or a bad value."""
    path = Path(path)
    rows = _rows(path)
    _, header = next(rows)
    h = [c.strip() for c in header or []]
    if not h or h[0] != "file" or len(h) < 2:
        raise DataError(f"{path}: expected a header 'file,AU1,AU2,...'; fix the file or remove it")
    cols = []
    for name in h[1:]:
        m = _AU_COL.match(name)
        if not m or int(m.group(1)) not in ACTION_UNITS:
            raise DataError(f"{path}, line 1: unknown action unit {name!r}; columns must be AU<n> with n one of "
                            f"{', '.join(map(str, ACTION_UNITS))} (drop other columns)")
        cols.append(ACTION_UNITS.index(int(m.group(1))))
    out: dict[str, np.ndarray] = {}
    for lineno, row in rows:
        if not row or not "".join(row).strip():
            continue
        name = row[0].strip().replace("\\", "/")
        if len(row) != len(h) or not name:
            raise DataError(f"{path}, line {lineno}: expected {len(h)} cells (file and {len(h) - 1} AUs), got "
                            f"{len(row)}{'' if name else ' and no file name'}; fix or delete that line")
        vec = np.zeros(len(ACTION_UNITS), dtype=np.float32)
        for j, cell in zip(cols, row[1:]):
            vec[j] = au_value(cell, f"{path}, line {lineno}, AU{ACTION_UNITS[j]}")
        out[name] = vec
    return out


def by_base_name(table: dict) -> dict[str, list[str]]:
    """{base name: the table's keys with that base name} (for :func:`row_key`)."""
    out: dict[str, list[str]] = {}
    for key in table:
        out.setdefault(os.path.basename(key), []).append(key)
    return out


def row_key(table: dict, file: str, root: Path, bases: dict[str, list[str]] | None = None) -> str | None:
    """The key of ``file``'s row in a per-file table (landmarks, AUs), or None. A row names a file by
    its path relative to the data folder, a longer path ending in it (another root), or its base name
    alone; a row for ``happy/1.png`` never matches ``sad/1.png``. ``bases``: :func:`by_base_name`."""
    rel = os.path.relpath(file, root).replace(os.sep, "/")
    if rel in table:
        return rel
    rel = "/".join(part.strip() for part in rel.split("/"))  # cells are read stripped
    if rel in table:
        return rel
    base = os.path.basename(rel)
    for key in (bases if bases is not None else by_base_name(table)).get(base, ()):
        if key == base or key.endswith("/" + rel) or rel.endswith("/" + key):
            return key
    return None


def landmark_rows(table: LandmarkTable | None, files: list[str], root: Path) -> tuple[list, list[str], list[str]]:
    """Per file: its landmarks (or None), where they come from (for messages), and the files the table
    has no row for (one warning names them: they are placed by the detector or Haar, landmarks missing)."""
    if table is None:
        return [None] * len(files), ["landmarks"] * len(files), []
    bases = by_base_name(table)
    keys = [row_key(table, f, root, bases) for f in files]
    missing = [f for f, k in zip(files, keys) if k is None]
    if missing:
        shown = ", ".join(os.path.basename(f) for f in missing[:5]) + (" ..." if len(missing) > 5 else "")
        log.warning(f"{table.path}: no row for {len(missing)} of {len(files)} image(s) ({shown}); they are placed by "
                    "the landmark detector or Haar cascades and their landmarks are marked missing")
    points = [None if k is None else table[k] for k in keys]
    return (match_frames(points, files, table), [table.where(k) if k else str(table.path) for k in keys], missing)


def image_size(file: str) -> tuple[int, int] | None:
    """(width, height) of an image file from its header alone, or None when it cannot be read."""
    try:
        from PIL import Image

        with Image.open(file) as im:  # the header only
            return im.size
    except Exception:  # noqa: BLE001 - unreadable files are reported when decoded
        return None


def match_frames(points: list, files: list[str], table: LandmarkTable) -> list:
    """Rows given in the frame of the dataset's usual image size, for a file that is a k >= 2 times larger
    copy (same aspect), are scaled by k, with one warning naming the files (cfee-subset holds four
    2000x1500 photos whose rows are in the 500x375 frame of the others). Rows in a file's own frame
    are left alone."""
    from collections import Counter

    sizes = [image_size(f) if p is not None else None for f, p in zip(files, points)]
    common = Counter(s for s in sizes if s).most_common(1)
    if not common:
        return points
    (cw, ch), _ = common[0]
    out, fixed = list(points), []
    for i, (p, size) in enumerate(zip(points, sizes)):
        if p is None or size is None or size == (cw, ch):
            continue
        k = size[0] / cw
        # a k >= 2 times larger copy whose points all sit in its top-left 1/k: the usual frame's points
        if k >= 2 and abs(size[1] / ch - k) < 1e-6 and p.min() >= 0 and p[:, 0].max() < cw and p[:, 1].max() < ch:
            out[i] = (p * k).astype(np.float32)
            fixed.append(f"{os.path.basename(files[i])} ({size[0]}x{size[1]}, x{k:g})")
    if fixed:
        log.warning(f"{table.path}: the rows of {len(fixed)} image(s) are in the {cw}x{ch} frame of the other images, "
                    f"not their own: scaled to fit ({', '.join(fixed[:5])}{' ...' if len(fixed) > 5 else ''})")
    return out


def faceset_landmarks(pre, table: LandmarkTable | None, detector: str | None) -> tuple[dict, dict]:
    """(FaceSet keyword arguments, meta entries) for the landmarks of preprocessed faces: one scheme per
    set (the most common; faces in another scheme or none are marked invalid) and which source gave each."""
    from collections import Counter

    arr = pre.landmark_array()
    sources = dict(Counter(s or "none" for s in pre.landmark_sources))
    meta = {"landmark_sources": sources, "landmarks_file": str(table.path) if table is not None else None,
            "landmark_detector": detector}
    if arr is None:
        return {}, {**meta, "landmark_scheme": None}
    import torch

    scheme, points, valid = arr
    return ({"landmarks": torch.from_numpy(points), "landmark_scheme": scheme,
             "landmarks_valid": torch.from_numpy(valid)},
            {**meta, "landmark_scheme": scheme, "landmarks_valid": int(valid.sum())})


def au_rows(path: Path | None, files: list[str], root: Path):
    """(N, len(ACTION_UNITS)) float32 from an ``aus.csv`` (NaN rows for files it does not list), or None."""
    if path is None:
        return None
    table = read_au_file(path)
    out = np.full((len(files), len(ACTION_UNITS)), np.nan, dtype=np.float32)
    bases = by_base_name(table)
    for i, f in enumerate(files):
        k = row_key(table, f, root, bases)
        if k is not None:
            out[i] = table[k]
    return out
