"""Face alignment, region masks and the on-disk crop cache, on synthetic faces (no research data)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from compound_fer import taxonomy
from compound_fer.data import faces
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.folder import read_folder
from compound_fer.data.load import load_faces
from compound_fer.errors import DataError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def template_landmarks(cx: float = 100.0, cy: float = 100.0, s: float = 1.0) -> np.ndarray:
    """A plausible 78-point CFEE landmark set for a 200x200 synthetic face (scale s, centre cx, cy)."""
    def ring(x, y, rx, ry, n, start=0.0):
        t = start + np.arange(n) * 2 * np.pi / n
        return np.stack([x + rx * np.cos(t), y + ry * np.sin(t)], 1)

    p = np.zeros((78, 2))
    p[0], p[9] = (-30, -10), (30, -10)
    p[1:9] = ring(-30, -10, 11, 5, 8)
    p[10:18] = ring(30, -10, 11, 5, 8)
    p[18:26] = ring(-30, -30, 16, 3, 8)
    p[26:34] = ring(30, -30, 16, 3, 8)
    p[34:49] = np.stack([np.linspace(-10, 10, 15), np.linspace(-5, 30, 15)], 1)
    p[49:57] = ring(0, 55, 22, 9, 8, start=np.pi)  # 49 left corner, 53 right corner
    p[57:63] = ring(0, 55, 14, 3, 6, start=np.pi)
    t = np.linspace(np.pi, 0, 15)  # from the left temple through the chin (70) to the right
    p[63:78] = np.stack([60 * np.cos(t), -10 + 90 * np.sin(t)], 1)
    return p * s + (cx, cy)


def draw_face(lm: np.ndarray, size: tuple[int, int] = (200, 200)) -> np.ndarray:
    """RGB uint8 image: a skin ellipse, dark eyes, red mouth, and pupils marked red (left) / blue (right)."""
    h, w = size
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.fillConvexPoly(
        img, cv2.convexHull(np.round(np.vstack([lm[63:78], lm[18:34]])).astype(np.int32)), (220, 180, 150)
    )
    for idx in (range(1, 9), range(10, 18)):
        cv2.fillConvexPoly(img, cv2.convexHull(np.round(lm[list(idx)]).astype(np.int32)), (40, 40, 40))
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(lm[49:57]).astype(np.int32)), (150, 40, 60))
    cv2.circle(img, tuple(int(round(v)) for v in lm[0]), 3, RED, -1)
    cv2.circle(img, tuple(int(round(v)) for v in lm[9]), 3, BLUE, -1)
    return img


def rotate(img: np.ndarray, lm: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderValue=(90, 90, 90)), lm @ m[:, :2].T + m[:, 2]


def centroid(img: np.ndarray, colour) -> np.ndarray:
    d = np.abs(img.astype(int) - np.array(colour)).sum(-1)
    ys, xs = np.nonzero(d < 120)
    assert len(xs), f"colour {colour} not found in crop"
    return np.array([xs.mean(), ys.mean()])


def write_landmarks_csv(path, rows: dict[str, np.ndarray]) -> None:
    head = ["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)]
    with open(path, "w") as f:
        f.write(",".join(head) + "\n")
        for name, lm in rows.items():
            f.write(",".join([name] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]) + "\n")


def make_folder(root, n_per_class: int = 3, classes=("happy", "Sadly surprised")) -> list[str]:
    """ROOT/<class>/<i>.png synthetic faces with a landmarks.csv; returns the relative file names."""
    rows, names = {}, []
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            lm = template_landmarks(100 + 3 * i, 100 - 2 * k, 1.0 + 0.05 * i)
            img, lm = rotate(draw_face(lm), lm, 4.0 * (i - 1))
            rel = f"{cls}/{i}.png"
            Image.fromarray(img).save(root / rel)
            rows[rel] = lm
            names.append(rel)
    write_landmarks_csv(root / "landmarks.csv", rows)
    return names


@pytest.mark.parametrize("degrees", [-12.0, 0.0, 9.0])
def test_landmark_crop_levels_the_eyes_and_keeps_left_left(degrees):
    lm = template_landmarks()
    img, lm = rotate(draw_face(lm), lm, degrees)
    fc = faces.crop_face(img, landmarks=lm, method="landmarks", size=112)
    assert fc.image.shape == (112, 112, 3) and fc.image.dtype == np.uint8
    left, right = centroid(fc.image, RED), centroid(fc.image, BLUE)
    assert abs(left[1] - right[1]) < 1.5, (degrees, left, right)  # eyes level whatever the head roll
    assert left[0] < 56 < right[0]  # mirrored nothing, face centred
    assert fc.method == "landmarks" and fc.regions == "landmarks"


def test_landmark_masks_sit_on_their_features():
    lm = template_landmarks()
    img = draw_face(lm)
    fc = faces.crop_face(img, landmarks=lm, method="landmarks", size=112)
    ys = {}
    for r, mask in zip(taxonomy.REGIONS, fc.masks):
        assert mask.sum() > 10, r
        ys[r] = np.nonzero(mask)[0].mean()
    assert ys["brows"] < ys["eyes"] < ys["nose"] < ys["mouth"] < ys["chin"]
    # the mouth mask covers the drawn (red-brown) mouth and the eye mask the dark eyes
    mouth_px = np.abs(fc.image.astype(int) - (150, 40, 60)).sum(-1) < 60
    assert fc.masks[taxonomy.REGIONS.index("mouth")][mouth_px].mean() > 0.9
    eye_px = np.abs(fc.image.astype(int) - (40, 40, 40)).sum(-1) < 40
    assert fc.masks[taxonomy.REGIONS.index("eyes")][eye_px].mean() > 0.9


def test_canonical_masks_are_ordered_and_shrink_with_margin():
    m = faces.canonical_masks(112)
    ys = [np.nonzero(x)[0].mean() for x in m]
    assert ys == sorted(ys)  # brows, eyes, nose, mouth, chin from top to bottom
    wide = faces.canonical_masks(112, margin=0.4)
    assert wide.sum() < m.sum()


def test_folder_reader_labels_and_cache_hit(tmp_path, monkeypatch):
    names = make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    fs = read_folder(tmp_path / "data", crop=CropOptions(image_size=64, detector="mediapipe"),
                     cache_dir=cache, progress=False)
    assert len(fs) == 6 and fs.images.shape == (6, 3, 64, 64)
    assert sorted(fs.class_names) == ["Happy", "Sadly surprised"]
    assert fs.labels.tolist().count(taxonomy.label_of("Sadly surprised")) == 3
    assert len(set(fs.subjects.tolist())) == 6  # no subjects.csv: one subject per file
    assert fs.meta["region_masks"] == "landmarks" and fs.region_masks.shape == (6, 5, 64, 64)
    assert fs.meta["cache_hits"] == 0 and list(cache.glob("faces-*.pt"))

    calls = []

    def spy(job):
        calls.append(job[0])
        return real(job)

    real = faces._process_one
    monkeypatch.setattr(faces, "_process_one", lambda job: pytest.fail(f"detector called on cached {job[0]}"))
    again = read_folder(tmp_path / "data", crop=CropOptions(image_size=64, detector="mediapipe"),
                        cache_dir=cache, progress=False)
    assert again.meta["cache_hits"] == 6
    assert np.array_equal(again.images.numpy(), fs.images.numpy())
    assert np.array_equal(again.region_masks.numpy(), fs.region_masks.numpy())

    # a changed file (new mtime) is processed again, the others still come from the cache
    changed = tmp_path / "data" / names[0]
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    monkeypatch.setattr(faces, "_process_one", spy)
    third = read_folder(tmp_path / "data", crop=CropOptions(image_size=64, detector="mediapipe"),
                        cache_dir=cache, progress=False)
    assert calls == [str(changed)] and third.meta["cache_hits"] == 5

    # other parameters -> another cache entry, not a wrong hit
    calls.clear()
    read_folder(tmp_path / "data", crop=CropOptions(image_size=48, detector="mediapipe"),
                cache_dir=cache, progress=False)
    assert len(calls) == 6


def test_cache_env_and_disable(tmp_path, monkeypatch):
    make_folder(tmp_path / "data", n_per_class=1)
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "envcache"))
    load_faces(tmp_path / "data", image_size=32, progress=False)
    assert list((tmp_path / "envcache").glob("faces-*.pt"))
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "other"))
    load_faces(tmp_path / "data", image_size=32, progress=False, cache=False)
    assert not (tmp_path / "other").exists()


def test_damaged_cache_is_rebuilt(tmp_path):
    make_folder(tmp_path / "data", n_per_class=1)
    fs = read_folder(tmp_path / "data", crop=CropOptions(image_size=32, detector="mediapipe"),
                     cache_dir=tmp_path / "c", progress=False)
    (cache_file,) = (tmp_path / "c").glob("faces-*.pt")
    cache_file.write_bytes(b"not a torch file")
    again = read_folder(tmp_path / "data", crop=CropOptions(image_size=32, detector="mediapipe"),
                        cache_dir=tmp_path / "c", progress=False)
    assert again.meta["cache_hits"] == 0 and np.array_equal(again.images.numpy(), fs.images.numpy())


def test_subjects_csv_and_bad_parameters(tmp_path):
    names = make_folder(tmp_path / "data")
    with open(tmp_path / "data" / "subjects.csv", "w") as f:
        f.write("file,subject\n" + "".join(f"{n},{'anna' if i % 2 else 'bob'}\n" for i, n in enumerate(names)))
    fs = read_folder(tmp_path / "data", crop=CropOptions(image_size=32, detector="mediapipe"),
                     cache=False, progress=False)
    assert sorted(set(fs.subjects.tolist())) == [0, 1] and fs.meta["subjects_known"]
    with pytest.raises(DataError, match="method"):
        read_folder(tmp_path / "data", crop=CropOptions(method="retinaface", detector="mediapipe"),
                    cache=False, progress=False)
    with pytest.raises(DataError, match="image_size"):
        read_folder(tmp_path / "data", crop=CropOptions(image_size=4, detector="mediapipe"),
                    cache=False, progress=False)


def test_haar_path_without_landmarks_reports_canonical_regions(cfee_root, tmp_path):
    """Real photographs, no landmarks.csv, detector off: Haar finds the faces, regions are marked approximate."""
    src = sorted((cfee_root / "Images").glob("*.jpg"))[::400]  # 6 photos across categories
    (tmp_path / "Images").mkdir()
    for p in src:
        os.symlink(p, tmp_path / "Images" / p.name)
    fs = load_faces(tmp_path, image_size=64, cache=False, progress=False, detector=None)
    assert len(fs) == len(src), fs.meta["skipped"].summary()
    assert set(fs.meta["methods"]) <= {"haar", "haar-noeyes"} and fs.landmarks is None
    assert "approximate" in fs.meta["region_masks"] and fs.aus is None
