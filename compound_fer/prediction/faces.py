"""The faces of new photos, made as the model's training faces were.

The crop settings (method, margin, landmark detector, what to do without a face) are the model's
:class:`~compound_fer.prediction.recipe.Recipe`. A model trained on the synthetic faces saw whole
frames, so its photos are used whole. Files go through the training pipeline
(:func:`compound_fer.data.faces.preprocess_faces`, a tqdm bar on long inputs); landmark rows come from a
folder's own ``landmarks.csv`` or an explicit file, as the data readers take them, through the readers'
sanity checks (a bad row is named by file and line; its image is placed by the detector).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compound_fer.errors import DataError
from compound_fer.prediction.recipe import Recipe

log = logging.getLogger(__name__)
# The data modules are imported inside the functions: the package facade (``compound_fer.predict``) and
# ``compound-fer predict --help`` import this module, and data.faceset brings torch.

__all__ = ["FoundFaces", "collect_images", "find_faces"]


def collect_images(inputs: Any) -> tuple[list[Any], list[Path | None]]:
    """(items, roots): files, the image files under folders (recursively, sorted) and in-memory images, in
    order, with the folder each file was given by (its landmarks.csv applies; None for arrays). DataError
    naming a path that does not exist or a folder without images."""
    from compound_fer.data.images import IMAGE_SUFFIXES, is_image_file
    from compound_fer.data.index import walk_files

    single = isinstance(inputs, (str, os.PathLike, np.ndarray)) or hasattr(inputs, "getbands")
    items: list[Any] = []
    roots: list[Path | None] = []
    for item in [inputs] if single else inputs:
        if not isinstance(item, (str, os.PathLike)):
            items.append(item)
            roots.append(None)
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            files = [str(f) for f in walk_files(p) if is_image_file(f)]
            if not files:
                raise DataError(f"{p}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            items += files
            roots += [p] * len(files)
        elif p.is_file():
            items.append(str(p))
            roots.append(p.parent)
        else:
            raise DataError(f"{p}: no such file or folder; give image files or folders of them")
    if not items:
        raise DataError("no images given: pass image files, folders or arrays")
    return items, roots


def _landmarks_for(files: list[str], roots: list[Path], landmarks: str | os.PathLike | None
                   ) -> tuple[list, list[str], list[str], dict[int, str]]:
    """Per file: its landmarks (None without a row), where they come from, their scheme, and {position:
    why} for rows failing the loader's sanity checks (:mod:`compound_fer.data.landmark_checks`: a warning
    names the file and line; a file whose rows are mostly bad is refused). The table is ``landmarks``,
    else the ``landmarks.csv`` of the folder the file was given by (as the data readers)."""
    from compound_fer.data.annotations import landmark_rows, read_landmarks
    from compound_fer.data.landmark_checks import screen_rows

    tables: dict[Path, Any] = {}

    def table_of(root: Path) -> Any:
        if root not in tables:
            path = root / "landmarks.csv"
            tables[root] = read_landmarks(path) if path.is_file() else None
        return tables[root]

    explicit = read_landmarks(landmarks) if landmarks is not None else None
    points: list = [None] * len(files)
    rows, schemes = ["landmarks"] * len(files), ["cfee78"] * len(files)
    by_table: dict[int, tuple[Any, list[int]]] = {}
    for i, root in enumerate(roots):
        table = explicit if explicit is not None else table_of(root)
        if table is not None:
            by_table.setdefault(id(table), (table, []))[1].append(i)
    bad: dict[int, str] = {}
    for table, idx in by_table.values():
        pts, where, _ = landmark_rows(table, [files[i] for i in idx], table.path.parent)
        for i, p, w in zip(idx, pts, where):
            points[i], rows[i], schemes[i] = p, w, table.scheme
        failed = screen_rows(table, [files[i] for i in idx], pts, where, warn=False)
        if failed:
            log.warning("%s: %d of %d landmark row(s) fail the sanity checks; those photos get no label (first: "
                        "%s)", table.path, len(failed), len(idx), failed[min(failed)])
        bad.update({idx[j]: f"bad landmarks row: {why}" for j, why in failed.items()})
    return points, rows, schemes, bad


def detector_for(settings: Recipe) -> str | None:
    """The offline detector for faces without landmark rows: the training's; a model trained on landmark
    files only (method 'landmarks', no detector) gets the default one, so new photos can still be placed."""
    from compound_fer.data.landmarks import usable_detector

    if settings.source == "synthetic":
        return None
    name = settings.landmark_detector
    if name is None and settings.face_method == "landmarks":
        log.warning("the model was trained on landmark-file crops only: photos without a landmarks row are "
                    "placed by the offline detector (mediapipe) instead")
        name = "mediapipe"
    return usable_detector(name)


def _whole_frame(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of ``image`` resized to ``size`` (how synthetic-trained models saw faces)."""
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image[y:y + s, x:x + s], (size, size), interpolation=interp))


