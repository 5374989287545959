"""One entry point for real faces: the reader table, and :func:`scan` / :func:`load_faces` over it.

:data:`READERS` lists the layouts in the order they are tried; the first whose ``detect`` accepts the
folder scans and reads it (the labelled-folder reader accepts any folder, so it comes last). A new
layout is one :class:`~compound_fer.data.index.Reader` entry here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compound_fer.data import cfee, folder, listfile
from compound_fer.data.crop_options import READER_CROP, CropOptions
from compound_fer.data.faceset import FaceSet
from compound_fer.data.index import DataIndex, Reader, check_root

__all__ = ["READERS", "load_faces", "reader_for", "scan"]

#: Layouts tried in order: the first whose detect(root) is true reads the folder.
READERS: tuple[Reader, ...] = (cfee.READER, listfile.READER, folder.READER)


def reader_for(root: str | os.PathLike) -> tuple[Reader, Path]:
    """The reader of the folder ``root`` (checked to exist), and the folder as a Path."""
    path = check_root(root)
    return next(r for r in READERS if r.detect(path)), path


def scan(path: str | os.PathLike) -> DataIndex:
    """Cheap listing of a data folder: CFEE layout if files match ``EE_SSS_*.jpg``, else labelled folders."""
    reader, root = reader_for(path)
    return reader.scan(root)


def load_faces(path: str | os.PathLike, *, crop: CropOptions | None = None, **kw: Any) -> FaceSet:
    """Read real faces from ``path`` with the first reader of :data:`READERS` that accepts it
    (:func:`~compound_fer.data.cfee.read_cfee` when files are named ``EE_SSS_*.jpg``, else
    :func:`~compound_fer.data.folder.read_folder`), cropped as ``crop`` says (default
    :data:`~compound_fer.data.crop_options.READER_CROP`). Crop keywords (``image_size``, ``method``, ``margin``,
    ``detector``, ``no_face``) are a shorthand applied to it; the rest pass through (``cache``, ``cache_dir``,
    ``progress``, ``include``, ``workers``, ``strict_classes``)."""
    reader, root = reader_for(path)
    crop = (crop or READER_CROP).with_keywords(kw)
    return reader.read(root, crop=crop, **kw)
