"""Reader for CFEE (Du, Tao & Martinez 2014) in its official release layout.

Images are found recursively as ``**/EE_SSS_*.jpg`` (``EE`` = CFEE category id, ``SSS`` = subject id);
category names come from the ``summary`` sheet of the FACS workbook (``AU_annotation_all_subjects.xls``)
and each subject's action units from its other sheets; an optional ``landmarks.csv`` places the faces.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from compound_fer import taxonomy
from compound_fer.data.annotations import read_landmarks
from compound_fer.data.crop_options import READER_CROP, CropOptions
from compound_fer.data.faceset import FaceSet
from compound_fer.data.images import SkipReport, find_duplicates, is_image_file
from compound_fer.data.index import (
    DataIndex,
    Reader,
    build_faceset,
    check_root,
    flag_zero_bytes,
    pick_categories,
    walk_files,
)
from compound_fer.errors import DataError
from compound_fer.taxonomy import ACTION_UNITS, Category

#: CFEE file names: ``EE_SSS_anything.jpg``.
CFEE_NAME = re.compile(r"^(\d{2})_(\d{3})_[^/\\]*\.jpe?g$", re.IGNORECASE)
#: FACS intensity letters -> [0, 1].
INTENSITY = {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8, "e": 1.0}
#: A cell coded ``x`` (AU present, intensity not given) counts as the middle intensity.
PRESENT_NO_INTENSITY = 0.6
XLS_NAME = "AU_annotation_all_subjects.xls"


@dataclass
class CFEEIndex(DataIndex):
    """A CFEE folder listed cheaply (:func:`scan_cfee`): files, ids, subjects, xls, problems."""

    xls: Path | None = None
    category_ids: tuple[int, ...] = ()


def _find_one(files: Iterable[Path], name: str, suffix: str) -> Path | None:
    files = list(files)
    exact = [p for p in files if p.name.lower() == name.lower()]
    if exact:
        return exact[0]
    other = [p for p in files if p.name.lower().endswith(suffix)]
    return other[0] if len(other) == 1 else None


def read_summary(xls: Path) -> dict[int, Category]:
    """The ``summary`` sheet: CFEE id -> taxonomy category (names have stray spaces, e.g. 'Sad ')."""
    book = _open_xls(xls)
    names = {s.lower().strip(): s for s in book.sheet_names()}
    if "summary" not in names:
        raise DataError(f"{xls}: no 'summary' sheet (sheets: {', '.join(book.sheet_names())}); use the workbook "
                        "from the CFEE release, or move it away to read the images with the built-in id table")
    sh = book.sheet_by_name(names["summary"])
    out: dict[int, Category] = {}
    for r in range(1, sh.nrows):
        row = sh.row_values(r)
        if len(row) < 2 or row[0] in ("", None):
            continue
        try:
            cid = int(float(row[0]))
        except (TypeError, ValueError):
            continue
        try:
            out[cid] = taxonomy.by_name(str(row[1]))
        except taxonomy.UnknownCategoryError as exc:
            raise DataError(f"{xls}, sheet summary, row {r + 1}: {exc}") from None
    return out


def read_aus(xls: Path) -> dict[tuple[int, str], np.ndarray]:
    """Per-(subject, category name) AU intensities over :data:`taxonomy.ACTION_UNITS` from the
    per-category sheets (row 0: 'subject/AU', AU numbers; cells: letters a..e, 'x', L/R prefixes)."""
    book = _open_xls(xls)
    col = {au: j for j, au in enumerate(ACTION_UNITS)}
    out: dict[tuple[int, str], np.ndarray] = {}
    for sh in book.sheets():
        if sh.name.strip().lower() == "summary" or sh.nrows < 2:
            continue
        try:
            cat = taxonomy.by_name(sh.name)
        except taxonomy.UnknownCategoryError:
            continue
        header = sh.row_values(0)
        aus = []
        for v in header[1:]:
            try:
                aus.append(int(float(v)))
            except (TypeError, ValueError):
                aus.append(None)
        for r in range(1, sh.nrows):
            row = sh.row_values(r)
            try:
                subject = int(float(row[0]))
            except (TypeError, ValueError):
                continue
            vec = np.zeros(len(ACTION_UNITS), dtype=np.float32)
            for au, cell in zip(aus, row[1:]):
                if au in col:
                    vec[col[au]] = max(vec[col[au]], intensity(cell))
            out[(subject, cat.name)] = vec
    return out


def intensity(cell: object) -> float:
    """A FACS cell -> [0, 1]: a..e -> 0.2..1.0 (the larger side of 'LbRc'), 'x' -> 0.6, empty -> 0."""
    s = str(cell).strip().lower()
    letters = [INTENSITY[c] for c in s if c in INTENSITY]
    if letters:
        return max(letters)
    return PRESENT_NO_INTENSITY if "x" in s else 0.0


def _open_xls(xls: Path):
    try:
        import xlrd

        return xlrd.open_workbook(str(xls), on_demand=False)
    except ImportError:  # pragma: no cover
        raise DataError("reading the CFEE workbook needs xlrd: pip install 'xlrd>=2'") from None
    except Exception as exc:  # xlrd raises XLRDError, CompDocError, struct.error, OSError ...
        raise DataError(f"{xls}: unreadable FACS workbook ({type(exc).__name__}: {exc}); re-copy it from the CFEE "
                        "release, or move it out of the folder to read the images without AU codes") from None


def scan_cfee(root: str | os.PathLike) -> CFEEIndex:
    """List a CFEE folder without decoding images: files, category ids, subjects, and problems
    (zero-byte files, unknown ids, unmatched image files, byte-identical duplicates)."""
    root = check_root(root)
    all_files = walk_files(root)
    matched = [p for p in all_files if CFEE_NAME.match(p.name)]
    if not matched:
        raise DataError(f"{root}: no CFEE image (named EE_SSS_*.jpg, EE = category id, SSS = subject id) found; "
                        "point to the CFEE release, or use labelled class folders ROOT/<class name>/*.jpg")
    xls = _find_one((p for p in all_files if p.suffix.lower() == ".xls"), XLS_NAME, ".xls")
    names = read_summary(xls) if xls else {c.cfee_id: c for c in taxonomy.CATEGORIES}
    lm = _find_one((p for p in all_files if p.suffix.lower() == ".csv"), "landmarks.csv", "landmarks.csv")
    problems = SkipReport()
    files, cats, ids, subjects = [], [], [], []
    for p in matched:
        m = CFEE_NAME.match(p.name)
        cid, sid = int(m.group(1)), int(m.group(2))
        cat = names.get(cid)
        files.append(str(p))
        ids.append(cid)
        subjects.append(sid)
        cats.append(cat.name if cat else "")
        if cat is None:
            problems.add(
                p,
                f"unknown CFEE category id {cid:02d} (valid: {', '.join(f'{k:02d}' for k in sorted(names))}); "
                "rename or remove the file",
            )
    flag_zero_bytes(files, problems)
    unmatched = tuple(str(p) for p in all_files if is_image_file(p) and not CFEE_NAME.match(p.name))
    idx = CFEEIndex(root=root, layout="cfee", files=tuple(files), categories=tuple(cats), subjects=tuple(subjects),
                    problems=problems, unmatched=unmatched, duplicates=find_duplicates(files), landmarks=lm,
                    xls=xls, category_ids=tuple(ids))
    return idx


def read_cfee(
    root: str | os.PathLike,
    *,
    crop: CropOptions = READER_CROP,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    include: Iterable[str] | None = None,
    workers: int = 1,
    strict_classes: bool = False,
) -> FaceSet:
    """Read CFEE into a FaceSet of aligned square crops (uint8 RGB), global labels, subject ids,
    AU intensities from the workbook (NaN rows for subjects it does not code; None without a workbook),
    region masks and landmarks. Problem files are skipped and listed in ``meta['skipped']``.

    ``crop`` (:class:`~compound_fer.data.crop_options.CropOptions`): its ``method`` is "landmarks" (landmarks.csv
    rows, else the detector), "haar" (OpenCV cascades) or "auto" (landmarks when there are any, else Haar); its
    ``detector`` finds landmarks for images without a landmarks.csv row (None: off); ``no_face``: "skip" or
    "haar" when it finds none. ``include``:
    category names to keep (default: all 22, Neutral included). ``strict_classes``: refuse files with an
    unknown category id (by default they are skipped as problem files).
    """
    index = scan_cfee(root)
    unknown = [p.file for p in index.problems if p.reason.startswith("unknown CFEE category id")]
    if strict_classes and unknown:
        raise DataError(f"{index.root}: {len(unknown)} image(s) have an unknown CFEE category id (first: {unknown[0]}) "
                        "and strict_classes=True; rename or remove them, or set strict_classes=False to skip them")
    pick = pick_categories(index, include)
    if crop.method == "landmarks" and index.landmarks is None and crop.detector is None:
        raise DataError(f"{index.root}: method='landmarks' needs a landmarks.csv (file, x0..x77, y0..y77) or the "
                        "landmark detector (detector='mediapipe'); add one or use method='auto' or 'haar'")
    # with method='haar' the file's landmarks still ride along into the crops (masks, geometry)
    landmarks = read_landmarks(index.landmarks) if index.landmarks is not None else None
    aus = None
    if index.xls is not None:
        table = read_aus(index.xls)
        aus = np.full((len(pick), len(ACTION_UNITS)), np.nan, dtype=np.float32)
        for j, i in enumerate(pick):
            cat, sid = index.categories[i], index.subjects[i]
            if cat == "Neutral":
                aus[j] = 0.0
            elif (sid, cat) in table:
                aus[j] = table[(sid, cat)]
    return build_faceset(index, crop=crop, cache=cache, cache_dir=cache_dir, progress=progress, workers=workers,
                         landmarks=landmarks, aus=aus, pick=pick,
                         extra_meta={"xls": str(index.xls) if index.xls else None,
                                     "aus": "FACS workbook (a..e -> 0.2..1.0; NaN = not coded)"
                                     if aus is not None else None})


def looks_like_cfee(root: Path) -> bool:
    """True when any file under root is named like a CFEE image (``EE_SSS_*.jpg``)."""
    return any(CFEE_NAME.match(p.name) for p in walk_files(root))


READER = Reader(name="cfee", detect=looks_like_cfee, scan=scan_cfee, read=read_cfee,
                layout="the CFEE release: files named `EE_SSS_*.jpg` (category id, subject id), optional FACS "
                       "workbook and `landmarks.csv`")
