"""Bad input never ends in a bare traceback: a DataError naming the file and what to do, or a skip report."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from compound_fer import cli, taxonomy
from compound_fer.data.cfee import intensity, read_cfee, scan_cfee
from compound_fer.data.folder import read_folder
from compound_fer.data.images import SkipReport, read_image
from compound_fer.data.load import load_faces, scan
from compound_fer.errors import DataError
from landmark_shapes import cfee_points


# ------------------------------------------------------------------ synthetic faces with landmarks
def landmarks(cx=100.0, cy=100.0, s=1.0) -> np.ndarray:
    return cfee_points() * s + (cx, cy)


def face(lm: np.ndarray, shape=(200, 200)) -> np.ndarray:
    img = np.full((*shape, 3), 90, np.uint8)
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(np.vstack([lm[63:78], lm[18:34]])).astype(np.int32)),
                       (220, 180, 150))
    cv2.fillConvexPoly(img, cv2.convexHull(np.round(lm[49:57]).astype(np.int32)), (150, 40, 60))
    return img


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write(",".join(["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)]) + "\n")
        for name, lm in rows.items():
            f.write(",".join([name] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]) + "\n")


def cfee_folder(root, names=("02_101_0001.jpg", "03_101_0002.jpg", "09_102_0003.jpg")):
    """A tiny CFEE-layout folder: nested Images/, landmark rows for every name given."""
    img_dir = root / "CFEE_Database_230" / "g1" / "Images1"
    img_dir.mkdir(parents=True)
    rows = {n: landmarks(95 + 5 * i, 100 + 2 * i) for i, n in enumerate(names)}  # distinct bytes per file
    for n, lm in rows.items():
        Image.fromarray(face(lm)).save(img_dir / n, quality=92)
    write_csv(root / "landmarks.csv", rows)
    return img_dir


def jpeg_bytes(tmp_path) -> bytes:
    p = tmp_path / "_ok.jpg"
    Image.fromarray(face(landmarks())).save(p, quality=92)
    data = p.read_bytes()
    p.unlink()
    return data


# ------------------------------------------------------------------ folders
def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_faces(tmp_path / "nope")
    with pytest.raises(DataError, match="not a folder"):
        (tmp_path / "f.txt").write_text("x")
        load_faces(tmp_path / "f.txt")


def test_folder_without_images(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no images found.*EE_SSS_\*\.jpg"):
        load_faces(tmp_path, cache=False)


def test_unknown_class_folder_lists_valid_names(tmp_path):
    for cls in ("Happy", "confused"):
        (tmp_path / cls).mkdir()
        Image.fromarray(face(landmarks())).save(tmp_path / cls / "a.jpg")
    with pytest.raises(DataError) as err:
        read_folder(tmp_path, cache=False)
    msg = str(err.value)
    assert "'confused'" in msg and "Happily surprised" in msg and "Sadly disgusted" in msg


def test_class_names_are_case_and_space_insensitive(tmp_path):
    rows = {}
    for i, cls in enumerate(("happily_SURPRISED", " Sadly disgusted", "anger")):
        (tmp_path / cls).mkdir()
        Image.fromarray(face(landmarks(96 + 4 * i))).save(tmp_path / cls / "a.png")
        rows[f"{cls}/a.png"] = landmarks(96 + 4 * i)
    write_csv(tmp_path / "landmarks.csv", rows)
    fs = read_folder(tmp_path, image_size=32, cache=False, progress=False)
    assert set(fs.class_names) == {"Happily surprised", "Sadly disgusted", "Angry"}


# ------------------------------------------------------------------ broken files
def test_corrupt_truncated_zero_byte_and_duplicate_files_are_skipped(tmp_path, caplog):
    img_dir = cfee_folder(tmp_path)
    good = jpeg_bytes(tmp_path)
    (img_dir / "05_103_0004.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (img_dir / "06_103_0005.jpg").write_bytes(b"this is not an image at all" * 10)  # corrupt
    (img_dir / "07_103_0006.jpg").write_bytes(b"")  # zero bytes
    shutil.copy(img_dir / "02_101_0001.jpg", img_dir / "08_101_0007.jpg")  # duplicate (other label)
    (img_dir / "04_104_0008.jpg").write_bytes(good)  # CFEE has no category 04
    (img_dir / "holiday.jpg").write_bytes(good)  # not a CFEE name: unmatched, ignored

    with caplog.at_level(logging.WARNING):
        fs = read_cfee(tmp_path, image_size=32, cache=False, progress=False)
    assert len(fs) == 3
    assert {taxonomy.name_of(x) for x in fs.labels.tolist()} == {"Happy", "Sad", "Happily surprised"}
    skipped = fs.meta["skipped"]
    assert isinstance(skipped, SkipReport)
    why = {s.file.rsplit("/", 1)[-1]: s.reason for s in skipped}
    assert "truncated" in why["05_103_0004.jpg"] and "re-copy" in why["05_103_0004.jpg"]
    assert "not a readable image (corrupt" in why["06_103_0005.jpg"]
    assert "zero-byte" in why["07_103_0006.jpg"]
    assert "duplicate" in why["08_101_0007.jpg"] and "02_101_0001.jpg" in why["08_101_0007.jpg"]
    assert "unknown CFEE category id 04" in why["04_104_0008.jpg"]
    assert "holiday.jpg" not in why
    assert "skipped 5 file(s)" in caplog.text  # the summary is printed


def test_scan_finds_zero_bytes_and_unmatched_without_decoding(tmp_path):
    img_dir = cfee_folder(tmp_path)
    (img_dir / "07_103_0006.jpg").write_bytes(b"")
    (img_dir / "holiday.png").write_bytes(b"whatever")
    idx = scan(tmp_path)
    info = idx.summary()
    assert info["images"] == 4 and info["usable"] == 3 and info["subjects"] == 3
    assert any("zero-byte" in p["reason"] for p in info["problems"])
    assert [u.rsplit("/", 1)[-1] for u in info["unmatched"]] == ["holiday.png"]


def test_no_detectable_face_is_a_skip(tmp_path):
    (tmp_path / "happy").mkdir()
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(tmp_path / "happy" / "blank.jpg")
    Image.fromarray(face(landmarks())).save(tmp_path / "happy" / "face.jpg")
    write_csv(tmp_path / "landmarks.csv", {"happy/face.jpg": landmarks()})  # only face.jpg has landmarks
    fs = read_folder(tmp_path, image_size=32, cache=False, progress=False)
    assert len(fs) == 1 and fs.sources[0].endswith("face.jpg")
    (skip,) = fs.meta["skipped"]
    assert skip.file.endswith("blank.jpg") and skip.reason.startswith("no face")


def test_every_file_unusable_is_a_data_error(tmp_path):
    (tmp_path / "sad").mkdir()
    (tmp_path / "sad" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"(?s)no usable face.*zero-byte"):
        read_folder(tmp_path, cache=False, progress=False)


def test_unreadable_xls(tmp_path):
    cfee_folder(tmp_path)
    (tmp_path / "AU_annotation_all_subjects.xls").write_bytes(b"garbage, not a workbook")
    with pytest.raises(DataError, match=r"AU_annotation_all_subjects\.xls: unreadable FACS workbook.*move it out"):
        read_cfee(tmp_path, cache=False, progress=False)


def test_landmarks_method_without_csv_and_bad_csv(tmp_path):
    cfee_folder(tmp_path)
    (tmp_path / "landmarks.csv").unlink()
    with pytest.raises(DataError, match="needs a landmarks.csv"):
        read_cfee(tmp_path, method="landmarks", cache=False, progress=False)
    (tmp_path / "landmarks.csv").write_text("file,a,b\nx.jpg,1,2\n")
    with pytest.raises(DataError, match=r"landmarks\.csv: expected a header"):
        read_cfee(tmp_path, cache=False, progress=False)


def test_unknown_include_name(tmp_path):
    cfee_folder(tmp_path)
    with pytest.raises(DataError, match="include: unknown category 'Joyful'"):
        read_cfee(tmp_path, include=["Joyful"], cache=False, progress=False)
    fs = read_cfee(tmp_path, include=["sad"], image_size=32, cache=False, progress=False)
    assert fs.class_names == ("Sad",)


# ------------------------------------------------------------------ image modes
def test_grey_rgba_cmyk_16bit_become_rgb8(tmp_path):
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    arr, scale = read_image(tmp_path / "grey.png")
    assert arr.shape == (20, 25, 3) and arr.dtype == np.uint8 and scale == 1.0
    assert np.array_equal(arr[..., 0], grey) and np.array_equal(arr[..., 2], grey)

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    arr, _ = read_image(tmp_path / "rgba.png")
    assert arr.shape == (10, 10, 3) and (arr[:5, :, 0] == 200).all() and (arr[5:] == 0).all()

    Image.new("CMYK", (12, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red in CMYK
    arr, _ = read_image(tmp_path / "cmyk.jpg")
    assert arr.shape == (8, 12, 3) and arr[..., 0].mean() > 200 and arr[..., 1].mean() < 60

    sixteen = np.full((6, 7), 65535, np.uint16)
    sixteen[:3] = 32896  # 128 * 257
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    arr, _ = read_image(tmp_path / "deep.png")
    assert arr.dtype == np.uint8 and arr.shape == (6, 7, 3)
    assert (arr[3:] == 255).all() and (arr[:3] == 128).all()


def test_huge_image_is_downscaled_and_landmarks_follow(tmp_path):
    s = 20.0  # a 4000x4000 photo with the face in the same place, scaled up
    lm = landmarks(2000, 2000, s)
    big = cv2.resize(face(landmarks()), (4000, 4000), interpolation=cv2.INTER_NEAREST)
    (tmp_path / "sad").mkdir()
    Image.fromarray(big).save(tmp_path / "sad" / "big.jpg", quality=80)
    arr, scale = read_image(tmp_path / "sad" / "big.jpg")
    assert max(arr.shape[:2]) <= 1600 and scale == pytest.approx(arr.shape[1] / 4000)
    small = tmp_path.parent / (tmp_path.name + "_small")
    (small / "sad").mkdir(parents=True)
    Image.fromarray(face(landmarks())).save(small / "sad" / "a.jpg", quality=80)
    write_csv(tmp_path / "landmarks.csv", {"sad/big.jpg": lm})
    write_csv(small / "landmarks.csv", {"sad/a.jpg": landmarks()})
    a = read_folder(tmp_path, image_size=48, cache=False, progress=False)
    b = read_folder(small, image_size=48, cache=False, progress=False)
    # the same face, whatever the resolution: crops agree up to resampling noise
    assert np.abs(a.images.float() - b.images.float()).mean() < 6
    assert (a.region_masks == b.region_masks).float().mean() > 0.97


# ------------------------------------------------------------------ xls cells and CLI
def test_facs_cells():
    assert intensity("a") == 0.2 and intensity("e") == 1.0 and intensity(" c") == 0.6
    assert intensity("LbRc") == 0.6 and intensity("Rd") == 0.8 and intensity("x") == 0.6
    assert intensity("") == 0.0 and intensity(" ") == 0.0


def test_cli_errors_have_no_traceback(tmp_path, capsys):
    assert cli.main(["data-info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Traceback" not in err


def test_cli_check_images_lists_corrupt(tmp_path, capsys):
    img_dir = cfee_folder(tmp_path)
    (img_dir / "05_103_0004.jpg").write_bytes(jpeg_bytes(tmp_path)[:300])
    assert cli.main(["data-info", str(tmp_path)]) == 0
    assert "05_103_0004.jpg" not in capsys.readouterr().out  # not decoded without --check-images
    assert cli.main(["data-info", "--check-images", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "05_103_0004.jpg: truncated image" in out or "05_103_0004.jpg: corrupt image" in out


def test_scan_cfee_requires_cfee_names(tmp_path):
    (tmp_path / "x").mkdir()
    Image.fromarray(face(landmarks())).save(tmp_path / "x" / "a.jpg")
    with pytest.raises(DataError, match="no CFEE image"):
        scan_cfee(tmp_path)
