"""Landmarks through crops, the cache, flips and the detector path, on synthetic faces (a fake detector);
the real detector and real photographs only where installed / present."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from landmark_shapes import cfee_points

from compound_fer.data import faces, landmarks
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.facecache import CACHE_VERSION
from compound_fer.data.schemes import MEDIAPIPE468
from compound_fer.errors import DataError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def lm78(cx=100.0, cy=100.0, s=1.0, deg=0.0) -> np.ndarray:
    t = np.radians(deg)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return cfee_points() * s @ r.T + (cx, cy)


def draw(lm: np.ndarray, size=(200, 200)) -> np.ndarray:
    img = np.full((*size, 3), 90, np.uint8)
    skin = cv2.convexHull(np.round(np.vstack([lm[63:78], lm[18:34]])).astype(np.int32))
    cv2.fillConvexPoly(img, skin, (220, 180, 150))
    cv2.circle(img, tuple(int(round(v)) for v in lm[0]), 3, RED, -1)
    cv2.circle(img, tuple(int(round(v)) for v in lm[9]), 3, BLUE, -1)
    return img


def centroid(img: np.ndarray, colour) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(img.astype(int) - np.array(colour)).sum(-1) < 120)
    assert len(xs), f"colour {colour} not in the crop"
    return np.array([xs.mean(), ys.mean()])


def mp468_from(lm: np.ndarray) -> np.ndarray:
    """A fake 468-point set placed on a CFEE cartoon: eye rings round the pupils, jaw on the contour,
    brows on the brows, the rest at the face centre."""
    p = np.tile(lm[34:49].mean(0), (468, 1))
    for part, src in (("left_eye", lm[1:9]), ("right_eye", lm[10:18]), ("left_brow", lm[18:26]),
                      ("right_brow", lm[26:34]), ("contour", lm[63:78])):
        idx = MEDIAPIPE468.parts[part]
        p[list(idx)] = src[np.linspace(0, len(src) - 1, len(idx)).round().astype(int)]
        if part.endswith("eye"):
            p[list(idx)] += (lm[0] if part == "left_eye" else lm[9]) - p[list(idx)].mean(0)
    return p


@pytest.mark.parametrize("deg", [0.0, 12.0, -20.0])
def test_crop_carries_landmarks_with_the_pixels(deg):
    lm = lm78(deg=deg)
    fc = faces.crop_face(draw(lm), landmarks=lm, size=112)
    assert fc.scheme == "cfee78" and fc.source == "file" and fc.landmarks.shape == (78, 2)
    assert np.abs(centroid(fc.image, RED) - fc.landmarks[0]).max() < 1.5
    assert np.abs(centroid(fc.image, BLUE) - fc.landmarks[9]).max() < 1.5
    assert abs(fc.landmarks[0, 1] - fc.landmarks[9, 1]) < 1e-3  # eyes level
    # a Haar crop (method="haar") still carries the file's landmarks, moved with the pixels
    box = np.array([40.0, 40.0, 120.0, 120.0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(faces, "detect_face", lambda img: (box, 0.0, False))
        h = faces.crop_face(draw(lm), landmarks=lm, method="haar", size=112)
    assert h.method == "haar-noeyes" and np.abs(centroid(h.image, RED) - h.landmarks[0]).max() < 1.5


def test_flipping_a_crop_flips_its_landmarks():
    from compound_fer.data.augment import flip_batch

    lm = lm78(deg=8)
    fc = faces.crop_face(draw(lm), landmarks=lm, size=96)
    img = torch.from_numpy(fc.image).permute(2, 0, 1)[None]
    out, f = flip_batch(img, fc.landmarks[None], "cfee78")
    flipped = out[0].permute(1, 2, 0).numpy()
    # the red (image-left) pupil is now on the right: the new right pupil (9) sits on it
    assert np.abs(centroid(flipped, RED) - f[0, 9].numpy()).max() < 1.5
    assert np.abs(centroid(flipped, BLUE) - f[0, 0].numpy()).max() < 1.5


def fake_detector(monkeypatch, result):
    calls = []

    def detect(image):
        calls.append(image.shape)
        return None if result is None else result.astype(np.float32)

    monkeypatch.setitem(landmarks._INSTANCES, "mediapipe", detect)
    return calls


def test_detector_places_faces_without_landmarks(monkeypatch):
    lm = lm78(deg=10)
    calls = fake_detector(monkeypatch, mp468_from(lm))
    fc = faces.crop_face(draw(lm), size=112, detector="mediapipe")
    assert calls and fc.method == "mediapipe" and fc.scheme == "mediapipe468" and fc.source == "mediapipe"
    assert fc.landmarks.shape == (468, 2) and fc.regions == "landmarks"
    le, re = MEDIAPIPE468.eye_centres(fc.landmarks)
    assert abs(le[1] - re[1]) < 1e-3 and np.abs(centroid(fc.image, RED) - le).max() < 1.5
    # file landmarks win over the detector; method="haar" never runs it
    calls.clear()
    assert faces.crop_face(draw(lm), landmarks=lm, size=64, detector="mediapipe").scheme == "cfee78" and not calls


def test_detector_finding_no_face_skips_or_falls_back_to_haar(monkeypatch):
    lm = lm78()
    fake_detector(monkeypatch, None)
    with pytest.raises(faces.NoFace, match="mediapipe landmark detector found no face"):
        faces.crop_face(draw(lm), size=64, detector="mediapipe")
    monkeypatch.setattr(faces, "detect_face", lambda img: (np.array([40.0, 40, 120, 120]), 0.0, True))
    fc = faces.crop_face(draw(lm), size=64, detector="mediapipe", no_face="haar")
    assert fc.method == "haar" and fc.landmarks is None and fc.regions == "canonical"
    with pytest.raises(DataError, match="no_face"):
        faces.crop_face(draw(lm), size=64, detector="mediapipe", no_face="ignore")


def write_images(tmp_path, n=3):
    files, lms = [], []
    for i in range(n):
        lm = lm78(100 + 3 * i, 100, 1.0, deg=5 * i)
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(draw(lm), cv2.COLOR_RGB2BGR))
        files.append(str(p))
        lms.append(lm)
    return files, lms


def test_preprocess_caches_landmarks_and_reports_no_face(tmp_path, monkeypatch):
    files, lms = write_images(tmp_path)
    fake_detector(monkeypatch, mp468_from(lms[1]))
    pre = faces.preprocess_faces(files, [lms[0], lms[1], None], crop=CropOptions(image_size=64, detector="mediapipe"),
                                 cache_dir=tmp_path / "c", progress=False)
    assert pre.schemes == ["cfee78", "cfee78", "mediapipe468"] and pre.landmark_sources == ["file", "file", "mediapipe"]
    scheme, arr, valid = pre.landmark_array()
    assert scheme == "cfee78" and arr.shape == (3, 78, 2) and valid.tolist() == [True, True, False]
    assert np.isnan(arr[2]).all()
    monkeypatch.setattr(faces, "_process_one", lambda job: pytest.fail(f"recomputed cached {job[0]}"))
    again = faces.preprocess_faces(files, [lms[0], lms[1], None], crop=CropOptions(image_size=64, detector="mediapipe"),
                                   cache_dir=tmp_path / "c", progress=False)
    assert again.cache_hits == 3 and again.schemes == pre.schemes
    assert all(np.array_equal(a, b) for a, b in zip(again.landmarks, pre.landmarks))
    blob = torch.load(next((tmp_path / "c").glob("faces-*.pt")), weights_only=True)
    assert blob["params"]["version"] == CACHE_VERSION == 2


def test_no_face_from_the_detector_is_a_skip_and_cached(tmp_path, monkeypatch):
    files, _ = write_images(tmp_path, 2)
    fake_detector(monkeypatch, None)
    pre = faces.preprocess_faces(files, None, crop=CropOptions(image_size=48, detector="mediapipe"),
                                 cache_dir=tmp_path / "c", progress=False)
    assert pre.index == [] and len(pre.skipped) == 2
    assert all("mediapipe landmark detector found no face" in s.reason for s in pre.skipped)


def test_old_cache_version_is_kept_and_named(tmp_path, caplog):
    files, lms = write_images(tmp_path, 1)
    first = faces.preprocess_faces(files, lms, crop=CropOptions(image_size=48), cache_dir=tmp_path / "c",
                                   progress=False)
    (path,) = (tmp_path / "c").glob("faces-*.pt")
    blob = torch.load(path, weights_only=True)
    blob["params"]["version"] = 1
    old = path.with_name("faces-old.pt")
    torch.save(blob, old)
    path.unlink()
    with caplog.at_level(logging.WARNING):
        again = faces.preprocess_faces(files, lms, crop=CropOptions(image_size=48), cache_dir=tmp_path / "c",
                                   progress=False)
    assert again.cache_hits == 0 and np.array_equal(again.landmarks[0], first.landmarks[0])
    assert old.is_file() and "cache version 1" in caplog.text and "left in place" in caplog.text


def test_landmarks_outside_the_image_name_the_row(tmp_path):
    files, lms = write_images(tmp_path, 1)
    far = lms[0] + (0, 400)
    pre = faces.preprocess_faces(files, [far], crop=CropOptions(image_size=48), cache=False, progress=False,
                                 landmark_rows=["landmarks.csv, line 7"])
    (skip,) = list(pre.skipped)
    assert "landmarks.csv, line 7 (f0.png): the image-left eye centre" in skip.reason
    assert "outside the 200x200 image" in skip.reason


# ------------------------------------------------------------------ the real detector (where installed)
def test_real_detector_on_cfee_photos(cfee_root):
    pytest.importorskip("mediapipe")
    from compound_fer.data.annotations import read_landmarks
    from compound_fer.data.images import read_image
    from compound_fer.data.schemes import named_points

    table = read_landmarks(cfee_root / "landmarks.csv")
    for p in sorted((cfee_root / "Images").glob("*.jpg"))[::700]:
        img, scale = read_image(p)
        pts = landmarks.detect_landmarks(img)
        assert pts is not None and pts.shape == (468, 2)
        manual = table[p.name] * scale
        iod = np.linalg.norm(manual[9] - manual[0])
        got, want = named_points(pts[None], "mediapipe468"), named_points(manual[None], "cfee78")
        for name in ("mouth_left", "mouth_right", "left_eye_outer", "right_eye_outer"):
            assert np.linalg.norm(got[name] - want[name]) < 0.15 * iod, (p.name, name)
    assert landmarks.detect_landmarks(np.full((120, 120, 3), 128, np.uint8)) is None  # a blank image: no face


def test_crop_options_keep_the_cache_file_name_and_params(tmp_path):
    """The cache file of a CropOptions crop is the one the loose keyword arguments named (existing caches hit)."""
    import hashlib
    import json
    import os

    from compound_fer.data.images import MAX_SIDE

    files, lms = write_images(tmp_path, 1)
    faces.preprocess_faces(files, lms, crop=CropOptions(image_size=48, margin=0.2, method="landmarks"),
                           cache_dir=tmp_path / "c", progress=False)
    params = {"version": CACHE_VERSION, "method": "landmarks", "size": 48, "margin": 0.2, "max_side": MAX_SIDE,
              "scheme": "cfee78", "detector": None, "no_face": "skip"}
    root = os.path.dirname(os.path.abspath(files[0]))
    digest = hashlib.sha1(json.dumps({**params, "root": root}, sort_keys=True).encode()).hexdigest()[:20]
    (path,) = (tmp_path / "c").glob("faces-*.pt")
    assert path.name == f"faces-{digest}.pt"
    assert torch.load(path, weights_only=True)["params"] == params


def test_crop_options_from_a_data_config():
    from compound_fer.config import DataConfig

    crop = CropOptions.from_data_config(DataConfig(image_size=96, face_margin=0.1, landmark_detector=None))
    assert crop == CropOptions(image_size=96, method="auto", margin=0.1, detector=None, no_face="skip")
    with pytest.raises(DataError, match="margin"):
        CropOptions(margin=2.0).check()
