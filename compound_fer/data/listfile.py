"""List-file layout: images named in a list with their labels, not sorted into class folders.

Two list formats, found in the data folder:

- ``ROOT/labels.csv`` (or ``labels.txt`` / ``labels.tsv``): one image per line with its label, in the
  shapes people have: a header naming the columns with any of the common names (:data:`PATH_COLUMNS`,
  :data:`LABEL_COLUMNS`, :data:`SUBJECT_COLUMNS`: ``path,label``, ``filename,emotion``, ``file,label``
  ...) or no header (the columns are found by their content: image file names, category names); comma,
  ``;``, tab or ``|`` separated, or split by spaces; UTF-8 or cp1252 / Latin-1 text
  (:mod:`compound_fer.data.delimited`). ``path`` is relative to ROOT, or a file name found anywhere
  under it (``images/00001.jpg`` for ``00001.jpg``); ``label`` a category name (any case/spacing,
  common aliases); ``subject`` an integer or a name.
- RAF-DB compound's ``EmoLabel/list_patition_label.txt`` (``train_0001.jpg 3``: the release's 11
  compound ids, :data:`RAF_COMPOUND`); the image is ``Image/original/<name>`` or, failing that,
  ``Image/aligned/<stem>_aligned.jpg``. RAF-DB has no subject ids: each image is its own subject.

Labels that match no category are skipped with one warning per label and its image count
(:func:`report_unknown`); ``strict_classes=True`` refuses the folder instead.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compound_fer import taxonomy
from compound_fer.data.crop_options import READER_CROP, CropOptions
from compound_fer.data.delimited import Table, decode, read_table
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
from compound_fer.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from compound_fer.data.faceset import FaceSet

log = logging.getLogger(__name__)

LIST_CSV = "labels.csv"
#: List file names looked for in the data folder, in order.
LIST_NAMES: tuple[str, ...] = (LIST_CSV, "labels.txt", "labels.tsv")
#: Column names (lower case, spaces as underscores) of the image path, its label and its subject.
PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "image_name", "img", "filepath",
                "file_path")
LABEL_COLUMNS = ("label", "emotion", "expression", "class", "category", "class_name", "emotion_label")
SUBJECT_COLUMNS = ("subject", "subject_id", "person", "person_id", "participant", "identity")
RAF_LIST = "list_patition_label.txt"
#: RAF-DB compound ids (its README; Li, Deng & Du, CVPR 2017) -> taxonomy names.
RAF_COMPOUND: dict[int, str] = {
    1: "Happily surprised", 2: "Happily disgusted", 3: "Sadly fearful", 4: "Sadly angry", 5: "Sadly surprised",
    6: "Sadly disgusted", 7: "Fearfully angry", 8: "Fearfully surprised", 9: "Angrily surprised",
    10: "Angrily disgusted", 11: "Disgustedly surprised",
}
#: The layouts a data folder may have (for errors when none is found).
LAYOUTS = ("expected the CFEE layout (**/EE_SSS_*.jpg), class folders ROOT/<class name>/*.jpg, or a list file "
           "ROOT/labels.csv naming each image and its label (path,label; other common column names, no header, "
           "';' or tab separators and cp1252 text are read too)")
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
    """``ROOT/labels.csv`` (or ``labels.txt``, ``labels.tsv``), else the first ``**/list_patition_label.txt``."""
    for name in LIST_NAMES:
        if (root / name).is_file():
            return root / name
    for cand in (root / RAF_LIST, root / "EmoLabel" / RAF_LIST):
        if cand.is_file():
            return cand
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RAF_LIST in filenames:
            return Path(dirpath) / RAF_LIST
    return None


def _column_key(cell: str) -> str:
    return "_".join(cell.strip().lower().replace("-", " ").split())


def _by_content(rows: list[list[str]], test) -> int | None:
    """The column where most cells pass ``test`` (None when none does for at least half the rows)."""
    width = max((len(r) for r in rows), default=0)
    score = [sum(1 for r in rows if j < len(r) and test(r[j])) for j in range(width)]
    best = max(range(width), key=lambda j: score[j], default=None)
    return best if best is not None and 2 * score[best] >= len(rows) > 0 else None


def list_columns(table: Table) -> tuple[bool, int, int, int | None]:
    """(has a header, path column, label column, subject column or None) of a list table: from the header's
    names when it has known ones, else from the content (image file names, category names)."""
    head = [_column_key(c) for c in table.rows[0][1]] if table.rows else []

    def named(names: tuple[str, ...]) -> int | None:
        return next((head.index(n) for n in names if n in head), None)

    path_col, label_col, subject_col = named(PATH_COLUMNS), named(LABEL_COLUMNS), named(SUBJECT_COLUMNS)
    header = path_col is not None or label_col is not None
    body = [r for _, r in table.rows[1:]] if header else [r for _, r in table.rows]
    if path_col is None:
        path_col = _by_content(body, is_image_file)
    if label_col is None:
        label_col = _by_content([[c if j != path_col else "" for j, c in enumerate(r)] for r in body], category_of)
    if not header and path_col is not None and table.rows and not is_image_file(table.rows[0][1][path_col]
                                                                                  if path_col < len(table.rows[0][1])
                                                                                  else ""):
        header = True  # a header of other names above image file names
    if path_col is None or label_col is None or path_col == label_col:
        first = ",".join(table.rows[0][1]) if table.rows else "(empty)"
        raise DataError(f"{table.path}: cannot tell which column holds the image file and which its label (line 1: "
                        f"{first!r}); name them in a header (path/file/filename/image and label/emotion/"
                        f"expression/class), or give file names with an image suffix and category names")
    return header, path_col, label_col, subject_col if header else None


def read_csv_list(path: Path) -> list[ListRow]:
    """Rows of a list file (``labels.csv``: header or not, any separator and encoding, see the module
    docstring); DataError naming the line for a row without a file or label."""
    table = read_table(path)
    header, pc, lc, sc = list_columns(table)
    names = [n for n, c in (("path", pc), ("label", lc), ("subject", sc)) if c is not None]
    need = max(c for c in (pc, lc, sc) if c is not None) + 1
    rows: list[ListRow] = []
    for lineno, cells in table.rows[1 if header else 0:]:
        if len(cells) < need or not cells[pc] or not cells[lc]:
            raise DataError(f"{path}, line {lineno}: expected {len(names)} non-empty cells ({','.join(names)}), got "
                            f"{table.delimiter.join(cells)!r}; fix or delete that line")
        subject = cells[sc] if sc is not None else None
        if subject == "":
            raise DataError(f"{path}, line {lineno}: empty subject; fill it or delete that line")
        rows.append(ListRow(cells[pc].replace("\\", "/"), cells[lc], category_of(cells[lc]), subject,
                            table.where(lineno)))
    return rows


def read_raf_list(path: Path) -> list[ListRow]:
    """Rows of RAF-DB compound's ``list_patition_label.txt`` (``name id``, ids 1..11)."""
    rows: list[ListRow] = []
    lines = decode(path)[0].splitlines()
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
        raise DataError(f"{root}: no {LIST_CSV} (path,label[,subject]) or {RAF_LIST} found; {LAYOUTS}")
    rows = read_raf_list(lst) if lst.name == RAF_LIST else read_csv_list(lst)
    unknown = unknown_counts(rows)
    report_unknown(unknown, strict=strict_classes, where=str(lst))
    rows = [r for r in rows if r.category]
    if not rows:
        raise DataError(f"{lst}: no line with a known category; labels must be category names (or RAF-DB "
                        f"compound ids 1..11)")
    all_files = [p for p in walk_files(root) if is_image_file(p)]
    by_name = {p.name: p for p in all_files}
    twice = {n for n, c in Counter(p.name for p in all_files).items() if c > 1}
    problems = SkipReport()
    files = []
    for r in rows:
        p = raf_image(root, r.path, by_name) if lst.name == RAF_LIST else root / r.path
        if lst.name != RAF_LIST and not p.is_file() and "/" not in r.path and r.path not in twice:
            p = by_name.get(r.path, p)  # a bare file name found anywhere under the root (images/00001.jpg)
        if p is None or not p.is_file():
            p = p or root / r.path
            why = "more than one image has that name: give its path from the data folder" if r.path in twice else (
                "not found; restore the image or delete the line")
            problems.add(p, f"listed in {r.where} but {why}")
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


def read_list(root: str | os.PathLike, *, crop: CropOptions = READER_CROP, cache: bool = True,
              cache_dir: str | os.PathLike | None = None, progress: bool = True, include=None,
              workers: int = 1, strict_classes: bool = False) -> "FaceSet":
    """Read a list-file folder into a FaceSet (landmarks from ``landmarks.csv`` or the detector, AUs from
    ``aus.csv``); problem files are skipped and listed in ``meta['skipped']``."""
    index = scan_list(root, strict_classes=strict_classes)
    pick = pick_categories(index, include)
    return build_annotated(index, pick=pick, crop=crop, cache=cache,
                           cache_dir=cache_dir, progress=progress, workers=workers,
                           extra_meta={"list_file": str(find_list(index.root)),
                                       "subjects": "list" if index.subjects_known
                                       else "unknown: one subject id per file (1,000,000 + position)"})


#: The list-file layout's entry in :data:`compound_fer.data.load.READERS` (before the folder fallback).
READER = Reader(name="list", detect=looks_like_list, scan=scan_list, read=read_list,
                layout="a list file naming each image and its label: `labels.csv` (`path,label[,subject]`) or "
                       "RAF-DB compound's `list_patition_label.txt`")
