"""Face geometry from landmarks: eye-aligned, interocular-scaled coordinates plus pairwise distances.

Pure functions on arrays. The features do not change when a face is moved, rotated or scaled in the
image (a similarity transform), so crops and most augmentations leave them alone; a horizontal flip
does change them (use :func:`compound_fer.data.schemes.flip_points` on the landmarks first).
"""

from __future__ import annotations

import numpy as np

from compound_fer.data.schemes import LandmarkScheme, get_scheme


def _scheme(scheme: str | LandmarkScheme) -> LandmarkScheme:
    return get_scheme(scheme) if isinstance(scheme, str) else scheme


def _as_points(landmarks, s: LandmarkScheme) -> np.ndarray:
    p = np.asarray(landmarks.detach().cpu().numpy() if hasattr(landmarks, "detach") else landmarks, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[1:] != (s.n_points, 2):
        raise ValueError(f"{s.name} landmarks must be (N, {s.n_points}, 2) or ({s.n_points}, 2), got {p.shape}")
    return p


def eye_aligned(landmarks, scheme: str | LandmarkScheme) -> np.ndarray:
    """(N, K, 2) float64 points with the eye midpoint at the origin, the eyes on the x axis (image-left
    eye at x = -0.5, image-right at +0.5): a similarity transform fixed by the two eye centres.
    Faces whose eye centres coincide or are not finite give NaN rows."""
    s = _scheme(scheme)
    p = _as_points(landmarks, s)
    le, re = s.eye_centres(p)
    d = re - le
    iod = np.hypot(d[:, 0], d[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        c, sn = d[:, 0] / iod, d[:, 1] / iod  # rotate by -angle: [[c, s], [-s, c]]
        rel = p - ((le + re) / 2)[:, None, :]
        x = (rel[..., 0] * c[:, None] + rel[..., 1] * sn[:, None]) / iod[:, None]
        y = (-rel[..., 0] * sn[:, None] + rel[..., 1] * c[:, None]) / iod[:, None]
    out = np.stack([x, y], axis=-1)
    out[~(iod > 1e-9)] = np.nan
    return out


def interocular(landmarks, scheme: str | LandmarkScheme) -> np.ndarray:
    """(N,) distance between the eye centres, in the landmarks' units."""
    s = _scheme(scheme)
    le, re = s.eye_centres(_as_points(landmarks, s))
    return np.hypot(*(re - le).T)


def feature_count(scheme: str | LandmarkScheme) -> int:
    """Length F of :func:`geometry_features` rows: 2K coordinates + k(k-1)/2 distances of k key points."""
    s = _scheme(scheme)
    k = len(s.key_points)
    return 2 * s.n_points + k * (k - 1) // 2


def geometry_features(landmarks, scheme: str | LandmarkScheme) -> np.ndarray:
    """(N, F) float32: the eye-aligned, interocular-scaled coordinates of every point (x0, y0, x1, ...)
    then the distances between every pair of the scheme's key points (i < j, key-point order).

    ``landmarks``: (N, K, 2) or (K, 2), numpy or torch, any pixel frame. Missing faces (NaN points)
    give NaN rows; mask them with ``FaceSet.landmarks_valid`` or impute before a model sees them.
    """
    s = _scheme(scheme)
    q = eye_aligned(landmarks, s)
    key = q[:, list(s.key_points), :]
    i, j = np.triu_indices(len(s.key_points), k=1)
    dist = np.linalg.norm(key[:, i, :] - key[:, j, :], axis=-1)
    return np.concatenate([q.reshape(len(q), -1), dist], axis=1).astype(np.float32)
