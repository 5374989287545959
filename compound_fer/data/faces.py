"""Detect, align (eyes level) and crop faces, with per-region masks and landmarks, and cache the result.

Ways to place a face, in order: landmarks given with the file (the CFEE release's 78 points, a folder's
``landmarks.csv``), landmarks from the offline detector (:mod:`compound_fer.data.landmarks`), else
OpenCV's Haar cascades (:mod:`compound_fer.data.haar`). With landmarks the crop is a similarity on the
eye centres then the box around contour and brows; the landmarks are carried into the crop (same
affine as the pixels). Crops are square uint8 RGB with bool masks of the five
:data:`compound_fer.taxonomy.REGIONS` (from the landmarks when known, else canonical positions).
:func:`preprocess_faces` runs this over many files with a tqdm bar, optional worker processes and an
on-disk cache (:mod:`compound_fer.data.facecache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from compound_fer.data import landmarks
from compound_fer.data.annotations import check_inside, read_landmarks  # noqa: F401 - re-exported
from compound_fer.data.crop_options import (  # noqa: F401 - re-exported
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MARGIN,
    METHODS,
    NO_FACE,
    CropOptions,
    Method,
    check_method,
    check_no_face,
)
from compound_fer.data.facecache import (  # noqa: F401 - re-exported
    CACHE_VERSION,
    Cropped,
    Entry,
    Skipped,
    default_cache_dir,
    file_key,
    load_cache,
    note_old_versions,
    save_cache,
)
from compound_fer.data.haar import NoFace, detect_face  # noqa: F401 - re-exported
from compound_fer.data.images import MAX_SIDE, SkipReport, read_image
from compound_fer.data.schemes import CFEE78, get_scheme
from compound_fer.errors import DataError
from compound_fer.taxonomy import REGIONS

log = logging.getLogger(__name__)

#: Canonical region ellipses (centre x, centre y, radius x, radius y) as fractions of a Haar crop made
#: with margin 0.15: the landmark regions of 300 Haar crops of cfee-subset, averaged (docs/data.md).
CANONICAL_REGIONS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "brows": ((0.35, 0.31, 0.10, 0.04), (0.67, 0.31, 0.10, 0.04)),
    "eyes": ((0.37, 0.38, 0.09, 0.045), (0.65, 0.38, 0.09, 0.045)),
    "nose": ((0.51, 0.50, 0.09, 0.12),),
    "mouth": ((0.51, 0.69, 0.125, 0.06),),
    "chin": ((0.51, 0.81, 0.20, 0.09),),
}
_CANONICAL_MARGIN = DEFAULT_MARGIN


@dataclass
class FaceCrop:
    """One preprocessed face: (S, S, 3) uint8 RGB, (5, S, S) bool region masks, how it was found, and
    its landmarks in crop pixels (None when it has none) with their scheme and source."""

    image: np.ndarray
    masks: np.ndarray
    method: str  # "landmarks" | "mediapipe" | "haar" | "haar-noeyes"
    regions: str  # "landmarks" | "canonical"
    landmarks: np.ndarray | None = None
    scheme: str | None = None
    source: str | None = None  # "file" | detector name


# --------------------------------------------------------------------------------------- geometry
def _affine(angle: float, pivot: np.ndarray, centre: np.ndarray, side: float, out: int) -> np.ndarray:
    """2x3 matrix: rotate by ``-angle`` about ``pivot`` (levels the eyes), then map the square of
    ``side`` centred at ``centre`` (rotated frame) onto an ``out`` x ``out`` image."""
    c, s = math.cos(-angle), math.sin(-angle)
    r = np.array([[c, -s], [s, c]])
    k = out / side
    a = k * r
    b = -a @ pivot + k * (pivot - centre) + out / 2.0
    return np.hstack([a, b[:, None]])


def _rotate(points: np.ndarray, angle: float, pivot: np.ndarray) -> np.ndarray:
    c, s = math.cos(-angle), math.sin(-angle)
    r = np.array([[c, -s], [s, c]])
    return (points - pivot) @ r.T + pivot


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp with the affine ``m`` to ``size``; large downscales go through an area resize (no aliasing)."""
    import cv2

    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < 0.7:  # warp at native resolution, then area-resize
        big = max(size, int(round(size / scale)))
        m2 = m * (big / size)
        crop = cv2.warpAffine(image, m2, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def landmark_masks(points: np.ndarray, size: int, scheme: str = "cfee78") -> np.ndarray:
    """(5, S, S) bool masks of brows, eyes, nose, mouth, chin from landmarks in crop pixels: convex hulls
    of the scheme's parts (brows x1.3, eyes x1.5, nose x1.1, outer lip x1.15; the chin below the lips)."""
    import cv2

    parts = get_scheme(scheme).parts

    def hull(part: str, grow: float = 1.0) -> np.ndarray:
        p = points[list(parts[part])]
        if grow != 1.0:
            p = (p - p.mean(0)) * grow + p.mean(0)
        return cv2.convexHull(np.round(p).astype(np.int32))

    out = np.zeros((len(REGIONS), size, size), dtype=np.uint8)
    drawn = {
        "brows": [hull("left_brow", 1.3), hull("right_brow", 1.3)],
        "eyes": [hull("left_eye", 1.5), hull("right_eye", 1.5)],
        "nose": [hull("nose", 1.1)],
        "mouth": [hull("outer_lip", 1.15)],
        "chin": [hull("chin")],  # the contour around the chin and the lower lip ...
    }
    for name, polys in drawn.items():
        for poly in polys:
            cv2.fillConvexPoly(out[REGIONS.index(name)], poly, 1)
    out[REGIONS.index("chin")] &= 1 - out[REGIONS.index("mouth")]  # ... less the mouth
    return out.astype(bool)


def canonical_masks(size: int, margin: float = _CANONICAL_MARGIN) -> np.ndarray:
    """(5, S, S) bool masks at canonical positions of an aligned Haar crop (used when no landmarks)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    k = (1 + 2 * margin) / (1 + 2 * _CANONICAL_MARGIN)  # a wider margin shrinks the face in the crop
    xx, yy = ((xx + 0.5) / size - 0.5) * k + 0.5, ((yy + 0.5) / size - 0.5) * k + 0.5
    out = np.zeros((len(REGIONS), size, size), dtype=bool)
    for name, ellipses in CANONICAL_REGIONS.items():
        for cx, cy, rx, ry in ellipses:
            out[REGIONS.index(name)] |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return out


# --------------------------------------------------------------------------------------- one face
def _landmark_box(pts: np.ndarray, scheme: str, margin: float) -> tuple[float, np.ndarray, np.ndarray, float]:
    """(angle, pivot, centre, side): a similarity on the eye centres (levelled about their midpoint), then
    the square around the scheme's contour and brows in that frame, widened by ``margin`` per side."""
    s = get_scheme(scheme)
    le, re = s.eye_centres(pts)
    angle = math.atan2(re[1] - le[1], re[0] - le[0])
    pivot = (le + re) / 2
    rot = _rotate(pts[list(s.extent)], angle, pivot)
    lo, hi = rot.min(0), rot.max(0)
    return angle, pivot, (lo + hi) / 2, float(max(hi - lo) * (1 + 2 * margin))


def crop_face(image: np.ndarray, *, landmarks: np.ndarray | None = None, method: Method = "auto",
              size: int = DEFAULT_IMAGE_SIZE, margin: float = DEFAULT_MARGIN, scheme: str = "cfee78",
              detector: str | None = None,
              no_face: str = "skip") -> FaceCrop:
    """Align (eyes level) and crop one face to ``size`` x ``size``; raise NoFace if none is found.

    ``landmarks`` (K, 2) in the pixels of ``image``, in ``scheme`` order: used to place the crop unless
    method="haar", and carried into the crop whenever given. Without them, ``detector`` (e.g.
    "mediapipe") finds landmarks unless method="haar"; when it finds no face, ``no_face`` says "skip"
    (NoFace) or "haar" (a Haar crop, no landmarks). Last resort: Haar cascades.
    """
    check_method(method)
    check_no_face(no_face)
    pts, source = (None, None) if landmarks is None else (np.asarray(landmarks, dtype=np.float64), "file")
    if pts is None and detector is not None and method != "haar":
        from compound_fer.data.landmarks import SCHEME_OF, get_detector

        found = get_detector(detector)(image)
        if found is None and (no_face == "skip" or method == "landmarks"):
            raise NoFace(f"the {detector} landmark detector found no face")
        if found is not None:
            pts, source, scheme = found.astype(np.float64), detector, SCHEME_OF[detector]
    if method == "landmarks" and pts is None:
        raise NoFace("no landmarks for this file (method='landmarks'); add a landmarks.csv row or use method='auto'")
    if pts is not None and method in ("auto", "landmarks"):
        angle, pivot, centre, side = _landmark_box(pts, scheme, margin)
        how = "landmarks" if source == "file" else source
    else:
        box, angle, eyes = detect_face(image)
        x, y, w, h = box
        pivot = np.array([x + w / 2, y + h / 2])
        # Haar boxes are tight and can cut the chin: move down a little and add the margin.
        centre = pivot + np.array([0.0, 0.06 * h])
        side = max(w, h) * (1 + 2 * margin)
        how = "haar" if eyes else "haar-noeyes"
    if side < 8:
        raise NoFace(f"face too small ({side:.0f} px)")
    m = _affine(angle, pivot, centre, side, size)
    crop = _warp(image, m, size)
    if pts is None:
        return FaceCrop(image=np.ascontiguousarray(crop), masks=canonical_masks(size, margin), method=how,
                        regions="canonical")
    moved = _apply(m, pts)
    return FaceCrop(image=np.ascontiguousarray(crop), masks=landmark_masks(moved, size, scheme), method=how,
                    regions="landmarks", landmarks=moved.astype(np.float32), scheme=scheme, source=source)


class FaceJob(NamedTuple):
    """One file for a face worker: its path, landmark row (or None) in ``scheme`` order, the crop, and where
    the row came from (for messages)."""

    path: str
    landmarks: np.ndarray | None
    crop: CropOptions
    scheme: str
    where: str


def _process_one(job: FaceJob) -> Entry:
    """Worker: one file -> a cache entry (:mod:`compound_fer.data.facecache`), Cropped or Skipped."""
    path, lm, crop, scheme = job.path, job.landmarks, job.crop, job.scheme
    try:
        img, scale = read_image(path, max_side=MAX_SIDE)
        if lm is not None:
            lm = lm * scale
            check_inside(lm, img.shape[1], img.shape[0], f"{job.where} ({os.path.basename(path)})", scheme)
        fc = crop_face(img, landmarks=lm, method=crop.method, size=crop.image_size, margin=crop.margin,
                       scheme=scheme, detector=crop.detector, no_face=crop.no_face)
    except DataError as exc:
        return Skipped("skip", _reason(str(exc), path))
    except NoFace as exc:
        return Skipped("skip", f"no face: {exc}; crop it by hand or add landmarks")
    return Cropped("ok", fc.image, np.packbits(fc.masks, axis=None), fc.method, fc.regions, fc.landmarks, fc.scheme,
                   fc.source)


def _reason(msg: str, path: str) -> str:
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


# --------------------------------------------------------------------------------------- many faces
@dataclass
class Preprocessed:
    """Faces kept from :func:`preprocess_faces`, in input order, plus the skip report."""

    index: list[int]  # positions in the input list that gave a face
    images: np.ndarray  # (K, 3, S, S) uint8
    masks: np.ndarray  # (K, 5, S, S) bool
    methods: list[str]
    regions: list[str]
    skipped: SkipReport
    cache_hits: int
    cache_file: str | None
    landmarks: list[np.ndarray | None] = field(default_factory=list)  # crop pixels, per kept face
    schemes: list[str | None] = field(default_factory=list)
    landmark_sources: list[str | None] = field(default_factory=list)  # "file" | detector name | None

    def landmark_array(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        """(scheme, (K, P, 2) float32 with NaN rows, (K,) bool valid) in the most common scheme; faces
        with another scheme or none are invalid. None when no face has landmarks."""
        counts = {s: self.schemes.count(s) for s in self.schemes if s}
        if not counts:
            return None
        scheme = max(counts, key=lambda s: (counts[s], s == CFEE78.name))
        n = get_scheme(scheme).n_points
        out = np.full((len(self.index), n, 2), np.nan, dtype=np.float32)
        valid = np.array([s == scheme for s in self.schemes], dtype=bool)
        for j in np.flatnonzero(valid):
            out[j] = self.landmarks[j]
        return scheme, out, valid


def preprocess_faces(
    files: Sequence[str | os.PathLike],
    landmarks: Sequence[np.ndarray | None] | None = None,
    *,
    crop: CropOptions = CropOptions(),
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int = 1,
    scheme: str = "cfee78",
    landmark_rows: Sequence[str] | None = None,
    _process: Callable[[FaceJob], Entry] | None = None,
) -> Preprocessed:
    """Crop every file (reusing cached crops whose file path, size, mtime, landmarks and parameters match).

    ``landmarks``: one (K, 2) array in ``scheme`` order or None per file (``landmark_rows`` names each
    row's origin, e.g. 'landmarks.csv, line 7', for messages). Files without landmarks are placed by
    ``crop.detector`` when given (see :func:`crop_face`), else by Haar cascades. The cache is one file per
    (file list root, parameters) under ``cache_dir`` (default :func:`default_cache_dir`), written
    atomically; entries for unchanged files are reused, new or changed files are processed and the
    cache rewritten.
    """
    crop.check()
    method, size, detector = crop.method, crop.image_size, crop.detector
    get_scheme(scheme)
    if detector is not None:
        from compound_fer.data.landmarks import DETECTORS

        if detector not in DETECTORS:
            raise DataError(f"unknown landmark detector {detector!r}; use one of {', '.join(DETECTORS)} or None (off)")
    files = [str(f) for f in files]
    lms = list(landmarks) if landmarks is not None else [None] * len(files)
    rows = list(landmark_rows) if landmark_rows is not None else ["landmarks"] * len(files)
    if len(lms) != len(files) or len(rows) != len(files):
        raise ValueError("landmarks and landmark_rows must have one entry per file")
    keys = [file_key(f, lm) for f, lm in zip(files, lms)]

    params = {"version": CACHE_VERSION, "method": method, "size": size, "margin": round(float(crop.margin), 6),
              "max_side": MAX_SIDE, "scheme": scheme, "detector": detector, "no_face": crop.no_face}
    cache_file = None
    stored: dict[str, Entry] = {}
    if cache:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
        digest = hashlib.sha1(json.dumps({**params, "root": root}, sort_keys=True).encode()).hexdigest()[:20]
        cache_file = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cache_file = cache_file / f"faces-{digest}.pt"
        note_old_versions(cache_file, params)
        stored = load_cache(cache_file, params)

    results: list[Entry | None] = [stored.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    hits = len(files) - len(todo)
    if todo:
        jobs = [FaceJob(files[i], lms[i], crop, scheme, rows[i]) for i in todo]
        it = _run_jobs(jobs, workers=workers, process=_process or _process_one)
        try:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(jobs), desc=f"faces ({method}, {size}px)", unit="img",
                      disable=not progress or len(jobs) < 20, leave=False)
        except ImportError:  # pragma: no cover
            pass
        for i, res in zip(todo, it):
            results[i] = res
        if cache and cache_file is not None:
            save_cache(cache_file, params, {k: r for k, r in zip(keys, results) if r is not None}, stored)
    return _collect(files, results, size, hits, cache_file)


def _collect(files: list[str], results: list[Entry], size: int, hits: int, cache_file: Path | None) -> Preprocessed:
    skipped = SkipReport()
    out = Preprocessed(index=[], images=np.zeros((0, 3, size, size), np.uint8),
                       masks=np.zeros((0, len(REGIONS), size, size), bool), methods=[], regions=[], skipped=skipped,
                       cache_hits=hits, cache_file=str(cache_file) if cache_file else None)
    images, masks = [], []
    n_bits = len(REGIONS) * size * size
    for i, r in enumerate(results):
        if r.status != "ok":
            skipped.add(files[i], r.reason)
            continue
        out.index.append(i)
        images.append(np.asarray(r.image).transpose(2, 0, 1))
        masks.append(np.unpackbits(np.asarray(r.masks), count=n_bits).reshape(len(REGIONS), size, size).astype(bool))
        out.methods.append(r.how)
        out.regions.append(r.regions)
        out.landmarks.append(r.landmarks)
        out.schemes.append(r.scheme)
        out.landmark_sources.append(r.source)
    if images:
        out.images, out.masks = np.stack(images), np.stack(masks)
    return out


def _run_jobs(jobs: list[FaceJob], *, workers: int, process: Callable[[FaceJob], Entry]):
    if workers <= 1 or len(jobs) < 50:
        return (process(j) for j in jobs)
    import multiprocessing as mp

    def gen():
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers, initializer=_worker_init) as pool:
            yield from pool.imap(process, jobs, chunksize=16)

    return gen()


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)
    landmarks._INSTANCES.clear()  # a detector graph copied by fork is not safe to use: build a fresh one
