"""Procedural FACS faces: the embedded default dataset, drawn by the package itself from no files.

A 2D cartoon face whose geometry the action units drive (brows, lids, cheeks, nose, lips, jaw). Each
category draws its prototypical AUs almost always and its variants at the rates of Du, Tao & Martinez
(2014, Table 1), so categories with identical prototypes separate only through their variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.data.face_drawing import render_face
from compound_fer.data.faceset import FaceSet

#: Probability that a prototypical AU of the category is active in one image ("almost always").
PROTOTYPE_RATE: float = 0.95
#: Intensities of active AUs are uniform in this range (FACS A..E mapped to (0, 1]).
INTENSITY_RANGE: tuple[float, float] = (0.35, 1.0)

_AUS = taxonomy.ACTION_UNITS
_AU_INDEX = {au: i for i, au in enumerate(_AUS)}

# ----------------------------------------------------------------------------------------------
# Action units: the fast path that samples AUs without rendering
# ----------------------------------------------------------------------------------------------


def au_rates(category: str) -> np.ndarray:
    """Probability of each AU (in ``taxonomy.ACTION_UNITS`` order) being active in an image of ``category``."""
    cat = taxonomy.by_name(category)
    p = np.zeros(len(_AUS), dtype=np.float64)
    for au in cat.prototypical:
        p[_AU_INDEX[au]] = PROTOTYPE_RATE
    for au, rate in cat.variants.items():
        p[_AU_INDEX[au]] = rate
    return p


def sample_au_matrix(category: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """AU intensities of ``n`` images of ``category``: float32 (n, len(ACTION_UNITS)), 0 = inactive.

    The fast path: no rendering, so rate checks over thousands of samples take milliseconds.
    """
    p = au_rates(category)
    active = rng.random((n, len(_AUS))) < p
    lo, hi = INTENSITY_RANGE
    inten = rng.uniform(lo, hi, size=(n, len(_AUS)))
    return np.where(active, inten, 0.0).astype(np.float32)


def sample_aus(category: str, rng: np.random.Generator) -> dict[int, float]:
    """Active AUs of one image of ``category``: AU -> intensity in (0, 1]; prototypical with p = PROTOTYPE_RATE."""
    row = sample_au_matrix(category, 1, rng)[0]
    return {au: float(row[i]) for i, au in enumerate(_AUS) if row[i] > 0}


def active_regions(aus: np.ndarray | torch.Tensor) -> np.ndarray:
    """Which ``taxonomy.REGIONS`` the active AUs move: bool (..., len(REGIONS)) from AU vectors
    (..., len(ACTION_UNITS))."""
    a = np.asarray(aus) > 0
    table = np.zeros((len(_AUS), len(taxonomy.REGIONS)), dtype=bool)
    for au, regions in taxonomy.AU_REGIONS.items():
        for r in regions:
            table[_AU_INDEX[au], taxonomy.REGIONS.index(r)] = True
    return (a[..., :, None] & table).any(axis=-2)


def active_region_masks(faces: FaceSet) -> torch.Tensor:
    """Pixels moved by each image's active AUs: ``region_masks`` with the untouched regions zeroed,
    bool (N, R, H, W)."""
    if faces.region_masks is None or faces.aus is None:
        raise ValueError("active_region_masks needs a FaceSet with aus and region_masks (generate(masks=True))")
    keep = torch.from_numpy(active_regions(faces.aus.numpy()))
    return faces.region_masks & keep[:, :, None, None]


def active_mask(faces: FaceSet) -> torch.Tensor:
    """Union over regions of ``active_region_masks``: bool (N, H, W), the ground truth a CAM should light."""
    return active_region_masks(faces).any(dim=1)


# ----------------------------------------------------------------------------------------------
# Identities: a function of (seed, subject) only
# ----------------------------------------------------------------------------------------------

_HAIR = np.array([[25, 20, 18], [55, 38, 28], [105, 72, 45], [190, 160, 105], [150, 72, 38], [150, 148, 145]], float)
_IRIS = np.array([[70, 45, 25], [40, 30, 22], [60, 100, 150], [70, 110, 70]], float)


@dataclass(frozen=True)
class Identity:
    """Face shape, feature placement and colours of one synthetic subject (face units: 1 = image side)."""

    subject: int
    cx: float
    cy: float
    face_w: float
    face_top: float
    face_bot: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    brow_gap: float
    brow_len: float
    brow_arch: float
    brow_thick: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_low: float
    hairline: float
    hair_style: int
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]


def make_identity(seed: int, subject: int) -> Identity:
    """The identity of ``subject`` under ``seed``: the same in every category, image and call."""
    r = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject), 0x1D])
    u = r.uniform
    cy = 0.5 + u(-0.015, 0.015)
    face_top = u(0.38, 0.43)
    eye_y = cy - u(0.03, 0.065)
    t = u(0.0, 1.0)
    skin = np.array([92, 60, 42]) * (1 - t) + np.array([246, 214, 188]) * t + r.normal(0, 6, 3)
    hair = _HAIR[r.integers(len(_HAIR))] * u(0.85, 1.15)
    lips = skin * 0.55 + np.array([165, 45, 60]) * 0.45
    mouth_y = cy + u(0.19, 0.225)
    return Identity(
        subject=int(subject), cx=0.5 + u(-0.015, 0.015), cy=cy, face_w=u(0.29, 0.35), face_top=face_top,
        face_bot=u(0.37, 0.42), eye_y=eye_y, eye_dx=u(0.12, 0.142), eye_w=u(0.062, 0.074), eye_h=u(0.025, 0.032),
        eye_tilt=u(-0.004, 0.008), brow_gap=u(0.078, 0.092), brow_len=u(0.056, 0.07), brow_arch=u(0.0, 0.014),
        brow_thick=u(0.022, 0.032), nose_y=cy + u(0.085, 0.115), nose_w=u(0.032, 0.048), mouth_y=mouth_y,
        mouth_w=u(0.11, 0.13), lip_up=u(0.018, 0.026), lip_low=u(0.022, 0.032),
        hairline=cy - face_top + u(0.06, 0.13), hair_style=int(r.integers(3)),
        skin=tuple(np.clip(skin, 0, 255)), hair=tuple(np.clip(hair, 0, 255)),
        iris=tuple(_IRIS[r.integers(len(_IRIS))]), lips=tuple(np.clip(lips, 0, 255)),
    )


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _sample_rng(seed: int, subject: int, category: taxonomy.Category) -> np.random.Generator:
    """The generator of one (subject, category) cell: independent of which other cells are drawn."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject), int(category.cfee_id), 0x5A])


