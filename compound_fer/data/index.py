"""What every reader shares: :class:`DataIndex` (a cheap listing of a data folder, used by
``compound-fer data-info``), :class:`Reader` (one entry of the reader table in
:mod:`compound_fer.data.load`), the folder helpers, and :func:`build_faceset` (crops + labels -> FaceSet).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from compound_fer import taxonomy
from compound_fer.data.annotations import au_rows, faceset_landmarks, landmark_rows, read_landmarks
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.faces import preprocess_faces
from compound_fer.data.faceset import FaceSet
from compound_fer.data.images import SkipReport
from compound_fer.data.landmark_checks import screen_rows, warn_unused
from compound_fer.data.landmarks import usable_detector
from compound_fer.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class DataIndex:
    """A data folder listed without decoding images: matched files, their category and subject,
    and the problems found (zero-byte files, unknown categories, unmatched files, duplicates)."""

    root: Path
    layout: str  # "cfee" | "folder"
    files: tuple[str, ...]  # matched image files (absolute paths), sorted
    categories: tuple[str, ...]  # taxonomy name per file ("" when unknown)
    subjects: tuple[int, ...]  # subject id per file
    problems: SkipReport = field(default_factory=SkipReport)  # files that cannot be used, with why
    unmatched: tuple[str, ...] = ()  # files that match no naming rule (ignored)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of identical files; first kept
    landmarks: Path | None = None
    subjects_known: bool = True  # False for folders without subjects.csv (one subject per file)
    skipped_classes: dict[str, int] = field(default_factory=dict)  # labels matching no category: images

    def usable(self) -> list[int]:
        """Positions of files to read: no problem recorded, first of each duplicate group."""
        bad = {p.file for p in self.problems}
        bad |= {f for g in self.duplicates for f in g[1:]}
        return [i for i, f in enumerate(self.files) if f not in bad and self.categories[i]]

    def category_counts(self) -> dict[str, int]:
        """Images per category name, in taxonomy order (counts all matched files)."""
        c = Counter(n for n in self.categories if n)
        return {cat.name: c[cat.name] for cat in taxonomy.CATEGORIES if c[cat.name]}

    def subject_counts(self) -> dict[int, int]:
        """Images per subject id, ascending id."""
        return dict(sorted(Counter(self.subjects).items()))

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (what ``data-info --json`` prints)."""
        per_subject = list(self.subject_counts().values())
        return {
            "root": str(self.root),
            "layout": self.layout,
            "images": len(self.files),
            "categories": len(self.category_counts()),
            "subjects": len(per_subject) if self.subjects_known else None,
            "images_per_category": self.category_counts(),
            "images_per_subject": (
                {"min": min(per_subject), "median": float(np.median(per_subject)), "max": max(per_subject)}
                if per_subject and self.subjects_known else None
            ),
            "per_subject": {str(k): v for k, v in self.subject_counts().items()} if self.subjects_known else None,
            "landmarks": str(self.landmarks) if self.landmarks else None,
            "problems": [{"file": p.file, "reason": p.reason} for p in self.problems],
            "unmatched": list(self.unmatched),
            "duplicates": self.duplicates,
            "usable": len(self.usable()),
            "skipped_classes": dict(self.skipped_classes),
        }


def check_root(root: str | os.PathLike) -> Path:
    """The folder as a Path; DataError when it is missing or not a folder."""
    p = Path(root).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such folder; give the folder holding the CFEE release or labelled class folders")
    if not p.is_dir():
        raise DataError(f"{p}: not a folder; give the folder that holds the images, not a file")
    return p


def walk_tree(root: Path) -> Iterator[tuple[str, list[str]]]:
    """(folder, its non-hidden file names sorted) for every folder under root, hidden folders left out.
    Linked folders are followed, each real folder once (a link loop, or two links to one folder, once)."""
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        yield dirpath, sorted(f for f in filenames if not f.startswith("."))


def walk_files(root: Path) -> list[Path]:
    """All files under root, recursively, hidden files and folders left out, sorted (see :func:`walk_tree`)."""
    return sorted(Path(dirpath) / f for dirpath, names in walk_tree(root) for f in names)


def flag_zero_bytes(files: Sequence[str], problems: SkipReport) -> None:
    """Add zero-byte (or unreadable) files to problems, cheaply (stat only)."""
    for f in files:
        try:
            if os.path.getsize(f) == 0:
                problems.add(f, "zero-byte file: re-copy it from the original data or delete it")
        except OSError as exc:
            problems.add(f, f"cannot stat: {exc.strerror or exc}")


def build_annotated(index: DataIndex, *, pick: Sequence[int], extra_meta: dict, **kw: Any) -> FaceSet:
    """:func:`build_faceset` with the folder's own annotations: ``landmarks.csv`` (else the detector) and
    ``aus.csv`` (else no AUs) under the index root; ``kw``: build_faceset's crop and cache options."""
    table = read_landmarks(index.landmarks) if index.landmarks is not None else None
    aus_csv = index.root / "aus.csv"
    aus = au_rows(aus_csv if aus_csv.is_file() else None, [index.files[i] for i in pick], index.root)
    return build_faceset(index, landmarks=table, aus=aus, pick=pick,
                         extra_meta={**extra_meta, "aus": "aus.csv" if aus is not None else None}, **kw)


