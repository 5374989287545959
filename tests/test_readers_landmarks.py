"""Readers hand every face its landmarks and AUs (file, then detector), skip unknown classes, and read
list files; bad annotation files name the file and line. Synthetic faces and a fake detector; the real
detector and photographs only where installed / present."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import torch
from landmark_shapes import cfee_points
from PIL import Image
from test_face_landmarks import draw, mp468_from

from compound_fer import cli, taxonomy
from compound_fer.data import faces, landmarks
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.folder import read_folder
from compound_fer.data.listfile import RAF_LIST
from compound_fer.data.load import load_faces, scan
from compound_fer.errors import DataError

RED = (255, 0, 0)
CKPLUS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def lm_at(i: int) -> np.ndarray:
    return cfee_points() + (96 + 2 * i, 100 + i)


def write_lm_csv(path, rows: dict[str, np.ndarray], k: int = 78) -> None:
    with open(path, "w") as f:
        f.write(",".join(["file"] + [f"x{i}" for i in range(k)] + [f"y{i}" for i in range(k)]) + "\n")
        for name, lm in rows.items():
            f.write(",".join([name] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]) + "\n")


def class_folders(root, classes=("happy", "Sadly surprised"), n=2, with_csv=True) -> dict[str, np.ndarray]:
    rows = {}
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for j in range(n):
            lm = lm_at(c * n + j)
            Image.fromarray(draw(lm)).save(root / cls / f"{j}.png")
            rows[f"{cls}/{j}.png"] = lm
    if with_csv:
        write_lm_csv(root / "landmarks.csv", rows)
    return rows


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setitem(landmarks._INSTANCES, "mediapipe", lambda image: mp468_from(lm_at(0)).astype(np.float32))


@pytest.fixture
def fake_haar(monkeypatch):
    monkeypatch.setattr(faces, "detect_face", lambda img: (np.array([40.0, 40, 120, 120]), 0.0, False))


def test_folder_landmarks_file_gives_cfee78_landmarks_in_crop_pixels(tmp_path):
    class_folders(tmp_path)
    fs = read_folder(tmp_path, crop=CropOptions(image_size=64, detector="mediapipe"), cache=False, progress=False)
    assert fs.landmark_scheme == "cfee78" and fs.landmarks.shape == (4, 78, 2) and fs.landmarks_valid.all()
    assert fs.meta["landmark_sources"] == {"file": 4} and fs.meta["landmarks_file"].endswith("landmarks.csv")
    img = fs.images[0].permute(1, 2, 0).numpy()
    ys, xs = np.nonzero(np.abs(img.astype(int) - RED).sum(-1) < 120)
    assert np.abs(np.array([xs.mean(), ys.mean()]) - fs.landmarks[0, 0].numpy()).max() < 1.5
    m = fs.mirrored()  # the flipped left pupil is the original right pupil, mirrored
    assert torch.allclose(m.landmarks[:, 0, 0], 63 - fs.landmarks[:, 9, 0])


def test_folder_without_landmarks_uses_the_detector_or_haar(tmp_path, fake_detector, fake_haar):
    class_folders(tmp_path, with_csv=False)
    fs = read_folder(tmp_path, crop=CropOptions(image_size=48, detector="mediapipe"), cache=False, progress=False)
    assert fs.landmark_scheme == "mediapipe468" and fs.landmarks.shape == (4, 468, 2)
    assert fs.meta["landmark_sources"] == {"mediapipe": 4} and fs.meta["methods"] == {"mediapipe": 4}
    off = read_folder(tmp_path, crop=CropOptions(image_size=48, detector=None), cache=False, progress=False)
    assert off.landmarks is None and off.meta["landmark_sources"] == {"none": 4}
    assert off.meta["methods"] == {"haar-noeyes": 4}


def test_missing_rows_are_named_and_marked_invalid(tmp_path, fake_detector, caplog):
    rows = class_folders(tmp_path)
    write_lm_csv(tmp_path / "landmarks.csv", dict(list(rows.items())[:3]))
    with caplog.at_level(logging.WARNING):
        fs = read_folder(tmp_path, crop=CropOptions(image_size=48, detector="mediapipe"), cache=False, progress=False)
    assert "landmarks.csv: no row for 1 of 4 image(s) (1.png)" in caplog.text
    lacking = [s.endswith("Sadly surprised/1.png") for s in fs.sources]
    assert fs.landmark_scheme == "cfee78" and fs.landmarks_valid.tolist() == [not x for x in lacking]
    assert fs.meta["landmark_sources"] == {"file": 3, "mediapipe": 1}
    assert torch.isnan(fs.landmarks[lacking.index(True)]).all()


@pytest.mark.parametrize("edit, match", [
    (lambda v: v.__setitem__(5, "nan"), r"landmarks\.csv, line 3 \(happy/1\.png\): x4 is NaN"),
    (lambda v: v.__setitem__(5, ""), r"landmarks\.csv, line 3 \(happy/1\.png\): no value in column x4"),
    (lambda v: v.pop(), r"line 3 \(happy/1\.png\): expected 156 coordinates \(x0\.\.x77, y0\.\.y77\), got 155"),
    (lambda v: v.__setitem__(5, "abc"), r"landmarks\.csv, line 3 \(happy/1\.png\): a landmark value is not a number"),
])
def test_bad_landmark_rows_name_the_file_and_line(tmp_path, edit, match):
    class_folders(tmp_path)
    lines = (tmp_path / "landmarks.csv").read_text().splitlines()
    cells = lines[2].split(",")
    edit(cells)
    lines[2] = ",".join(cells)
    (tmp_path / "landmarks.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        read_folder(tmp_path, cache=False, progress=False)


def test_wrong_point_count_and_points_outside_the_image(tmp_path):
    rows = class_folders(tmp_path)
    write_lm_csv(tmp_path / "landmarks.csv", {k: v[:68] for k, v in rows.items()}, k=68)
    with pytest.raises(DataError, match="68 points per face match no landmark scheme"):
        read_folder(tmp_path, cache=False, progress=False)
    rows["happy/1.png"] = rows["happy/1.png"] + (0, 300)  # the whole row: the eyes leave the image
    rows["happy/0.png"] = rows["happy/0.png"].copy()
    rows["happy/0.png"][70, 1] = 260  # only the chin, 60 px (30% of the side) below the image
    rows["Sadly surprised/0.png"] = rows["Sadly surprised/0.png"].copy()
    rows["Sadly surprised/0.png"][70, 1] = 230  # 30 px below: a chin cut by the border is fine
    write_lm_csv(tmp_path / "landmarks.csv", rows)
    fs = read_folder(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
    why = {s.file.split("/", s.file.count("/") - 1)[-1]: s.reason for s in fs.meta["skipped"]}
    assert len(fs) == 2 and set(why) == {"happy/0.png", "happy/1.png"}
    assert "landmarks.csv, line 3 (1.png): the image-left eye centre" in why["happy/1.png"]
    assert "landmarks.csv, line 2 (0.png): point 70 (" in why["happy/0.png"]
    assert all("outside the 200x200 image" in r for r in why.values())


def test_bad_input_keeps_the_cache(tmp_path):
    class_folders(tmp_path / "d")
    read_folder(tmp_path / "d", crop=CropOptions(image_size=32, detector="mediapipe"),
                cache_dir=tmp_path / "c", progress=False)
    (cache_file,) = (tmp_path / "c").glob("faces-*.pt")
    before = cache_file.read_bytes()
    good = (tmp_path / "d" / "landmarks.csv").read_text()
    (tmp_path / "d" / "landmarks.csv").write_text(good.replace(good.splitlines()[1].split(",")[3], "nan", 1))
    with pytest.raises(DataError, match="line 2"):
        read_folder(tmp_path / "d", crop=CropOptions(image_size=32, detector="mediapipe"),
                    cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "d" / "aus.csv").write_text("file,AU99\nhappy/0.png,0.5\n")
    (tmp_path / "d" / "landmarks.csv").write_text(good)
    with pytest.raises(DataError, match="unknown action unit 'AU99'"):
        read_folder(tmp_path / "d", crop=CropOptions(image_size=32, detector="mediapipe"),
                    cache_dir=tmp_path / "c", progress=False)
    assert cache_file.read_bytes() == before and len(list((tmp_path / "c").glob("*"))) == 1
    (tmp_path / "d" / "aus.csv").unlink()
    again = read_folder(tmp_path / "d", crop=CropOptions(image_size=32, detector="mediapipe"),
                        cache_dir=tmp_path / "c", progress=False)
    assert again.meta["cache_hits"] == 4


def test_aus_csv(tmp_path):
    class_folders(tmp_path)
    (tmp_path / "aus.csv").write_text("file,AU12,au6,AU 25\nhappy/0.png,c,0.5,\nhappy/1.png,1,e,a\n")
    fs = read_folder(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
    col = {au: j for j, au in enumerate(taxonomy.ACTION_UNITS)}
    at = {s.split("/", s.count("/") - 1)[-1]: fs.aus[i] for i, s in enumerate(fs.sources)}
    assert at["happy/0.png"][col[12]] == pytest.approx(0.6) and at["happy/0.png"][col[6]] == pytest.approx(0.5)
    assert at["happy/1.png"][col[25]] == pytest.approx(0.2) and at["happy/1.png"][col[1]] == 0
    assert torch.isnan(at["Sadly surprised/0.png"]).all()  # not listed (same base name as happy/0.png)
    for text, match in [("file,AU12\nhappy/0.png,1.5\n", r"aus\.csv, line 2, AU12: '1\.5' is outside \[0, 1\]"),
                        ("file,AU12\nhappy/0.png,f\n", r"line 2, AU12: 'f' is neither a number"),
                        ("file,smile\nhappy/0.png,1\n", r"aus\.csv, line 1: unknown action unit 'smile'"),
                        ("file,AU12\nhappy/0.png,1,2\n", r"aus\.csv, line 2: expected 2 cells")]:
        (tmp_path / "aus.csv").write_text(text)
        with pytest.raises(DataError, match=match):
            read_folder(tmp_path, cache=False, progress=False)


def test_ck_plus_folder_skips_contempt_with_one_warning(tmp_path, caplog, capsys):
    class_folders(tmp_path, classes=CKPLUS, n=2)
    with caplog.at_level(logging.WARNING):
        fs = read_folder(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
    assert sorted(fs.class_names) == ["Angry", "Disgusted", "Fearful", "Happy", "Sad", "Surprised"]
    assert caplog.text.count("contempt: 2 images skipped, not a CFEE category") == 1
    assert fs.meta["skipped_classes"] == {"contempt": 2}
    with pytest.raises(DataError, match=r"'contempt' \(2 images\).*strict_classes"):
        read_folder(tmp_path, cache=False, progress=False, strict_classes=True)
    assert cli.main(["data-info", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "contempt: 2 images" in out.out + out.err and "categories: 6" in out.out
    assert scan(tmp_path).summary()["skipped_classes"] == {"contempt": 2}


def test_list_csv_reader(tmp_path):
    rows = class_folders(tmp_path / "imgs", with_csv=False)
    lines = ["path,label,subject"] + [f"imgs/{k},{k.split('/')[0]},{'p' + str(i % 2)}" for i, k in enumerate(rows)]
    lines.append("imgs/happy/0.png,contempt,p0")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    write_lm_csv(tmp_path / "landmarks.csv", {f"imgs/{k}": v for k, v in rows.items()})
    fs = load_faces(tmp_path, image_size=32, cache=False, progress=False)
    assert fs.meta["source"] == "list" and fs.meta["skipped_classes"] == {"contempt": 1}
    assert sorted(set(fs.subjects.tolist())) == [0, 1] and fs.landmark_scheme == "cfee78"
    assert sorted(fs.class_names) == ["Happy", "Sadly surprised"] and fs.landmarks_valid.all()


def test_raf_db_compound_release_layout(tmp_path, fake_detector):
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    (tmp_path / "EmoLabel").mkdir()
    lines = []
    for i, cid in enumerate((1, 4, 11, 4)):
        name = f"{'train' if i < 3 else 'test'}_{i:04d}.jpg"
        Image.fromarray(draw(lm_at(i))).save(tmp_path / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"))
        lines.append(f"{name} {cid}")
    lines.append("train_0099.jpg 2")  # listed, not on disk
    (tmp_path / "EmoLabel" / RAF_LIST).write_text("\n".join(lines) + "\n")
    fs = load_faces(tmp_path, image_size=32, cache=False, progress=False)
    assert [taxonomy.name_of(x) for x in fs.labels.tolist()] == ["Happily surprised", "Sadly angry",
                                                                 "Disgustedly surprised", "Sadly angry"]
    assert len(set(fs.subjects.tolist())) == 4 and fs.landmark_scheme == "mediapipe468"
    (skip,) = fs.meta["skipped"]
    assert skip.file.endswith("train_0099.jpg") and "not found" in skip.reason


# ------------------------------------------------------------------ real photographs
def test_cfee_photos_without_landmark_files_get_detected_landmarks(cfee_root, tmp_path):
    pytest.importorskip("mediapipe")
    for p in sorted((cfee_root / "Images").glob("*.jpg"))[:1000:250]:
        cls = taxonomy.by_id(int(p.name[:2])).name
        (tmp_path / cls).mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / cls / p.name.replace("_", "-"))  # not CFEE-named: a labelled folder
    fs = read_folder(tmp_path, crop=CropOptions(image_size=64, detector="mediapipe"), cache=False, progress=False)
    assert len(fs) == 4 and fs.landmark_scheme == "mediapipe468" and fs.landmarks_valid.all()
    assert fs.meta["landmark_sources"] == {"mediapipe": 4}
    from compound_fer.data.schemes import MEDIAPIPE468

    left, right = MEDIAPIPE468.eye_centres(fs.landmarks.numpy())
    assert np.abs(left[:, 1] - right[:, 1]).max() < 1e-3 and (left[:, 0] < right[:, 0]).all()


def test_cfee_reader_landmarks(cfee_root, tmp_path):
    from compound_fer.data.cfee import read_cfee

    fs = read_cfee(cfee_root, crop=CropOptions(image_size=64, detector="mediapipe"),
                   cache_dir=tmp_path / "c", progress=False, include=["Happy", "Sad"])
    assert fs.landmark_scheme == "cfee78" and fs.landmarks_valid.all() and fs.aus is not None
    pupils = fs.landmarks[:, [0, 9]]
    assert ((pupils > 0) & (pupils < 63)).all()
    assert torch.allclose(fs.mirrored().mirrored().landmarks, fs.landmarks)


def test_rows_in_the_usual_frame_of_a_larger_copy_are_scaled(tmp_path, caplog):
    rows = class_folders(tmp_path, n=2)
    big = cv2.resize(draw(rows["happy/1.png"]), (400, 400), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(big).save(tmp_path / "happy" / "1.png")  # a 2x copy; its row stays in the 200x200 frame
    with caplog.at_level(logging.WARNING):
        fs = read_folder(tmp_path, crop=CropOptions(image_size=64, detector="mediapipe"), cache=False, progress=False)
    assert "rows of 1 image(s) are in the 200x200 frame" in caplog.text and "1.png (400x400, x2)" in caplog.text
    i = [s.endswith("happy/1.png") for s in fs.sources].index(True)
    img = fs.images[i].permute(1, 2, 0).numpy()
    ys, xs = np.nonzero(np.abs(img.astype(int) - RED).sum(-1) < 120)
    assert np.abs(np.array([xs.mean(), ys.mean()]) - fs.landmarks[i, 0].numpy()).max() < 1.5
    # a larger image whose row is in its own pixels is left alone
    rows["happy/1.png"] = rows["happy/1.png"] * 2
    write_lm_csv(tmp_path / "landmarks.csv", rows)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = read_folder(tmp_path, crop=CropOptions(image_size=64, detector="mediapipe"),
                            cache=False, progress=False)
    assert "frame of the other images" not in caplog.text
    assert torch.allclose(again.landmarks[i], fs.landmarks[i], atol=0.05)


def test_config_turns_the_detector_off_and_strict_classes_on(tmp_path, monkeypatch, fake_haar):
    from compound_fer.config import parse_config
    from compound_fer.runner.dataset import load_dataset

    class_folders(tmp_path / "d", classes=("happy", "sadness", "contempt", "Sadly surprised"), with_csv=False)
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setitem(landmarks._INSTANCES, "mediapipe", lambda image: calls.append(1))
    data = {"source": "path", "path": str(tmp_path / "d"), "image_size": 32}
    fs = load_dataset(parse_config({"data": {**data, "landmark_detector": None}}), progress=False)
    assert not calls and fs.landmarks is None and fs.meta["skipped_classes"] == {"contempt": 2}
    with pytest.raises(DataError, match="strict_classes"):
        load_dataset(parse_config({"data": {**data, "strict_classes": True}}), progress=False)