def iter_samples(
    *, categories: Sequence[str] | None = None, subjects: Sequence[int], per_subject: int = 2, seed: int = 0
) -> Iterator[tuple[int, taxonomy.Category, np.ndarray, np.random.Generator]]:
    """(subject, category, AU vector, nuisance rng) for every image, subject-major; no rendering."""
    cats = [taxonomy.by_name(c) for c in (categories or [c.name for c in taxonomy.CATEGORIES])]
    for s in subjects:
        for cat in cats:
            rng = _sample_rng(seed, s, cat)
            au = sample_au_matrix(cat.name, per_subject, rng)
            for k in range(per_subject):
                yield s, cat, au[k], rng


def generate(
    *,
    categories: Sequence[str] | None = None,
    n_subjects: int = 40,
    per_subject: int = 2,
    image_size: int = 64,
    seed: int = 0,
    masks: bool = True,
    progress: bool = False,
    subject_offset: int = 0,
    nuisance: bool = True,
) -> FaceSet:
    """Procedural FACS faces of ``categories`` (default: all 22) for subjects ``subject_offset + 0..n_subjects-1``.

    Deterministic per seed; an image depends only on (seed, subject, category, repeat), so sets with
    disjoint subject ranges are disjoint identities. ``region_masks[i, r]`` holds ALL face regions of
    image i (see ``active_region_masks`` for the ones its AUs move).
    """
    if n_subjects < 1 or per_subject < 1:
        raise ValueError(f"generate needs n_subjects >= 1 and per_subject >= 1, got {n_subjects}, {per_subject}")
    if image_size < 32:
        raise ValueError(f"generate needs image_size >= 32, got {image_size}")
    cats = list(categories) if categories is not None else [c.name for c in taxonomy.CATEGORIES]
    for c in cats:
        taxonomy.by_name(c)  # fail early with the valid names
    subjects = range(subject_offset, subject_offset + n_subjects)
    n = n_subjects * len(cats) * per_subject
    S = int(image_size)
    images = np.empty((n, S, S, 3), dtype=np.uint8)
    region = np.empty((n, len(taxonomy.REGIONS), S, S), dtype=bool) if masks else None
    labels = np.empty(n, dtype=np.int64)
    subj = np.empty(n, dtype=np.int64)
    aus = np.empty((n, len(_AUS)), dtype=np.float32)
    idents = {s: make_identity(seed, s) for s in subjects}
    it = iter_samples(categories=cats, subjects=subjects, per_subject=per_subject, seed=seed)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc="synthetic faces", unit="img")
    for i, (s, cat, au, rng) in enumerate(it):
        img, m = render_face(idents[s], au, image_size=S, rng=rng, nuisance=nuisance, masks=masks)
        images[i] = img
        if region is not None:
            region[i] = m
        labels[i] = taxonomy.CATEGORIES.index(cat)
        subj[i] = s
        aus[i] = au
    return FaceSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        subjects=torch.from_numpy(subj),
        sources=tuple(f"synthetic:{seed}:{i}" for i in range(n)),
        aus=torch.from_numpy(aus),
        region_masks=torch.from_numpy(region) if region is not None else None,
        meta={"generator": "synthetic", "seed": seed, "image_size": S, "subject_offset": subject_offset,
              "per_subject": per_subject, "nuisance": nuisance, "region_masks": "all regions" if masks else None},
    )


def prototype_aus(category: str, intensity: float = 0.9) -> np.ndarray:
    """The AU vector with exactly the prototypical AUs of ``category`` at ``intensity`` (for figures)."""
    v = np.zeros(len(_AUS), dtype=np.float32)
    for au in taxonomy.by_name(category).prototypical:
        v[_AU_INDEX[au]] = intensity
    return v
