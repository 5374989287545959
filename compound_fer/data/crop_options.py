"""How a face is cropped, as one frozen object: side, placement method, margin, landmark detector and what
to do when the detector finds no face. Built from a config's ``data`` section with
:meth:`CropOptions.from_data_config`; every reader takes one (``crop=``, by default :data:`READER_CROP`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from compound_fer.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from compound_fer.config import DataConfig

Method = Literal["auto", "landmarks", "haar"]
METHODS: tuple[str, ...] = ("auto", "landmarks", "haar")
#: What to do when the automatic detector finds no face: skip the image, or crop it with Haar cascades
#: (landmarks then marked missing).
NO_FACE: tuple[str, ...] = ("skip", "haar")
#: The library's crop side when none is given (a protocol config sets its own ``data.image_size``).
DEFAULT_IMAGE_SIZE = 112
#: The margin added on each side of the face box, as a fraction of its side.
DEFAULT_MARGIN = 0.15


def check_method(method: str) -> None:
    """DataError unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise DataError(f"unknown face method {method!r}; use one of {', '.join(METHODS)}")


def check_no_face(no_face: str) -> None:
    """DataError unless ``no_face`` is one of :data:`NO_FACE`."""
    if no_face not in NO_FACE:
        raise DataError(f"unknown no_face option {no_face!r}; use one of {', '.join(NO_FACE)}")


@dataclass(frozen=True)
class CropOptions:
    """The crop of every face: ``image_size`` x ``image_size`` pixels placed by ``method`` with ``margin``;
    ``detector`` finds landmarks for files without a landmarks row (None: off), ``no_face`` says what
    happens when it finds none ("skip" or "haar")."""

    image_size: int = DEFAULT_IMAGE_SIZE
    method: str = "auto"
    margin: float = DEFAULT_MARGIN
    detector: str | None = None
    no_face: str = "skip"

    @classmethod
    def from_data_config(cls, data: "DataConfig") -> "CropOptions":
        """The crop a protocol config's ``data`` section names."""
        return cls(image_size=data.image_size, method=data.face_method, margin=data.face_margin,
                   detector=data.landmark_detector, no_face=data.no_face)

    def with_keywords(self, kw: dict[str, Any]) -> "CropOptions":
        """These options with any crop keyword of ``kw`` (``image_size``, ``method``, ...) taken out of it and
        applied: the shorthand ``load_faces(root, image_size=64)`` becomes one CropOptions here."""
        given = {f.name: kw.pop(f.name) for f in fields(self) if f.name in kw}
        return replace(self, **given) if given else self

    def check(self) -> None:
        """DataError naming the first option out of range (the detector name is checked where it is used)."""
        check_method(self.method)
        check_no_face(self.no_face)
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise DataError(f"image_size must be an integer >= 16, got {self.image_size!r}")
        if not 0 <= self.margin <= 1:
            raise DataError(f"margin must be between 0 and 1, got {self.margin!r}")


#: The readers' crop when none is given: the library's size and margin, and the offline landmark detector
#: for files without a landmarks row (a protocol config sets its own with :meth:`CropOptions.from_data_config`).
READER_CROP = CropOptions(detector="mediapipe")
