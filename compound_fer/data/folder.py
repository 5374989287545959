"""Reader for labelled folders ``ROOT/<class name>/*.jpg`` (RAF-DB compound, or a user's own faces).

Class folder names map onto the taxonomy case- and space-insensitively (``happily_surprised``,
``Happily Surprised``, ``happiness`` ...). Subjects are unknown in such data: each file is its own
subject (id 1,000,000 + position) unless ``ROOT/subjects.csv`` (columns ``file,subject``) says otherwise.
An optional ``ROOT/landmarks.csv`` (the CFEE 78-point format) places faces as for CFEE.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from compound_fer import taxonomy
from compound_fer.data.crop_options import READER_CROP, CropOptions
from compound_fer.data.delimited import decode
from compound_fer.data.faceset import FaceSet
from compound_fer.data.images import SkipReport, find_duplicates, is_image_file
from compound_fer.data.index import (
    DataIndex,
    Reader,
    build_annotated,
    check_root,
    flag_zero_bytes,
    pick_categories,
    walk_files,
)
from compound_fer.data.listfile import LAYOUTS, report_unknown
from compound_fer.errors import DataError

#: Subject id of the i-th file (sorted order) when no subjects.csv says otherwise.
UNKNOWN_SUBJECT_BASE = 1_000_000


def read_subjects(path: Path, root: Path) -> dict[str, int]:
    """subjects.csv (file,subject) -> {relative path or base name: subject id}. Non-integer subject
    names get ids in sorted name order."""
    rows: list[tuple[str, str]] = []

    try:
        reader = csv.DictReader(io.StringIO(decode(path)[0], newline=""))  # UTF-8, else cp1252 (one warning)
        if not reader.fieldnames or not {"file", "subject"} <= {h.strip() for h in reader.fieldnames}:
            raise DataError(f"{path}: expected columns 'file,subject'; fix the header or remove the file")
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if row.get("file") and row.get("subject"):
                rows.append((row["file"].replace("\\", "/"), row["subject"]))
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read ({exc}); fix or remove it") from None
    names = sorted({s for _, s in rows})
    if all(s.lstrip("-").isdigit() for s in names):
        ids = {s: int(s) for s in names}
    else:
        ids = {s: i for i, s in enumerate(names)}
    out: dict[str, int] = {}
    for file, s in rows:
        out[file] = ids[s]
        out.setdefault(os.path.basename(file), ids[s])
    return out


def scan_folder(root: str | os.PathLike, *, strict_classes: bool = False) -> DataIndex:
    """List ``ROOT/<class>/*`` without decoding: files, categories, subjects, problems. Class folders
    matching no category are skipped with one warning each (``skipped_classes``), or refused when
    ``strict_classes``."""
    root = check_root(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, cats = [], []
    unknown: dict[str, int] = {}
    unmatched = [str(p) for p in root.iterdir() if p.is_file() and is_image_file(p)]  # images outside class folders
    for d in class_dirs:
        imgs = [p for p in walk_files(d) if is_image_file(p)]
        if not imgs:
            continue
        try:
            cat = taxonomy.by_name(d.name)
        except taxonomy.UnknownCategoryError:
            unknown[d.name] = len(imgs)
            continue
        files += [str(p) for p in imgs]
        cats += [cat.name] * len(imgs)
    report_unknown(unknown, strict=strict_classes, where=str(root), what="class folder")
    if not files:
        lists = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".txt", ".tsv")
                       and p.name not in ("landmarks.csv", "aus.csv", "subjects.csv"))
        hint = f"; if {' or '.join(lists[:3])} is the list, name it labels.csv" if lists else ""
        raise DataError(f"{root}: no images found; {LAYOUTS}{hint}. Class names: "
                        f"{', '.join(c.name for c in taxonomy.CATEGORIES)}")
    subj_csv = root / "subjects.csv"
    known = subj_csv.is_file()
    table = read_subjects(subj_csv, root) if known else {}
    subjects = []
    for i, f in enumerate(files):
        rel = os.path.relpath(f, root).replace(os.sep, "/")
        s = table.get(rel, table.get(os.path.basename(f)))
        subjects.append(UNKNOWN_SUBJECT_BASE + i if s is None else s)
    problems = SkipReport()
    flag_zero_bytes(files, problems)
    lm = root / "landmarks.csv"
    return DataIndex(root=root, layout="folder", files=tuple(files), categories=tuple(cats),
                     subjects=tuple(subjects), problems=problems, unmatched=tuple(unmatched),
                     duplicates=find_duplicates(files), landmarks=lm if lm.is_file() else None,
                     subjects_known=known, skipped_classes=unknown)


def read_folder(
    root: str | os.PathLike,
    *,
    crop: CropOptions = READER_CROP,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    include=None,
    workers: int = 1,
    strict_classes: bool = False,
) -> FaceSet:
    """Read labelled class folders into a FaceSet. Landmarks from ``ROOT/landmarks.csv``, else from
    ``crop.detector`` (None: Haar cascades, no landmarks); AUs from ``ROOT/aus.csv`` (else None). Problem
    files are skipped and listed in ``meta['skipped']``; unknown class folders are skipped (or refused
    with ``strict_classes``)."""
    index = scan_folder(root, strict_classes=strict_classes)
    pick = pick_categories(index, include)
    if crop.method == "landmarks" and index.landmarks is None and crop.detector is None:
        raise DataError(f"{index.root}: method='landmarks' needs ROOT/landmarks.csv or the landmark detector "
                        "(detector='mediapipe'); add one or use method='auto'")
    return build_annotated(index, pick=pick, crop=crop, cache=cache,
                           cache_dir=cache_dir, progress=progress, workers=workers,
                           extra_meta={"subjects": "subjects.csv" if index.subjects_known
                                       else "unknown: one subject id per file (1,000,000 + position)"})


#: The fallback layout: any folder is read as labelled class folders (errors name what is missing).
READER = Reader(name="folder", detect=lambda root: True, scan=scan_folder, read=read_folder,
                layout="class folders `ROOT/<class name>/*.jpg`, optional `subjects.csv` (any folder: the "
                       "fallback)")
