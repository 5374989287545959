"""Landmark sanity per face: rows of a landmarks file that are well-formed but wrong.

A row can parse and still be wrong: x and y columns swapped, left/right points swapped, x/y pairs
interleaved (``x0,y0,x1,y1,...`` under an ``x0..x77,y0..y77`` header), or a row in another image's frame.
Each row with points is checked against its image (left/right as seen in the image, the convention of
every scheme in :mod:`compound_fer.data.schemes`): its points inside the image, the image-left eye left of
the image-right eye and the eyes side by side, the mouth below the eyes, and the proportions of a face
(inter-ocular distance against face width and eye-mouth distance). A bad row's image is skipped, named
by file and line, with one warning saying how many; a file whose rows are mostly bad is refused
(DataError), naming the likely mistake when undoing one of the above makes its rows pass.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compound_fer.data.annotations import (
    LandmarkTable,
    by_base_name,
    image_size,
    match_frames,
    outside_problem,
    read_landmarks,
    row_key,
)
from compound_fer.data.schemes import get_scheme
from compound_fer.errors import DataError

log = logging.getLogger(__name__)

#: The eyes' line may tilt up to 60 degrees: cos(60) of the inter-ocular distance along x.
MIN_EYE_LEVEL = 0.5
#: The mouth lies below the eyes: at least this share of the eye-mouth distance is downward.
MIN_MOUTH_DROP = 0.5
#: Inter-ocular distance / face width (contour): 0.36-0.54 over cfee-subset's 2,005 rows and 29 mediapipe faces.
IOD_PER_FACE_WIDTH = (0.2, 0.8)
#: Eye-mouth distance / inter-ocular distance: 0.73-1.45 over the same faces.
MOUTH_PER_IOD = (0.4, 2.5)
#: Smallest inter-ocular distance in pixels.
MIN_IOD_PX = 2.0
#: Mistakes a whole file can make, and how to undo each on one (K, 2) row.
MISTAKES = {
    "the x and y columns look swapped": lambda p, s: p[:, ::-1],
    "left and right points look swapped (left/right are as seen in the image, not the subject's)":
        lambda p, s: p[list(s.flip)],
    "the coordinates look interleaved (x0,y0,x1,y1,... under an x0..x{K},y0..y{K} header)":
        lambda p, s: np.concatenate([p[:, 0], p[:, 1]]).reshape(-1, 2),
}


def face_problem(points: np.ndarray, *, scheme: str, size: tuple[int, int] | None) -> str | None:
    """What is wrong with one face's landmarks (image pixels, ``scheme`` order) in an image of ``size``
    (width, height; None: not checked against the image), or None when the face looks sane."""
    s = get_scheme(scheme)
    p = np.asarray(points, dtype=np.float64)
    if size is not None:
        outside = outside_problem(p, size[0], size[1], scheme)
        if outside:
            return outside
    left, right = s.eye_centres(p)
    eyes = right - left
    iod = float(np.hypot(*eyes))
    if iod < MIN_IOD_PX:
        return f"the eye centres are {iod:.1f} px apart: not a face"
    if eyes[0] < 0:
        return f"the image-left eye (x {left[0]:.1f}) lies right of the image-right eye (x {right[0]:.1f})"
    if eyes[0] < MIN_EYE_LEVEL * iod:
        angle = np.degrees(np.arctan2(abs(eyes[1]), eyes[0]))
        return f"the eyes are not side by side (the line through them is {angle:.0f} degrees from level)"
    eye_y = (left[1] + right[1]) / 2
    mouth = p[list(s.parts["outer_lip"])].mean(0) - (left + right) / 2
    drop = float(np.hypot(*mouth))
    if mouth[1] < MIN_MOUTH_DROP * drop:
        return f"the mouth (y {mouth[1] + eye_y:.1f}) is not below the eyes (y {eye_y:.1f})"
    contour = p[list(s.parts["contour"]), 0]
    width = float(contour.max() - contour.min())
    lo, hi = IOD_PER_FACE_WIDTH
    if not lo * width <= iod <= hi * width:
        return (f"inter-ocular distance {iod:.1f} px is {iod / max(width, 1e-9):.2f} of the face width {width:.1f} px "
                f"(a face: {lo}-{hi})")
    lo, hi = MOUTH_PER_IOD
    if not lo * iod <= drop <= hi * iod:
        return f"the mouth is {drop / iod:.2f} inter-ocular distances below the eyes (a face: {lo}-{hi})"
    return None


def _likely_mistake(rows: Sequence[np.ndarray], sizes: Sequence, scheme: str, *, count: bool = True) -> str:
    """'; <the mistake>' when undoing one known mistake (and no other as well) makes nearly all bad ``rows``
    pass, else ''."""
    s = get_scheme(scheme)
    passing = {what: sum(face_problem(undo(p, s), scheme=scheme, size=size) is None for p, size in zip(rows, sizes))
               for what, undo in MISTAKES.items()}
    best = max(passing.values(), default=0)
    if not rows or best < 0.9 * len(rows) or list(passing.values()).count(best) > 1:
        return ""
    what = next(w for w, n in passing.items() if n == best)
    tally = f" (undone, {best} of {len(rows)} bad rows pass)" if count else ""
    return "; " + what.replace("{K}", str(s.n_points - 1)) + tally


def screen_rows(table: LandmarkTable, files: Sequence[str], points: Sequence[np.ndarray | None],
                wheres: Sequence[str], *, warn: bool = True) -> dict[int, str]:
    """{position: why} for the files whose landmark row fails :func:`face_problem` (rows already matched
    to files and scaled to their frame: :func:`~compound_fer.data.annotations.landmark_rows`). One warning
    says how many; DataError (nothing decoded) when most rows are bad."""
    checked = [i for i, p in enumerate(points) if p is not None]
    sizes = {i: image_size(files[i]) for i in checked}
    problems = {i: face_problem(points[i], scheme=table.scheme, size=sizes[i]) for i in checked}
    problems = {i: f"{wheres[i]} ({os.path.basename(files[i])}): {why}" for i, why in problems.items() if why}
    if not problems:
        return {}
    first = problems[min(problems)]
    if 2 * len(problems) > len(checked):
        hint = _likely_mistake([points[i] for i in problems], [sizes[i] for i in problems], table.scheme)
        raise DataError(f"{table.path}: {len(problems)} of {len(checked)} landmark rows fail the sanity checks (first: "
                        f"{first}){hint}; fix the file or remove it (faces are then found by the detector or Haar)")
    bad = {i: why + _likely_mistake([points[i]], [sizes[i]], table.scheme, count=False) + "; fix that row or delete it"
           for i, why in problems.items()}
    first = bad[min(bad)]
    if warn:
        log.warning("%s: %d of %d landmark row(s) fail the sanity checks; their images are skipped (first: %s); "
                    "`compound-fer data-info` lists them all", table.path, len(bad), len(checked), first)
    return bad


def unused_rows(table: LandmarkTable, files: Sequence[str], root: Path) -> list[str]:
    """'line N (name)' for each row of ``table`` that names none of ``files`` (the image is missing, or not
    one the reader uses)."""
    bases = by_base_name(table)
    used = {row_key(table, f, root, bases) for f in files}
    return [f"line {table.lines[k]} ({k})" for k in table if k not in used]


def warn_unused(table: LandmarkTable, files: Sequence[str], root: Path) -> list[str]:
    """:func:`unused_rows`, with one warning naming the first few."""
    unused = unused_rows(table, files, root)
    if unused:
        shown = ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else "")
        log.warning("%s: %d row(s) name no image of %s (%s); they are ignored", table.path, len(unused), root, shown)
    return unused


def audit(index: Any) -> dict[str, Any] | None:
    """What ``data-info`` reports about a folder's landmarks file (None when it has none): rows, rows
    failing the checks (file and line each), rows naming no image, images without a row. DataError
    for a malformed file or one whose rows are mostly bad, as when reading."""
    if index.landmarks is None:
        return None
    table = read_landmarks(index.landmarks)
    files = [index.files[i] for i in index.usable()]
    bases = by_base_name(table)
    keys = [row_key(table, f, index.root, bases) for f in files]
    points = match_frames([None if k is None else table[k] for k in keys], files, table)
    bad = screen_rows(table, files, points, [table.where(k) if k else "" for k in keys], warn=False)
    return {"file": str(table.path), "scheme": table.scheme, "rows": len(table),
            "bad_rows": [bad[i] for i in sorted(bad)], "unused_rows": unused_rows(table, index.files, index.root),
            "images_without_row": sum(k is None for k in keys)}
