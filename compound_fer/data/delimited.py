"""Delimited text files as people write them: UTF-8 (with or without a BOM), else Windows cp1252 / Latin-1;
comma, semicolon, tab or pipe separated (found by :class:`csv.Sniffer`), or columns split by spaces."""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from compound_fer.errors import DataError

log = logging.getLogger(__name__)

#: Tried in order; Latin-1 decodes any byte, so a file always reads (cp1252 first: it is what Excel writes).
ENCODINGS: tuple[str, ...] = ("utf-8-sig", "cp1252", "latin-1")
DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class Table:
    """The non-empty rows of a text table, each with its line number, and how the file was read."""

    path: Path
    rows: list[tuple[int, list[str]]]
    encoding: str
    delimiter: str  # " " when columns are split by runs of spaces

    def where(self, lineno: int) -> str:
        """'labels.csv, line 4' (for messages)."""
        return f"{self.path.name}, line {lineno}"


def decode(path: str | os.PathLike, *, warn: bool = True) -> tuple[str, str]:
    """(text, encoding) of a text file: the first of :data:`ENCODINGS` that decodes it, with one warning
    naming the file when that is not UTF-8; DataError naming the file when it cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check the path and its permissions") from None
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path}: not a text file (UTF-16 or binary); save it as UTF-8 text")
    for enc in ENCODINGS:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        if warn and enc != ENCODINGS[0]:
            log.warning("%s: not UTF-8 text; read as %s (save it as UTF-8 to be sure names with accents match)",
                        path, enc)
        return text, enc
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def sniff_delimiter(text: str) -> str:
    """The column separator of ``text``: one of ``,;<tab>|`` (csv.Sniffer on the first lines, else the one
    the first line holds most of), or " " (runs of spaces) when the first line holds none of them."""
    lines = [ln for ln in text.splitlines() if ln.strip()][:50]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        pass
    counts = {d: lines[0].count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else " "


def read_table(path: str | os.PathLike) -> Table:
    """Read a delimited text file (any of the encodings and separators above); cells are stripped, blank
    lines dropped. DataError naming the file when it is not text or not a table."""
    path = Path(path)
    text, enc = decode(path)
    delim = sniff_delimiter(text)
    rows: list[tuple[int, list[str]]] = []
    if delim == " ":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                rows.append((lineno, line.split()))
        return Table(path, rows, enc, delim)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        start = 1
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: cannot read ({exc}); fix that line") from None
    return Table(path, rows, enc, delim)