def build_faceset(index: DataIndex, *, crop: CropOptions, cache: bool, cache_dir: str | os.PathLike | None,
                  progress: bool, workers: int, landmarks: dict[str, np.ndarray] | None, aus: np.ndarray | None,
                  pick: Sequence[int] | None = None, extra_meta: dict | None = None) -> FaceSet:
    """Crop the usable files of ``index`` (or the positions ``pick``) into a FaceSet with a skip report.

    ``landmarks``: a landmarks table (:func:`compound_fer.data.annotations.read_landmarks`); files
    without a row are placed by ``crop.detector`` (see :func:`compound_fer.data.faces.crop_face`)."""
    import torch

    pick = list(index.usable() if pick is None else pick)
    files = [index.files[i] for i in pick]
    lms, rows, _ = landmark_rows(landmarks, files, index.root)
    sane, bad_rows = screen_landmarks(index, landmarks, files, lms, rows)
    if bad_rows:
        pick, files, lms, rows = ([x[j] for j in sane] for x in (pick, files, lms, rows))
        aus = None if aus is None else np.asarray(aus)[sane]
    detector = usable_detector(crop.detector) if any(x is None for x in lms) and crop.method != "haar" else None
    pre = preprocess_faces(files, lms, crop=replace(crop, detector=detector), cache=cache, cache_dir=cache_dir,
                           progress=progress, workers=workers, scheme=getattr(landmarks, "scheme", "cfee78"),
                           landmark_rows=rows)
    lm_kw, lm_meta = faceset_landmarks(pre, landmarks, detector)
    skipped = SkipReport(index.problems)
    for f, why in bad_rows:
        skipped.add(f, why)
    labels_of = {i: taxonomy.label_of(index.categories[i]) for i in set(pick)}
    for g in index.duplicates:
        cats = {index.categories[index.files.index(f)] for f in g if f in index.files}
        note = f" (labelled {' / '.join(sorted(c or '?' for c in cats))}; the first is kept)" if len(cats) > 1 else ""
        for f in g[1:]:
            skipped.add(f, f"duplicate: same bytes as {g[0]}{note}; delete one copy")
    skipped.extend(pre.skipped)
    kept = [pick[j] for j in pre.index]
    if not kept:
        raise DataError(f"{index.root}: no usable face in {len(files)} image(s).\n{skipped.summary()}")
    region_src = Counter(pre.regions)
    meta = {
        "source": index.layout,
        "root": str(index.root),
        "image_size": crop.image_size,
        "method": crop.method,
        "margin": crop.margin,
        "methods": dict(Counter(pre.methods)),
        "region_masks": "landmarks" if set(region_src) == {"landmarks"} else (
            "canonical positions in the aligned Haar crop (approximate, no landmarks)"
            if set(region_src) == {"canonical"} else f"mixed: {dict(region_src)} (canonical = approximate)"),
        "region_sources": tuple(pre.regions),
        "skipped": skipped,
        "duplicates": index.duplicates,
        "cache_file": pre.cache_file,
        "cache_hits": pre.cache_hits,
        "subjects_known": index.subjects_known,
        "skipped_classes": dict(index.skipped_classes),
        **lm_meta,
        **(extra_meta or {}),
    }
    if skipped:
        log.warning("%s", skipped.summary())
    return FaceSet(
        images=torch.from_numpy(pre.images),
        labels=torch.tensor([labels_of[i] for i in kept], dtype=torch.long),
        subjects=torch.tensor([index.subjects[i] for i in kept], dtype=torch.long),
        sources=tuple(index.files[i] for i in kept),
        aus=None if aus is None else torch.from_numpy(np.asarray(aus, dtype=np.float32)[pre.index]),
        region_masks=torch.from_numpy(pre.masks),
        meta=meta,
        **lm_kw,
    )


def screen_landmarks(index: DataIndex, table, files: list[str], points: list, wheres: list[str]
                     ) -> tuple[list[int], list[tuple[str, str]]]:
    """(positions of ``files`` to keep, [(file, why)] for rows failing the landmark sanity checks), with
    warnings for bad rows and rows naming no image (:mod:`compound_fer.data.landmark_checks`)."""
    if table is None:
        return list(range(len(files))), []

    warn_unused(table, index.files, index.root)
    bad = screen_rows(table, files, points, wheres)
    return [j for j in range(len(files)) if j not in bad], [(files[j], bad[j]) for j in sorted(bad)]


def lookup_landmarks(landmarks: dict[str, np.ndarray], file: str, root: Path) -> np.ndarray | None:
    rel = os.path.relpath(file, root).replace(os.sep, "/")
    return landmarks.get(rel, landmarks.get(os.path.basename(file)))


def pick_categories(index: DataIndex, include: Iterable[str] | None) -> list[int]:
    """Usable positions of ``index`` whose category is in ``include`` (all usable ones when None)."""
    pick = index.usable()
    if include is None:
        return pick
    try:
        want = {taxonomy.by_name(n).name for n in include}
    except taxonomy.UnknownCategoryError as exc:
        raise DataError(f"include: {exc}") from None
    pick = [i for i in pick if index.categories[i] in want]
    if not pick:
        raise DataError(f"{index.root}: no image of {sorted(want)}; check 'include'")
    return pick


@dataclass(frozen=True)
class Reader:
    """One layout of real faces: ``detect(root)`` says whether a folder is in it, ``scan(root)`` lists it
    cheaply, ``read(root, crop=..., **kw)`` loads it into a FaceSet; ``layout`` says in a line what a folder
    of it looks like (the docs' reader table is made from it)."""

    name: str
    detect: Callable[[Path], bool]
    scan: Callable[[Path], DataIndex]
    read: Callable[..., FaceSet]
    layout: str = ""