def _as_rgb(image: Any, where: str) -> np.ndarray:
    """An in-memory image (PIL, or an (H, W) / (H, W, 3|4) array, uint8 or float in [0, 1]) as uint8 RGB,
    downscaled to MAX_SIDE as files are."""
    from compound_fer.data.images import MAX_SIDE

    if hasattr(image, "getbands"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise DataError(f"{where}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(a, initial=0)) <= 1.0 else 1.0
        a = np.clip(np.rint(np.nan_to_num(a.astype(np.float64)) * scale), 0, 255)
    a = np.ascontiguousarray(a.astype(np.uint8))
    if max(a.shape[:2]) > MAX_SIDE:
        import cv2

        f = MAX_SIDE / max(a.shape[:2])
        a = cv2.resize(a, (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f))), interpolation=cv2.INTER_AREA)
    return a


class FoundFaces:
    """Per input position: the face crop (3, S, S) uint8, how it was placed, its landmarks in crop pixels
    with their scheme, its region masks (R, S, S) bool; or, where no face was made, why not."""

    def __init__(self, n: int) -> None:
        self.crop: list[np.ndarray | None] = [None] * n
        self.how: list[str | None] = [None] * n
        self.points: list[np.ndarray | None] = [None] * n
        self.scheme: list[str | None] = [None] * n
        self.masks: list[np.ndarray | None] = [None] * n
        self.reason: list[str | None] = [None] * n

    def found(self) -> list[int]:
        """Positions that have a face."""
        return [i for i, c in enumerate(self.crop) if c is not None]


def _crop_files(faces: FoundFaces, idx: list[int], files: list[str], roots: list[Path], settings: Recipe, *,
                detector: str | None, progress: bool, landmarks: str | os.PathLike | None) -> None:
    """Crop the files (at input positions ``idx``) with the training pipeline, uncached."""
    from compound_fer.data.faces import preprocess_faces

    points, rows, schemes, bad = _landmarks_for(files, roots, landmarks)
    for j, why in bad.items():  # as the loader: the image of a bad row is not used
        faces.reason[idx[j]] = why
    for scheme in sorted(set(schemes)):  # one call per landmark scheme (a call takes one)
        part = [j for j, s in enumerate(schemes) if s == scheme and j not in bad]
        if not part:
            continue
        pre = preprocess_faces([files[j] for j in part], [points[j] for j in part], crop=settings.crop(detector),
                               cache=False, progress=progress, scheme=scheme, landmark_rows=[rows[j] for j in part])
        for k, j in enumerate(pre.index):
            i = idx[part[j]]
            faces.crop[i], faces.how[i] = pre.images[k], pre.methods[k]
            faces.points[i], faces.scheme[i], faces.masks[i] = pre.landmarks[k], pre.schemes[k], pre.masks[k]
        kept = set(pre.index)
        for j, skip in zip([j for j in range(len(part)) if j not in kept], pre.skipped):  # both in input order
            faces.reason[idx[part[j]]] = skip.reason


def _crop_one(faces: FoundFaces, i: int, image: np.ndarray, settings: Recipe, detector: str | None) -> None:
    """The face of one RGB image at input position ``i`` (NoFace / DataError when there is none)."""
    from compound_fer.data.faces import canonical_masks, crop_face

    if settings.source == "synthetic":
        faces.crop[i], faces.how[i] = _whole_frame(image, settings.image_size).transpose(2, 0, 1), "whole image"
        faces.masks[i] = canonical_masks(settings.image_size)  # approximate: the frame is the face
        return

    fc = crop_face(image, method=settings.face_method, size=settings.image_size, margin=settings.face_margin,
                   detector=detector, no_face=settings.no_face)
    faces.crop[i], faces.how[i] = np.ascontiguousarray(fc.image.transpose(2, 0, 1)), fc.method
    faces.points[i], faces.scheme[i], faces.masks[i] = fc.landmarks, fc.scheme, fc.masks


def find_faces(items: Sequence[Any], settings: Recipe, *, roots: Sequence[Path | None] | None = None,
               progress: bool = True, landmarks: str | os.PathLike | None = None) -> FoundFaces:
    """Every input's face as the model's training faces were made (files: the training pipeline itself;
    arrays and synthetic-trained models: the same crop, one image at a time), or why it has none."""
    from compound_fer.data.faces import NoFace
    from compound_fer.data.images import read_image

    faces = FoundFaces(len(items))
    detector = detector_for(settings)
    by_file = settings.source != "synthetic"
    paths = [i for i, x in enumerate(items) if isinstance(x, (str, os.PathLike))] if by_file else []
    if paths:
        files = [str(items[i]) for i in paths]
        folders = [Path(f).parent if roots is None or roots[i] is None else roots[i] for f, i in zip(files, paths)]
        _crop_files(faces, paths, files, folders, settings, detector=detector, progress=progress, landmarks=landmarks)
    rest = [i for i in range(len(items)) if i not in set(paths)]
    from tqdm.auto import tqdm

    for i in tqdm(rest, desc="faces", unit="img", disable=not progress or len(rest) < 20, leave=False):
        item = items[i]
        try:
            image = read_image(item)[0] if isinstance(item, (str, os.PathLike)) else _as_rgb(item, f"image {i}")
            _crop_one(faces, i, image, settings, detector)
        except NoFace as exc:
            faces.reason[i] = f"no face: {exc}"
        except DataError as exc:  # read_image names the file: the row already does
            msg, prefix = str(exc), f"{item}: "
            faces.reason[i] = (
                msg[len(prefix) :] if isinstance(item, (str, os.PathLike)) and msg.startswith(prefix) else msg
            )
    return faces
