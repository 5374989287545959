"""Landmark schemes, flips and geometry features on synthetic points (no research data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compound_fer.data.augment import augment_batch, flip_batch, make_augment
from compound_fer.data.faceset import FaceSet
from compound_fer.data.geometry import eye_aligned, feature_count, geometry_features
from compound_fer.data.schemes import CFEE78, MEDIAPIPE468, SCHEMES, flip_points


def symmetric_shape(scheme, width: int = 100, seed: int = 0) -> np.ndarray:
    """Points mirror-symmetric about x = (width - 1) / 2 under the scheme's flip, eyes level."""
    rng = np.random.default_rng(seed)
    mid = (width - 1) / 2
    p = np.zeros((scheme.n_points, 2))
    for i, j in enumerate(scheme.flip):
        if i == j:
            p[i] = (mid, rng.uniform(20, 80))
        elif i < j:
            p[i] = (mid - rng.uniform(5, 40), rng.uniform(20, 80))
            p[j] = (2 * mid - p[i, 0], p[i, 1])
    le, re = scheme.eye_centres(p)
    assert abs(le[1] - re[1]) < 1e-9 and le[0] < re[0]
    return p


def similarity(p: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return scale * p @ np.array([[c, s], [-s, c]]) + np.asarray(shift)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_flip_is_an_involution_that_swaps_sides(name):
    s = SCHEMES[name]
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 63, (3, s.n_points, 2))
    f = flip_points(p, s, 64)
    assert np.allclose(flip_points(f, s, 64), p)  # flip twice = identity
    for side, other in (("left_eye", "right_eye"), ("left_brow", "right_brow")):
        # the flipped face's left-eye points are the original right-eye points, mirrored
        got = f[:, list(s.parts[side])]
        want = p[:, [s.flip[i] for i in s.parts[side]]]
        assert np.allclose(got[..., 0], 63 - want[..., 0]) and np.allclose(got[..., 1], want[..., 1])
        assert {s.flip[i] for i in s.parts[side]} == set(s.parts[other])
    assert np.allclose(flip_points(symmetric_shape(s), s, 100), symmetric_shape(s))  # a symmetric face


def test_cfee78_mirror_pairs_follow_the_release_order():
    f = CFEE78.flip
    assert f[0] == 9 and f[1] == 14 and f[5] == 10  # pupils; outer and inner eye corners
    assert f[18] == 30 and f[22] == 26  # brow ends
    assert f[49] == 53 and f[51] == 51 and f[55] == 55 and f[70] == 70 and f[63] == 77  # lips, chin, contour
    assert all(f[i] == i for i in (34, 35, 36, 37, 43, 58, 61))  # the nose bridge and lip midpoints stay


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_geometry_is_similarity_invariant_and_flip_aware(name):
    s = SCHEMES[name]
    p = symmetric_shape(s) + np.random.default_rng(2).normal(0, 1.5, (s.n_points, 2))
    g = geometry_features(p, s)
    assert g.shape == (1, feature_count(s)) and g.dtype == np.float32
    moved = similarity(p, 0.3, 2.5, (40, -7))
    assert np.allclose(geometry_features(moved, s), g, atol=1e-4)
    q = eye_aligned(p, s)[0]
    le, re = s.eye_centres(q)
    assert np.allclose(le, (-0.5, 0)) and np.allclose(re, (0.5, 0))
    # flipping the landmarks mirrors the aligned coordinates (x -> -x, points re-ordered)
    qf = eye_aligned(flip_points(p, s, 100), s)[0]
    assert np.allclose(qf[:, 0], -q[list(s.flip), 0], atol=1e-6)
    assert np.allclose(qf[:, 1], q[list(s.flip), 1], atol=1e-6)


def test_geometry_of_missing_faces_is_nan_and_shapes_are_checked():
    p = np.stack([symmetric_shape(CFEE78), np.full((78, 2), np.nan)])
    g = geometry_features(torch.from_numpy(p).float(), "cfee78")
    assert np.isfinite(g[0]).all() and np.isnan(g[1]).all()
    with pytest.raises(ValueError, match="cfee78 landmarks must be"):
        geometry_features(np.zeros((2, 68, 2)), "cfee78")
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        geometry_features(p, "dlib68")
    assert feature_count(CFEE78) == 156 + 24 * 23 // 2 and feature_count(MEDIAPIPE468) == 936 + 91 * 90 // 2


