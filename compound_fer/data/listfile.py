"""List-file layout: images named in a list with their labels, not sorted into class folders.

Two list formats, found in the data folder:

- ``ROOT/labels.csv``: header ``path,label`` or ``path,label,subject``; ``path`` relative to ROOT;
  ``label`` a category name (any case/spacing, common aliases); ``subject`` an integer or a name.
- RAF-DB compound's ``EmoLabel/list_patition_label.txt`` (``train_0001.jpg 3``: the release's 11
  compound ids, :data:`RAF_COMPOUND`); the image is ``Image/original/<name>`` or, failing that,
  ``Image/aligned/<stem>_aligned.jpg``. RAF-DB has no subject ids: each image is its own subject.

Labels that match no category are skipped with one warning per label and its image count
(:func:`report_unknown`); ``strict_classes=True`` refuses the folder instead.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compound_fer import taxonomy
from compound_fer.data.images import SkipReport, find_duplicates, is_image_file
from compound_fer.data.index import (DataIndex, Reader, build_annotated, check_root, flag_zero_bytes, pick_categories,
                                     walk_files)
from compound_fer.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from compound_fer.data.faceset import FaceSet

log = logging.getLogger(__name__)

LIST_CSV = "labels.csv"
RAF_LIST = "list_patition_label.txt"
#: RAF-DB compound ids (its README; Li, Deng & Du, CVPR 2017) -> taxonomy names.
RAF_COMPOUND: dict[int, str] = {
    1: "Happily surprised", 2: "Happily disgusted", 3: "Sadly fearful", 4: "Sadly angry", 5: "Sadly surprised",
    6: "Sadly disgusted", 7: "Fearfully angry", 8: "Fearfully surprised", 9: "Angrily surprised",
    10: "Angrily disgusted", 11: "Disgustedly surprised",
}
#: Subject id of the i-th listed file when the list gives none.
UNKNOWN_SUBJECT_BASE = 1_000_000


@dataclass
class ListRow:
    """One usable line of a list: the image path, its category name ("" if unknown), subject, origin."""

    path: str
    label: str  # the label as written
    category: str  # taxonomy name, or "" when the label matches none
    subject: str | None
    where: str  # "labels.csv, line 4"


def report_unknown(unknown: dict[str, int], *, strict: bool, where: str, what: str = "label") -> None:
    """Labels (or class folders) matching no category: DataError when ``strict``, else one warning each
    (``contempt: 54 images skipped, not a CFEE category``)."""
    if not unknown:
        return
    names = ", ".join(c.name for c in taxonomy.CATEGORIES)
    if strict:
        listed = ", ".join(f"{k!r} ({n} images)" for k, n in sorted(unknown.items()))
        raise DataError(f"{where}: {what}(s) {listed} match no category (strict_classes=True); rename them to one of "
                        f"{names}, or set strict_classes=False to skip them")
    for k, n in sorted(unknown.items()):
        log.warning("%s: %d images skipped, not a CFEE category (%s %s)", k, n, what, where)


def category_of(label: str) -> str:
    """Taxonomy name of a label, or "" when it matches none."""
    try:
        return taxonomy.by_name(label).name
    except taxonomy.UnknownCategoryError:
        return ""


def find_list(root: Path) -> Path | None:
    """``ROOT/labels.csv`` with a ``path,label`` header, else the first ``**/list_patition_label.txt``."""
    csv_file = root / LIST_CSV
    if csv_file.is_file():
        try:
            with open(csv_file, newline="", encoding="utf-8-sig") as f:
                head = [h.strip().lower() for h in next(csv.reader(f), [])]
            if head[:2] == ["path", "label"]:
                return csv_file
        except (OSError, UnicodeDecodeError, csv.Error):
            return csv_file  # let the reader say what is wrong with it
    for cand in (root / RAF_LIST, root / "EmoLabel" / RAF_LIST):
        if cand.is_file():
            return cand
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RAF_LIST in filenames:
            return Path(dirpath) / RAF_LIST
    return None


def read_csv_list(path: Path) -> list[ListRow]:
    """Rows of ``labels.csv`` (``path,label[,subject]``); DataError naming the line for a bad row."""
    rows: list[ListRow] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            head = [h.strip().lower() for h in next(reader, [])]
            if head not in (["path", "label"], ["path", "label", "subject"]):
                raise DataError(f"{path}, line 1: expected the header 'path,label' or 'path,label,subject', got "
                                f"{','.join(head)!r}")
            for lineno, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                cells = [c.strip() for c in row]
                if len(cells) != len(head) or not cells[0] or not cells[1]:
                    raise DataError(f"{path}, line {lineno}: expected {len(head)} non-empty cells "
                                    f"({','.join(head)}), got {row!r}; fix or delete that line")
                subject = cells[2] if len(head) == 3 else None
                if subject == "":
                    raise DataError(f"{path}, line {lineno}: empty subject; fill it or delete that line")
                rows.append(ListRow(cells[0].replace("\\", "/"), cells[1], category_of(cells[1]), subject,
                                    f"{path.name}, line {lineno}"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); fix or remove it") from None
    return rows


def read_raf_list(path: Path) -> list[ListRow]:
    """Rows of RAF-DB compound's ``list_patition_label.txt`` (``name id``, ids 1..11)."""
    rows: list[ListRow] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); fix or remove it") from None
    for lineno, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path}, line {lineno}: expected '<image name> <compound id 1..11>', got {line!r}")
        cid = int(parts[1])
        name = RAF_COMPOUND.get(cid, "")
        rows.append(ListRow(parts[0], f"RAF-DB compound id {cid}" if not name else name, name, None,
                            f"{path.name}, line {lineno}"))
    return rows


