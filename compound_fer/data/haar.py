"""OpenCV Haar cascades (shipped with opencv-python-headless<5, no download): the largest face and, when
both eyes are found, the eye-line angle. The fallback when a face has no landmarks."""

from __future__ import annotations

import math
import os

import numpy as np

from compound_fer.errors import DataError


class NoFace(Exception):
    """No face found in an image (becomes a skip report entry)."""


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
