"""Which face regions the CAMs attend: each CAM's share inside each region, the regions a class's (or an
image's) action units expect, the pointing game against them, and per-region specificity. Pure functions
of arrays (:mod:`compound_fer.explain.relationship` applies them to a model's CAMs).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from compound_fer import taxonomy

Expected = Literal["class", "aus"]

__all__ = ["Expected", "expected_region_masks", "float_or_none", "mean_or_none", "pointing_game", "region_attention",
           "region_shares", "region_specificity"]


def region_shares(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each CAM's mass inside each region: (N, R) from cams (N, H, W) and bool masks (N, R, H, W).

    Regions may overlap (brows and eyes do), so a row can sum above 1; zero CAMs give NaN.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    total = cams.sum(axis=(1, 2))
    inside = np.einsum("nhw,nrhw->nr", cams, masks.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside / total[:, None]


def expected_region_masks(
    region_masks: np.ndarray,
    labels: Sequence[int],
    *,
    expected: Expected = "class",
    aus: np.ndarray | None = None,
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Union of the regions each image SHOULD light: bool (N, H, W), and the region names per image.

    ``expected="class"``: the regions of the class's prototypical AUs (``Category.regions``);
    ``"aus"``: the regions of the AUs actually coded for that image (``FaceSet.aus``, e.g. synthetic).
    """
    region_masks = np.asarray(region_masks, dtype=bool)
    names: list[tuple[str, ...]] = []
    if expected == "class":
        names = [taxonomy.CATEGORIES[int(y)].regions for y in labels]
    elif expected == "aus":
        if aus is None:
            raise ValueError("expected='aus' needs the per-image AU intensities (FaceSet.aus)")
        aus = np.asarray(aus)
        names = [taxonomy.regions_of([au for au, v in zip(taxonomy.ACTION_UNITS, row) if v > 0]) for row in aus]
    else:
        raise ValueError(f"expected must be 'class' or 'aus', got {expected!r}")
    sel = np.zeros(region_masks.shape[:2], dtype=bool)
    for i, regs in enumerate(names):
        for r in regs:
            sel[i, taxonomy.REGIONS.index(r)] = True
    return (region_masks & sel[:, :, None, None]).any(axis=1), names


def pointing_game(cams: np.ndarray, expected_masks: np.ndarray, *, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per image: is the CAM maximum inside the expected region, and the chance of that.

    Returns ``(hit, chance)``, both (N,) floats. ``hit`` is the share of the maximal pixels (within
    ``tol`` of the maximum) that fall inside: 1/0 for a unique maximum, and exactly the chance level for
    a flat CAM (ties broken at random). ``chance`` is the expected region's share of the image area:
    what a maximum placed uniformly at random scores.
    """
    cams = np.asarray(cams, dtype=np.float64)
    expected_masks = np.asarray(expected_masks, dtype=bool)
    peak = cams >= cams.reshape(len(cams), -1).max(axis=1)[:, None, None] - tol
    hit = (peak & expected_masks).sum(axis=(1, 2)) / peak.sum(axis=(1, 2))
    chance = expected_masks.mean(axis=(1, 2))
    return hit.astype(np.float64), chance.astype(np.float64)


def region_attention(
    cams: np.ndarray,
    labels: Sequence[int],
    region_masks: np.ndarray,
    *,
    expected: Expected = "class",
    aus: np.ndarray | None = None,
) -> dict[str, Any]:
    """(c) Where the CAMs look: share of CAM mass per region and the pointing game, per class and overall.

    Baselines reported beside the score: ``chance`` (expected-region area share) and ``prior`` (the
    pointing score of the mean CAM of ALL images, i.e. a class-blind "where faces usually matter" map:
    a class's CAM that beats it points at class-specific regions).
    """
    cams = np.asarray(cams, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    region_masks = np.asarray(region_masks, dtype=bool)
    if cams.shape[0] != len(labels) or region_masks.shape[0] != len(labels):
        raise ValueError(f"{len(cams)} CAMs, {len(labels)} labels and {len(region_masks)} masks must match")
    if region_masks.shape[-2:] != cams.shape[-2:]:
        raise ValueError(f"region masks {region_masks.shape[-2:]} and CAMs {cams.shape[-2:]} differ in size")
    shares = region_shares(cams, region_masks)
    exp_mask, exp_names = expected_region_masks(region_masks, labels, expected=expected, aus=aus)
    hit, chance = pointing_game(cams, exp_mask)
    prior = np.broadcast_to(cams.mean(axis=0), cams.shape)
    prior_hit, _ = pointing_game(prior, exp_mask)
    face = region_masks.any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        face_share = (cams * face).sum(axis=(1, 2)) / cams.sum(axis=(1, 2))
        exp_share = (cams * exp_mask).sum(axis=(1, 2)) / cams.sum(axis=(1, 2))

    def summary(sel: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(sel.sum()),
            "region_shares": {r: mean_or_none(shares[sel, j]) for j, r in enumerate(taxonomy.REGIONS)},
            "face_share": mean_or_none(face_share[sel]),
            "expected_share": mean_or_none(exp_share[sel]),
            "expected_area": float_or_none(chance[sel].mean()),
            "pointing": float_or_none(hit[sel].mean()),
            "pointing_chance": float_or_none(chance[sel].mean()),
            "pointing_prior": float_or_none(prior_hit[sel].mean()),
        }

    per_class = {}
    for c in np.unique(labels):
        sel = labels == c
        entry = summary(sel)
        entry["expected_regions"] = list(taxonomy.CATEGORIES[int(c)].regions) if expected == "class" else sorted(
            {r for i in np.flatnonzero(sel) for r in exp_names[i]}, key=taxonomy.REGIONS.index)
        per_class[taxonomy.name_of(int(c))] = entry
    return {"expected": expected, "overall": summary(np.ones(len(labels), dtype=bool)), "per_class": per_class,
            "specificity": region_specificity(per_class)}


def region_specificity(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per region: mean CAM share on it over classes that expect it, over classes that do not, and the
    difference. Class-specific attention makes the difference positive. A region every class expects
    (the mouth, in the CFEE table) has no contrast (``None``): the pointing game cannot separate
    classes there, which is why this measure exists."""
    out = {}
    for r in taxonomy.REGIONS:
        yes = [v["region_shares"][r] for v in per_class.values() if r in v["expected_regions"]
               and v["region_shares"][r] is not None]
        no = [v["region_shares"][r] for v in per_class.values() if r not in v["expected_regions"]
              and v["region_shares"][r] is not None]
        a = float(np.mean(yes)) if yes else None
        b = float(np.mean(no)) if no else None
        out[r] = {"expected": a, "not_expected": b, "difference": None if a is None or b is None else a - b,
                  "n_expected": len(yes), "n_not_expected": len(no)}
    return out


def mean_or_none(x: np.ndarray) -> float | None:
    """Mean of the non-NaN values, None when there are none: the shares of zero CAMs (no mass to share) are
    NaN, and a class whose every CAM is zero has no share (``np.nanmean`` would warn "Mean of empty slice")."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def float_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x