def raf_image(root: Path, name: str, by_name: dict[str, Path]) -> Path | None:
    """The image of a RAF-DB list entry: Image/original/<name>, else Image/aligned/<stem>_aligned.jpg,
    else any file of that name under the root."""
    stem = os.path.splitext(name)[0]
    for cand in (root / "Image" / "original" / name, root / "Image" / "aligned" / f"{stem}_aligned.jpg"):
        if cand.is_file():
            return cand
    return by_name.get(name) or by_name.get(f"{stem}_aligned.jpg")


def subject_ids(rows: list[ListRow]) -> tuple[list[int], bool]:
    """Integer subject ids per row (names numbered in sorted order) and whether the list gave them."""
    given = [r.subject for r in rows]
    if any(s is None for s in given):
        return [UNKNOWN_SUBJECT_BASE + i for i in range(len(rows))], False
    names = sorted(set(given))
    if all(s.lstrip("-").isdigit() for s in names):
        return [int(s) for s in given], True
    ids = {s: i for i, s in enumerate(names)}
    return [ids[s] for s in given], True


def unknown_counts(rows: list[ListRow]) -> dict[str, int]:
    """Images per label that matches no category."""
    return dict(Counter(r.label for r in rows if not r.category))


# --------------------------------------------------------------------------------------- reader entry
def looks_like_list(root: Path) -> bool:
    """True when the folder has a ``labels.csv`` (path,label) or a RAF-DB ``list_patition_label.txt``."""
    return find_list(root) is not None


def scan_list(root: str | os.PathLike, *, strict_classes: bool = False) -> DataIndex:
    """List a list-file folder without decoding: files, categories, subjects, problems (listed files
    that are missing), and labels matching no category (``skipped_classes``; a DataError if strict)."""
    root = check_root(root)
    lst = find_list(root)
    if lst is None:
        raise DataError(f"{root}: no {LIST_CSV} (path,label[,subject]) or {RAF_LIST} found")
    rows = read_raf_list(lst) if lst.name == RAF_LIST else read_csv_list(lst)
    unknown = unknown_counts(rows)
    report_unknown(unknown, strict=strict_classes, where=str(lst))
    rows = [r for r in rows if r.category]
    if not rows:
        raise DataError(f"{lst}: no line with a known category; labels must be category names (or RAF-DB "
                        f"compound ids 1..11)")
    all_files = [p for p in walk_files(root) if is_image_file(p)]
    by_name = {p.name: p for p in all_files}
    problems = SkipReport()
    files = []
    for r in rows:
        p = raf_image(root, r.path, by_name) if lst.name == RAF_LIST else root / r.path
        if p is None or not p.is_file():
            p = p or root / r.path
            problems.add(p, f"listed in {r.where} but not found; restore the image or delete the line")
        files.append(str(p))
    subjects, known = subject_ids(rows)
    flag_zero_bytes([f for f in files if os.path.isfile(f)], problems)
    used = set(files)
    lm = root / "landmarks.csv"
    return DataIndex(root=root, layout="list", files=tuple(files), categories=tuple(r.category for r in rows),
                    subjects=tuple(subjects), problems=problems,
                    unmatched=tuple(str(p) for p in all_files if str(p) not in used),
                    duplicates=find_duplicates([f for f in files if os.path.isfile(f)]),
                    landmarks=lm if lm.is_file() else None, subjects_known=known, skipped_classes=unknown)


def read_list(root: str | os.PathLike, *, image_size: int = 112, method: str = "auto", margin: float = 0.15,
              cache: bool = True, cache_dir: str | os.PathLike | None = None, progress: bool = True, include=None,
              workers: int = 1, detector: str | None = "mediapipe", no_face: str = "skip",
              strict_classes: bool = False) -> "FaceSet":
    """Read a list-file folder into a FaceSet (landmarks from ``landmarks.csv`` or the detector, AUs from
    ``aus.csv``); problem files are skipped and listed in ``meta['skipped']``."""
    index = scan_list(root, strict_classes=strict_classes)
    pick = pick_categories(index, include)
    return build_annotated(index, pick=pick, image_size=image_size, method=method, margin=margin, cache=cache,
                           cache_dir=cache_dir, progress=progress, workers=workers, detector=detector, no_face=no_face,
                           extra_meta={"list_file": str(find_list(index.root)),
                                       "subjects": "list" if index.subjects_known
                                       else "unknown: one subject id per file (1,000,000 + position)"})


#: The list-file layout's entry in :data:`compound_fer.data.load.READERS` (before the folder fallback).
READER = Reader(name="list", detect=looks_like_list, scan=scan_list, read=read_list)
