"""Detect, align (eyes level) and crop faces, with per-region masks, and cache the result on disk.

Two ways to place a face: the 78 CFEE landmarks when given (``landmarks.csv``), else OpenCV's Haar
cascades (no download). The crop is square, resized to ``size`` and returned as uint8 RGB, with bool
masks of the five :data:`compound_fer.taxonomy.REGIONS` in the crop (from the landmarks when known,
else from canonical positions in the aligned crop). :func:`preprocess_faces` runs this over many files
with a tqdm bar, optional worker processes and an on-disk cache keyed by the files and parameters.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from compound_fer.data.images import MAX_SIDE, SkipReport, read_image
from compound_fer.errors import DataError
from compound_fer.taxonomy import REGIONS

log = logging.getLogger(__name__)

Method = Literal["auto", "landmarks", "haar"]
METHODS: tuple[str, ...] = ("auto", "landmarks", "haar")

#: Bump when the crop or mask geometry changes: old cache entries are then ignored.
CACHE_VERSION = 1

#: Number of landmarks in the CFEE ``landmarks.csv`` (columns file, x0..x77, y0..y77).
N_LANDMARKS = 78
#: Index ranges of the CFEE landmark scheme (left/right as seen in the image).
LM = {
    "left_pupil": [0], "left_eye": list(range(1, 9)), "right_pupil": [9], "right_eye": list(range(10, 18)),
    "left_brow": list(range(18, 26)), "right_brow": list(range(26, 34)), "nose": list(range(34, 49)),
    "outer_lip": list(range(49, 57)), "inner_lip": list(range(57, 63)), "contour": list(range(63, 78)),
}
CHIN = 70

#: Canonical region ellipses (centre x, centre y, radius x, radius y) as fractions of a Haar crop made
#: with margin 0.15: the landmark regions of 300 Haar crops of cfee-subset, averaged (docs/data.md).
CANONICAL_REGIONS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "brows": ((0.35, 0.31, 0.10, 0.04), (0.67, 0.31, 0.10, 0.04)),
    "eyes": ((0.37, 0.38, 0.09, 0.045), (0.65, 0.38, 0.09, 0.045)),
    "nose": ((0.51, 0.50, 0.09, 0.12),),
    "mouth": ((0.51, 0.69, 0.125, 0.06),),
    "chin": ((0.51, 0.81, 0.20, 0.09),),
}
_CANONICAL_MARGIN = 0.15


class NoFace(Exception):
    """No face found in an image (becomes a skip report entry)."""


@dataclass
class FaceCrop:
    """One preprocessed face: (S, S, 3) uint8 RGB, (5, S, S) bool region masks, how it was found."""

    image: np.ndarray
    masks: np.ndarray
    method: str  # "landmarks" | "haar" | "haar-noeyes"
    regions: str  # "landmarks" | "canonical"


# --------------------------------------------------------------------------------------- landmarks
def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a landmarks.csv (file, x0..x77, y0..y77) -> {file name: (78, 2) float32}; keys are the
    ``file`` column as written and its base name."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            want = ["file"] + [f"x{i}" for i in range(N_LANDMARKS)] + [f"y{i}" for i in range(N_LANDMARKS)]
            if header is None or [h.strip() for h in header[: len(want)]] != want:
                raise DataError(f"{path}: expected a header 'file,x0..x77,y0..y77'; fix the file or remove it "
                                "(faces are then found with Haar cascades)")
            for lineno, row in enumerate(reader, start=2):
                if not row or not row[0].strip():
                    continue
                try:
                    v = np.asarray([float(x) for x in row[1: 1 + 2 * N_LANDMARKS]], dtype=np.float32)
                except ValueError:
                    raise DataError(f"{path}, line {lineno}: a landmark value is not a number; fix or delete that "
                                    "line") from None
                if v.size != 2 * N_LANDMARKS or not np.isfinite(v).all():
                    raise DataError(f"{path}, line {lineno}: expected {2 * N_LANDMARKS} finite coordinates, got "
                                    f"{v.size}; fix or delete that line")
                xy = np.stack([v[:N_LANDMARKS], v[N_LANDMARKS:]], axis=1)
                name = row[0].strip().replace("\\", "/")
                out[name] = xy
                out.setdefault(os.path.basename(name), xy)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the landmarks file ({exc}); fix or remove it") from None
    return out


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


def landmark_masks(points: np.ndarray, size: int) -> np.ndarray:
    """(5, S, S) bool masks of brows, eyes, nose, mouth, chin from 78 landmarks in crop pixels."""
    import cv2

    def hull(idx: Sequence[int], grow: float = 1.0) -> np.ndarray:
        p = points[list(idx)]
        if grow != 1.0:
            p = (p - p.mean(0)) * grow + p.mean(0)
        return cv2.convexHull(np.round(p).astype(np.int32))

    out = np.zeros((len(REGIONS), size, size), dtype=np.uint8)
    parts = {
        "brows": [hull(LM["left_brow"], 1.3), hull(LM["right_brow"], 1.3)],
        "eyes": [hull(LM["left_eye"], 1.5), hull(LM["right_eye"], 1.5)],
        "nose": [hull(LM["nose"], 1.1)],
        "mouth": [hull(LM["outer_lip"], 1.15)],
    }
    for name, polys in parts.items():
        for poly in polys:
            cv2.fillConvexPoly(out[REGIONS.index(name)], poly, 1)
    # chin: below the lower lip, inside the contour around landmark 70
    chin_idx = list(range(CHIN - 3, CHIN + 4)) + [49, 53, 54, 55, 56]
    ci = REGIONS.index("chin")
    cv2.fillConvexPoly(out[ci], hull(chin_idx), 1)
    out[ci] &= 1 - out[REGIONS.index("mouth")]
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


# --------------------------------------------------------------------------------------- Haar
_CASCADES: dict[str, object] = {}


def _cascade(name: str):
    import cv2

    if name not in _CASCADES:
        path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), name)
        if not hasattr(cv2, "CascadeClassifier") or not os.path.isfile(path):
            raise DataError(
                f"OpenCV {cv2.__version__} has no Haar cascade {name!r} (opencv-python-headless 5 dropped them); "
                "install 'opencv-python-headless<5' or give landmarks.csv and method='landmarks'"
            )
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise DataError(f"cannot load the Haar cascade {path}; reinstall opencv-python-headless<5")
        _CASCADES[name] = clf
    return _CASCADES[name]


def detect_face(image: np.ndarray, *, detect_side: int = 500) -> tuple[np.ndarray, float, bool]:
    """Largest Haar face in ``image``: returns (box x, y, w, h in image pixels, eye-line angle in
    radians, whether both eyes were found). Raises NoFace."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    f = min(1.0, detect_side / max(grey.shape))  # huge images: detect on a small copy
    small = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else grey
    small = cv2.equalizeHist(small)
    min_side = max(24, int(min(small.shape) * 0.15))
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        faces = _cascade("haarcascade_frontalface_alt2.xml").detectMultiScale(
            small, scaleFactor=1.05, minNeighbors=3, minSize=(min_side, min_side))
    if len(faces) == 0:
        raise NoFace("no face detected by the Haar cascade")
    x, y, w, h = max(faces, key=lambda b: b[2] * b[3])
    # eyes: in the upper 60% of the face box, one per half
    roi = small[y: y + int(h * 0.6), x: x + w]
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        roi, scaleFactor=1.1, minNeighbors=3, minSize=(max(8, w // 10), max(8, w // 10)), maxSize=(w // 2, w // 2))
    angle, found = 0.0, False
    if len(eyes) >= 2:
        centres = [(ex + ew / 2, ey + eh / 2, ew * eh) for ex, ey, ew, eh in eyes]
        left = [c for c in centres if c[0] < w / 2]
        right = [c for c in centres if c[0] >= w / 2]
        if left and right:
            le = max(left, key=lambda c: c[2])
            re = max(right, key=lambda c: c[2])
            a = math.atan2(re[1] - le[1], re[0] - le[0])
            if abs(a) < math.radians(15):  # a wild angle is a false eye
                angle, found = a, True
    box = np.array([x, y, w, h], dtype=np.float64) / f
    return box, angle, found


# --------------------------------------------------------------------------------------- one face
def crop_face(image: np.ndarray, *, landmarks: np.ndarray | None = None, method: Method = "auto",
              size: int = 112, margin: float = 0.15) -> FaceCrop:
    """Align (eyes level) and crop one face to ``size`` x ``size``; raise NoFace if none is found.

    ``landmarks`` (78, 2) in the pixels of ``image``: used to place the crop unless method="haar", and
    to draw the region masks whenever given.
    """
    if method not in METHODS:
        raise DataError(f"unknown face method {method!r}; use one of {', '.join(METHODS)}")
    use_lm = landmarks is not None and method in ("auto", "landmarks")
    if method == "landmarks" and landmarks is None:
        raise NoFace("no landmarks for this file (method='landmarks'); add a landmarks.csv row or use method='auto'")
    if use_lm:
        pts = np.asarray(landmarks, dtype=np.float64)
        le, re = pts[0], pts[9]
        angle = math.atan2(re[1] - le[1], re[0] - le[0])
        pivot = (le + re) / 2
        rot = _rotate(pts[LM["contour"] + LM["left_brow"] + LM["right_brow"]], angle, pivot)
        lo, hi = rot.min(0), rot.max(0)
        centre = (lo + hi) / 2
        side = max(hi - lo) * (1 + 2 * margin)
        how = "landmarks"
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
    if landmarks is not None:
        masks = landmark_masks(_apply(m, np.asarray(landmarks, dtype=np.float64)), size)
        regions = "landmarks"
    else:
        masks = canonical_masks(size, margin)
        regions = "canonical"
    return FaceCrop(image=np.ascontiguousarray(crop), masks=masks, method=how, regions=regions)


def _process_one(job: tuple) -> tuple:
    """Worker: (path, landmarks, method, size, margin) -> ("ok", crop, masks, how, regions) or ("skip", reason)."""
    path, lm, method, size, margin = job
    try:
        img, scale = read_image(path, max_side=MAX_SIDE)
        fc = crop_face(img, landmarks=None if lm is None else lm * scale, method=method, size=size, margin=margin)
    except DataError as exc:
        return ("skip", _reason(str(exc), path))
    except NoFace as exc:
        return ("skip", f"no face: {exc}; crop it by hand or add landmarks")
    return ("ok", fc.image, np.packbits(fc.masks, axis=None), fc.method, fc.regions)


def _reason(msg: str, path: str) -> str:
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


# --------------------------------------------------------------------------------------- many faces
def default_cache_dir() -> Path:
    """``$COMPOUND_FER_CACHE`` or ``~/.cache/compound_fer/faces``."""
    env = os.environ.get("COMPOUND_FER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "compound_fer" / "faces"


def _file_key(path: str, lm: np.ndarray | None) -> str:
    try:
        st = os.stat(path)
        stat = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stat = "missing"
    lmh = "-" if lm is None else hashlib.sha1(np.ascontiguousarray(lm, dtype=np.float32).tobytes()).hexdigest()[:16]
    return f"{os.path.abspath(path)}|{stat}|{lmh}"


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


def preprocess_faces(
    files: Sequence[str | os.PathLike],
    landmarks: Sequence[np.ndarray | None] | None = None,
    *,
    method: Method = "auto",
    size: int = 112,
    margin: float = 0.15,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int = 1,
    _process: Callable[[tuple], tuple] | None = None,
) -> Preprocessed:
    """Crop every file (reusing cached crops whose file path, size, mtime, landmarks and parameters match).

    The cache is one file per (file list root, parameters) under ``cache_dir`` (default
    :func:`default_cache_dir`), written atomically; entries for unchanged files are reused, new or
    changed files are processed and the cache rewritten.
    """
    if method not in METHODS:
        raise DataError(f"unknown face method {method!r}; use one of {', '.join(METHODS)}")
    if not isinstance(size, int) or size < 16:
        raise DataError(f"image_size must be an integer >= 16, got {size!r}")
    if not 0 <= margin <= 1:
        raise DataError(f"margin must be between 0 and 1, got {margin!r}")
    files = [str(f) for f in files]
    lms = list(landmarks) if landmarks is not None else [None] * len(files)
    if len(lms) != len(files):
        raise ValueError("landmarks must have one entry per file")
    keys = [_file_key(f, lm) for f, lm in zip(files, lms)]

    params = {"version": CACHE_VERSION, "method": method, "size": size, "margin": round(float(margin), 6),
              "max_side": MAX_SIDE}
    cache_file = None
    stored: dict[str, tuple] = {}
    if cache:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
        digest = hashlib.sha1(json.dumps({**params, "root": root}, sort_keys=True).encode()).hexdigest()[:20]
        cache_file = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cache_file = cache_file / f"faces-{digest}.pt"
        stored = _load_cache(cache_file, params, size)

    results: list[tuple | None] = [stored.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    hits = len(files) - len(todo)
    if todo:
        jobs = [(files[i], lms[i], method, size, margin) for i in todo]
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
            _save_cache(cache_file, params, {k: r for k, r in zip(keys, results) if r is not None}, stored)

    skipped = SkipReport()
    index, images, masks, methods, regions = [], [], [], [], []
    n_bits = len(REGIONS) * size * size
    for i, r in enumerate(results):
        if r[0] == "ok":
            index.append(i)
            images.append(np.asarray(r[1]).transpose(2, 0, 1))
            masks.append(np.unpackbits(np.asarray(r[2]), count=n_bits).reshape(len(REGIONS), size, size).astype(bool))
            methods.append(r[3])
            regions.append(r[4])
        else:
            skipped.add(files[i], r[1])
    k = len(index)
    return Preprocessed(
        index=index,
        images=np.stack(images) if k else np.zeros((0, 3, size, size), np.uint8),
        masks=np.stack(masks) if k else np.zeros((0, len(REGIONS), size, size), bool),
        methods=methods, regions=regions, skipped=skipped, cache_hits=hits,
        cache_file=str(cache_file) if cache_file else None,
    )


def _run_jobs(jobs: list[tuple], *, workers: int, process: Callable[[tuple], tuple]):
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


def _load_cache(path: Path, params: dict, size: int) -> dict[str, tuple]:
    import torch

    if not path.is_file():
        return {}
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("params") != params:
            return {}
        out: dict[str, tuple] = {}
        imgs = blob["images"].numpy()
        for j, (key, status, how, reg) in enumerate(zip(blob["keys"], blob["status"], blob["methods"], blob["regions"])):
            if status == "ok":
                out[key] = ("ok", imgs[blob["slot"][j]].transpose(1, 2, 0), blob["masks"][blob["slot"][j]].numpy(), how, reg)
            else:
                out[key] = ("skip", status)
        return out
    except Exception as exc:  # a damaged cache is rebuilt, never fatal
        log.warning("ignoring unreadable face cache %s (%s); it will be rebuilt", path, exc)
        return {}


def _save_cache(path: Path, params: dict, fresh: dict[str, tuple], old: dict[str, tuple]) -> None:
    import torch

    from compound_fer.io import save_torch

    entries = {**old, **fresh}
    keys, status, methods, regions, slot, imgs, masks = [], [], [], [], [], [], []
    for key, r in entries.items():
        keys.append(key)
        if r[0] == "ok":
            status.append("ok")
            slot.append(len(imgs))
            imgs.append(np.asarray(r[1]).transpose(2, 0, 1))
            masks.append(np.asarray(r[2]))
            methods.append(r[3])
            regions.append(r[4])
        else:
            status.append(r[1])
            slot.append(-1)
            methods.append("")
            regions.append("")
    size = params["size"]
    blob = {
        "params": params, "keys": keys, "status": status, "methods": methods, "regions": regions, "slot": slot,
        "images": torch.from_numpy(np.stack(imgs)) if imgs else torch.zeros((0, 3, size, size), dtype=torch.uint8),
        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, 1), dtype=torch.uint8),
    }
    try:
        save_torch(path, blob)
    except OSError as exc:
        log.warning("could not write the face cache %s (%s); next run will preprocess again", path, exc)
