"""Landmark schemes: what each point of a landmark set is, so crops, flips, masks and geometry treat
every source (the CFEE release's 78 points, mediapipe's 468) alike.

Left/right are as seen in the image. A scheme's ``flip`` is the point order after a horizontal mirror:
``mirrored[i] = mirror_x(points[flip[i]])`` (the new left pupil is the old right pupil, mirrored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from compound_fer.data._mediapipe_tables import MP_FLIP, MP_KEY_POINTS, MP_NAMED, MP_PARTS


@dataclass(frozen=True)
class LandmarkScheme:
    """Index tables of one landmark scheme.

    ``left_eye``/``right_eye``: points whose mean is each eye centre (alignment, geometry).
    ``extent``: points whose bounding box (eyes levelled) is the crop box (contour and brows).
    ``parts``: point groups by face part (``left_brow``, ``outer_lip``, ``contour`` ...) for masks.
    ``key_points``: the points whose pairwise distances are geometry features.
    ``named``: points comparable across schemes (a mean of indices), for detector comparisons.
    """

    name: str
    n_points: int
    flip: tuple[int, ...]
    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]
    extent: tuple[int, ...]
    parts: Mapping[str, tuple[int, ...]]
    key_points: tuple[int, ...]
    named: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = np.asarray(self.flip)
        if sorted(self.flip) != list(range(self.n_points)) or not (f[f] == np.arange(self.n_points)).all():
            raise ValueError(f"scheme {self.name}: flip must be an involutive permutation of {self.n_points} points")

    def eye_centres(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(…, 2) image-left and image-right eye centres of (…, K, 2) points."""
        p = np.asarray(points, dtype=np.float64)
        return p[..., list(self.left_eye), :].mean(-2), p[..., list(self.right_eye), :].mean(-2)


def _cfee78_flip() -> tuple[int, ...]:
    """Mirror pairs of the CFEE order, checked against the mean cfee-subset shape (docs/data.md)."""
    pairs = [(0, 9)]
    pairs += list(zip(range(1, 6), range(14, 9, -1)))  # left eye outer..inner corner <-> right eye outer..inner
    pairs += [(6, 17), (7, 16), (8, 15)]  # lower lids
    pairs += list(zip(range(18, 23), range(30, 25, -1))) + [(23, 33), (24, 32), (25, 31)]  # brows
    pairs += list(zip(range(38, 43), range(48, 43, -1)))  # nose outline (34-37 bridge and 43 stay)
    pairs += [(49, 53), (50, 52), (54, 56), (57, 59), (60, 62)]  # lips (51, 55, 58, 61 stay)
    pairs += list(zip(range(63, 70), range(77, 70, -1)))  # contour (70 the chin stays)
    flip = list(range(78))
    for a, b in pairs:
        flip[a], flip[b] = b, a
    return tuple(flip)


_R = lambda a, b: tuple(range(a, b))  # noqa: E731

CFEE78 = LandmarkScheme(
    name="cfee78", n_points=78, flip=_cfee78_flip(), left_eye=(0,), right_eye=(9,),
    extent=_R(63, 78) + _R(18, 34),
    parts={"left_pupil": (0,), "left_eye": _R(1, 9), "right_pupil": (9,), "right_eye": _R(10, 18),
           "left_brow": _R(18, 26), "right_brow": _R(26, 34), "nose": _R(34, 49), "outer_lip": _R(49, 57),
           "inner_lip": _R(57, 63), "contour": _R(63, 78), "chin": _R(67, 74) + (49, 53, 54, 55, 56)},
    # pupils + the 22 named points: 24 points, 276 distances (all 78 points, 3,003 distances, scored lower
    # on validation subjects with the fused head; benchmarks/results/representation_tuning.json)
    key_points=(0, 1, 3, 5, 7, 9, 10, 12, 14, 16, 18, 22, 26, 30, 41, 43, 45, 49, 51, 53, 55, 58, 61, 70),
    named={"left_eye_outer": (1,), "left_eye_inner": (5,), "left_eye_top": (3,), "left_eye_bottom": (7,),
           "right_eye_inner": (10,), "right_eye_outer": (14,), "right_eye_top": (12,), "right_eye_bottom": (16,),
           "left_brow_outer": (18,), "left_brow_inner": (22,), "right_brow_inner": (26,), "right_brow_outer": (30,),
           "nose_bottom": (43,), "nose_left_wing": (41,), "nose_right_wing": (45,),
           "mouth_left": (49,), "mouth_right": (53,), "upper_lip_top": (51,), "lower_lip_bottom": (55,),
           "upper_lip_inner": (58,), "lower_lip_inner": (61,), "chin": (70,)},
)

MEDIAPIPE468 = LandmarkScheme(
    name="mediapipe468", n_points=468, flip=MP_FLIP, left_eye=MP_PARTS["left_eye"], right_eye=MP_PARTS["right_eye"],
    extent=MP_PARTS["contour"] + MP_PARTS["left_brow"] + MP_PARTS["right_brow"], parts=MP_PARTS,
    key_points=MP_KEY_POINTS, named=MP_NAMED,
)

SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (CFEE78, MEDIAPIPE468)}

#: Face regions of the named points, for per-region errors.
NAMED_REGIONS: dict[str, tuple[str, ...]] = {
    "eyes": tuple(n for n in CFEE78.named if "_eye_" in n),
    "brows": tuple(n for n in CFEE78.named if "_brow_" in n),
    "nose": tuple(n for n in CFEE78.named if n.startswith("nose")),
    "mouth": tuple(n for n in CFEE78.named if "mouth" in n or "lip" in n),
    "contour": ("chin",),
}


def get_scheme(name: str) -> LandmarkScheme:
    """The scheme called ``name``; ValueError listing the known ones."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown landmark scheme {name!r}; known: {', '.join(SCHEMES)}") from None


def flip_points(points: np.ndarray, scheme: str | LandmarkScheme, width: int) -> np.ndarray:
    """Landmarks of the horizontally mirrored image (``width`` pixels, pixel centres at integers):
    x -> width - 1 - x, and the point order permuted left <-> right. Works on (K, 2) or (N, K, 2)."""
    s = get_scheme(scheme) if isinstance(scheme, str) else scheme
    p = np.asarray(points)
    if p.shape[-2:] != (s.n_points, 2):
        raise ValueError(f"{s.name} landmarks must be (..., {s.n_points}, 2), got {p.shape}")
    out = p[..., list(s.flip), :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def named_points(points: np.ndarray, scheme: str | LandmarkScheme) -> dict[str, np.ndarray]:
    """The scheme's comparable points of (N, K, 2) landmarks: {name: (N, 2)}."""
    s = get_scheme(scheme) if isinstance(scheme, str) else scheme
    p = np.asarray(points, dtype=np.float64)
    return {n: p[..., list(idx), :].mean(-2) for n, idx in s.named.items()}