def _faces(n: int = 4, size: int = 32, scheme=CFEE78) -> FaceSet:
    rng = np.random.default_rng(3)
    lm = torch.from_numpy(rng.uniform(0, size - 1, (n, scheme.n_points, 2)).astype(np.float32))
    valid = torch.tensor([True] * (n - 1) + [False])
    lm[~valid] = float("nan")
    return FaceSet(images=torch.from_numpy(rng.integers(0, 255, (n, 3, size, size), dtype=np.uint8)),
                   labels=torch.arange(n) % 2, subjects=torch.arange(n), aus=torch.rand(n, 17),
                   region_masks=torch.from_numpy(rng.random((n, 5, size, size)) < 0.5),
                   landmarks=lm, landmark_scheme=scheme.name, landmarks_valid=valid)


def test_faceset_keeps_landmarks_through_subset_where_concat_and_mirror():
    fs = _faces()
    sub = fs.subset([2, 0])
    assert torch.equal(sub.landmarks[1], fs.landmarks[0]) and sub.landmarks_valid.tolist() == [True, True]
    assert fs.where(labels=[1]).landmarks.shape == (2, 78, 2)
    both = FaceSet.concat([fs, fs.subset([1])])
    assert both.landmarks.shape == (5, 78, 2) and both.landmark_scheme == "cfee78"
    m = fs.mirrored()
    assert torch.equal(m.images, fs.images.flip(-1)) and torch.equal(m.region_masks, fs.region_masks.flip(-1))
    assert torch.allclose(m.landmarks[0, 0], torch.tensor([31 - fs.landmarks[0, 9, 0], fs.landmarks[0, 9, 1]]))
    assert torch.allclose(m.mirrored().landmarks[:3], fs.landmarks[:3]) and torch.equal(m.aus, fs.aus)
    # a set without landmarks joins with invalid rows; two schemes cannot share one array
    bare = FaceSet(images=fs.images[:1], labels=fs.labels[:1], subjects=fs.subjects[:1])
    mixed = FaceSet.concat([fs, bare])
    assert mixed.landmarks_valid.tolist() == [True, True, True, False, False]
    other = FaceSet.concat([fs, _faces(2, scheme=MEDIAPIPE468)])
    assert other.landmarks is None and "schemes differ" in other.meta["landmarks_dropped"]


def test_faceset_rejects_inconsistent_landmarks():
    fs = _faces()
    with pytest.raises(ValueError, match="landmark_scheme"):
        FaceSet(images=fs.images, labels=fs.labels, subjects=fs.subjects, landmarks=fs.landmarks,
                landmarks_valid=fs.landmarks_valid)
    with pytest.raises(ValueError, match=r"float32 \(N, 468, 2\)"):
        FaceSet(images=fs.images, labels=fs.labels, subjects=fs.subjects, landmarks=fs.landmarks,
                landmark_scheme="mediapipe468", landmarks_valid=fs.landmarks_valid)


def test_flip_batch_moves_each_landmark_with_its_pixel():
    size = 40
    lm = np.stack([symmetric_shape(CFEE78, size) + np.random.default_rng(4).normal(0, 2, (78, 2))])
    lm = np.clip(np.round(lm), 0, size - 1).astype(np.float32)
    img = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    x, y = int(lm[0, 0, 0]), int(lm[0, 0, 1])  # mark the left pupil
    img[0, :, y, x] = 255
    out, f = flip_batch(img, lm, "cfee78")
    nx, ny = int(f[0, 9, 0]), int(f[0, 9, 1])  # the old left pupil is the new right pupil
    assert out[0, 0, ny, nx] == 255 and (nx, ny) == (size - 1 - x, y)
    kept, same = flip_batch(img, lm, "cfee78", which=torch.tensor([False]))
    assert torch.equal(kept, img) and np.allclose(same.numpy(), lm)
    with pytest.raises(ValueError, match="scheme"):
        flip_batch(img, lm)


def test_augment_batch_reports_its_flips_without_changing_the_images():
    images = torch.rand(6, 3, 16, 16)
    t = make_augment()
    torch.manual_seed(5)
    plain = augment_batch(images, t)
    torch.manual_seed(5)
    again, flips = augment_batch(images, t, return_flips=True)
    assert torch.equal(plain, again) and flips.dtype == torch.bool and flips.shape == (6,)
    from torchvision.transforms import v2

    torch.manual_seed(6)
    only, fl = augment_batch(images, v2.RandomHorizontalFlip(p=1.0), return_flips=True)
    assert fl.all() and torch.equal(only, images.flip(-1))


def test_trunk_maps_report_flipped_views():
    from torch import nn

    from compound_fer.features import trunk_maps

    model = nn.Module()
    model.trunk = nn.Conv2d(3, 2, 1)
    images = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    plain = trunk_maps(model, images, views=2, augment=make_augment(), seed=3, progress=False)
    maps, flips = trunk_maps(model, images, views=2, augment=make_augment(), seed=3, progress=False,
                             return_flips=True)
    assert torch.equal(plain, maps) and flips.shape == (5, 3) and not flips[:, 0].any()
