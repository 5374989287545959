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

from compound_fer import taxonomy
from compound_fer.errors import DataError

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
