"""Bad input never ends in a bare traceback: a DataError naming the file and what to do, or a skip report."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
from landmark_shapes import cfee_points
from PIL import Image

from compound_fer import cli, taxonomy
from compound_fer.data.cfee import intensity, read_cfee, scan_cfee
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.folder import read_folder
from compound_fer.data.images import SkipReport, read_image
from compound_fer.data.load import load_faces, scan
from compound_fer.errors import DataError


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
        read_folder(tmp_path, cache=False, strict_classes=True)  # by default it is skipped with a warning
    msg = str(err.value)
    assert "'confused'" in msg and "Happily surprised" in msg and "Sadly disgusted" in msg


def test_class_names_are_case_and_space_insensitive(tmp_path):
    rows = {}
    for i, cls in enumerate(("happily_SURPRISED", " Sadly disgusted", "anger")):
        (tmp_path / cls).mkdir()
        Image.fromarray(face(landmarks(96 + 4 * i))).save(tmp_path / cls / "a.png")
        rows[f"{cls}/a.png"] = landmarks(96 + 4 * i)
    write_csv(tmp_path / "landmarks.csv", rows)
    fs = read_folder(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
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
        fs = read_cfee(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
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
    fs = read_folder(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"), cache=False, progress=False)
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
        read_cfee(tmp_path, crop=CropOptions(method="landmarks", detector=None), cache=False, progress=False)
    (tmp_path / "landmarks.csv").write_text("file,a,b\nx.jpg,1,2\n")
    with pytest.raises(DataError, match=r"landmarks\.csv: expected a header"):
        read_cfee(tmp_path, cache=False, progress=False)


def test_unknown_include_name(tmp_path):
    cfee_folder(tmp_path)
    with pytest.raises(DataError, match="include: unknown category 'Joyful'"):
        read_cfee(tmp_path, include=["Joyful"], cache=False, progress=False)
    fs = read_cfee(tmp_path, crop=CropOptions(image_size=32, detector="mediapipe"),
                   include=["sad"], cache=False, progress=False)
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
    a = read_folder(tmp_path, crop=CropOptions(image_size=48, detector="mediapipe"), cache=False, progress=False)
    b = read_folder(small, crop=CropOptions(image_size=48, detector="mediapipe"), cache=False, progress=False)
    # the same face, whatever the resolution: crops agree up to resampling noise
    assert (a.images.float() - b.images.float()).abs().mean() < 6
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


# ------------------------------------------------------------------ CLI: options, configs, output folders
# Every kind below ends in exit 2, a message naming the option or file at fault, no traceback, and leaves the
# results already on disk byte for byte as they were.
import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

from compound_fer import fingerprint  # noqa: E402
from compound_fer.config import parse_config  # noqa: E402

TINY_YAML = """name: tiny
data: {source: synthetic, image_size: 32, synthetic: {n_subjects: 12, per_subject: 1, seed: 0}}
basic: {epochs: 1}
continual: {methods: [naive], orders: 1, epochs: 1}
fewshot: {enabled: false}
threads: 1
loggers: [csv]
"""


@pytest.fixture
def no_run(monkeypatch):
    """A refused command must fail before any data is generated or loaded."""
    import compound_fer.runner.protocol as protocol

    def forbidden(*a, **k):
        raise AssertionError("data was loaded although the command should have been refused")

    monkeypatch.setattr(protocol, "load_dataset", forbidden)


@pytest.fixture
def earlier(tmp_path):
    """A run folder of the tiny config holding results (fingerprint, rows, results.json, a model)."""
    out = tmp_path / "earlier"
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(TINY_YAML)
    import yaml

    fingerprint.claim(out, fingerprint.make(parse_config(yaml.safe_load(TINY_YAML)), data_path=None, test_path=None),
                      resume=False, overwrite=False)
    (out / "rows").mkdir()
    row = {"kind": "fewshot", "seed": 0, "repeat": 0, "compound": "Awed", "shots": 1, "new_class_recall": 0.5,
           "seven_way_accuracy": 0.6, "basic_accuracy": 0.7}
    (out / "rows" / "fewshot_seed0_awed_1shot_r0.json").write_text(json.dumps(row))
    (out / "results.json").write_text(json.dumps({"command": "earlier", "rows": [row]}))
    (out / "models").mkdir()
    (out / "models" / "basic_seed0.pt").write_bytes(b"weights")
    return out, cfg_file


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv, *names, capsys, rc=2):
    """Run the CLI; assert the exit code, no traceback, and that the message names every one of ``names``."""
    assert cli.main([str(a) for a in argv]) == rc
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for n in names:
        assert str(n) in err, (n, err)
    return err


@pytest.mark.parametrize("option, value, named", [
    ("--seeds", "abc", "--seeds 'abc'"),
    ("--seeds", "0,x", "'x' is not an integer"),
    ("--seeds", ",", "--seeds ','"),
    ("--orders", "0", "--orders 0"),
    ("--orders", "-3", "--orders -3"),
    ("--orders", "two", "--orders 'two'"),
    ("--threads", "0", "--threads 0"),
    ("--threads", "1.5", "--threads '1.5'"),
    ("--methods", "naive,nosuchmethod", "nosuchmethod"),
    ("--methods", ",", "--methods"),
])
def test_bad_run_options(earlier, no_run, capsys, option, value, named):
    out, cfg = earlier
    before = snapshot(out)
    refused(["run", "--config", cfg, "--out", out, "--resume", option, value], named, capsys=capsys)
    assert snapshot(out) == before


@pytest.mark.parametrize("text, named", [
    ("", "the file is empty"),
    ("# only a comment\n\n", "the file is empty"),
    (TINY_YAML.replace("threads: 1", "seeds: []"), "seeds: Tuple should have at least 1 item"),
    (TINY_YAML + "epochs: 3\n", "epochs: unknown key"),
    ("- just\n- a list\n", "mapping at the top level"),
    ("name: [unclosed\n", "not valid YAML"),
    (TINY_YAML + "device: tpu9\n", "device: 'tpu9'"),
])
def test_bad_config_files(tmp_path, earlier, no_run, capsys, text, named):
    out, _ = earlier
    before = snapshot(out)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    err = refused(["run", "--config", bad, "--out", out, "--resume"], named, capsys=capsys)
    assert "bad.yaml" in err
    assert snapshot(out) == before


def test_missing_config_and_config_folder(tmp_path, no_run, capsys):
    refused(["run", "--config", tmp_path / "nope.yaml"], "--config", "nope.yaml", "demo", capsys=capsys)
    refused(["run", "--config", tmp_path], "--config", "is a folder", capsys=capsys)
    refused(["run"], "--config is required", capsys=capsys)


def test_cuda_without_gpu_is_refused_before_data(tmp_path, earlier, no_run, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out, _ = earlier
    before = snapshot(out)
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text(TINY_YAML + "device: cuda\n")
    refused(["run", "--config", cfg, "--out", out, "--resume"], "device: cuda", "gpu.yaml", "device: cpu",
            capsys=capsys)
    assert snapshot(out) == before


def test_out_naming_a_file(tmp_path, earlier, no_run, capsys):
    _, cfg = earlier
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    refused(["run", "--config", cfg, "--out", f], "--out", "results.txt", "is a file", capsys=capsys)
    refused(["run", "--config", cfg, "--out", f / "sub"], "--out", "results.txt", capsys=capsys)
    refused(["synth", "--out", f], "--out", "results.txt", "is a file", capsys=capsys)
    assert f.read_text() == "keep me"


def _deny_writes_in(monkeypatch, folder):
    """Make ``folder`` read-only: chmod, and (as root, who ignores modes) refuse new files there too."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = tempfile.mkstemp

        def mkstemp(*a, dir=None, **k):
            if dir is not None and os.path.realpath(dir).startswith(os.path.realpath(folder)):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_read_only_out(tmp_path, earlier, no_run, monkeypatch, capsys):
    out, cfg = earlier
    before = snapshot(out)
    _deny_writes_in(monkeypatch, out)
    try:
        refused(["run", "--config", cfg, "--out", out, "--resume"], "--out", str(out), "cannot write",
                capsys=capsys)
        refused(["synth", "--out", out, "--identities", "1"], "--out", str(out), "cannot write", capsys=capsys)
    finally:
        out.chmod(0o755)
    assert snapshot(out) == before


def test_disk_full_while_writing(earlier, monkeypatch, capsys):
    out, cfg = earlier
    before = snapshot(out)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    # run: the first write (the fingerprint) fails; report: results.json fails
    err = refused(["run", "--config", cfg, "--out", out, "--resume"], "fingerprint.json", "No space left",
                  "--resume", capsys=capsys)
    assert "intact" in err
    refused(["report", out, "--no-figures"], "results.json", "No space left", capsys=capsys)
    assert snapshot(out) == before
    assert not list(out.rglob(".*.tmp"))  # no temporary file left behind


def test_resume_into_a_run_of_another_config_or_data(tmp_path, earlier, no_run, capsys):
    out, cfg = earlier
    before = snapshot(out)
    other = tmp_path / "other.yaml"
    other.write_text(TINY_YAML.replace("image_size: 32", "image_size: 48").replace("epochs: 1}", "epochs: 2}", 1))
    refused(["run", "--config", other, "--out", out, "--resume"], "--resume", "data.image_size", "basic.epochs",
            capsys=capsys)
    data = tmp_path / "faces"
    (data / "happy").mkdir(parents=True)
    Image.fromarray(face(landmarks())).save(data / "happy" / "a.jpg")
    refused(["run", "--config", cfg, "--data", data, "--out", out, "--resume"], "data.source", "data:",
            str(data), capsys=capsys)
    assert snapshot(out) == before


def test_rerun_into_a_finished_folder_needs_resume_or_overwrite(earlier, no_run, capsys):
    out, cfg = earlier
    before = snapshot(out)
    refused(["run", "--config", cfg, "--out", out], "--out", str(out), "--resume", "--overwrite", capsys=capsys)
    refused(["run", "--config", cfg, "--out", out, "--resume", "--overwrite"], "--resume and --overwrite",
            capsys=capsys)
    assert snapshot(out) == before


def test_legacy_folder_without_fingerprint_is_compared_by_its_config(tmp_path, earlier, no_run, capsys):
    out, cfg = earlier
    (out / fingerprint.FILE).unlink()
    (out / "config.yaml").write_text(TINY_YAML.replace("image_size: 32", "image_size: 64"))
    before = snapshot(out)
    refused(["run", "--config", cfg, "--out", out, "--resume"], "data.image_size", capsys=capsys)
    assert snapshot(out) == before


def test_torn_fingerprint(earlier, no_run, capsys):
    out, cfg = earlier
    (out / fingerprint.FILE).write_text('{"format": 1, "sett')
    before = snapshot(out)
    refused(["run", "--config", cfg, "--out", out, "--resume"], "fingerprint.json", "unreadable", capsys=capsys)
    assert snapshot(out) == before


def labelled_folder(root, classes):
    for c in classes:
        (root / c).mkdir(parents=True)
        Image.fromarray(face(landmarks())).save(root / c / "a.jpg")
    return root


def test_test_data_lacking_compound_classes_fails_before_the_basic_phase(tmp_path, earlier, no_run, capsys):
    out, _ = earlier
    before = snapshot(out)
    test = labelled_folder(tmp_path / "test", [*taxonomy.basic_names(), "Happily surprised"])
    data = labelled_folder(tmp_path / "data", taxonomy.basic_names())  # --test-data may not be the --data folder
    cfg = tmp_path / "path.yaml"
    cfg.write_text(TINY_YAML.replace("source: synthetic", f"source: path, path: {data}"))
    err = refused(["run", "--config", cfg, "--test-data", test, "--out", tmp_path / "new"], "--test-data",
                  str(test), "Sadly angry", "compound-fer fewshot", "--compounds 'Happily surprised'", capsys=capsys)
    assert "allow_fewer" not in err and "--order" not in err
    refused(["fewshot", "--config", cfg, "--test-data", test, "--compounds", "Awed", "--out", tmp_path / "new"],
            "--test-data", "Awed", capsys=capsys)
    refused(["run", "--config", cfg, "--test-data", tmp_path / "nope", "--out", tmp_path / "new"], "nope",
            "no such folder", capsys=capsys)
    refused(["run", "--config", cfg, "--test-data", test, "--mode", "reference", "--out", tmp_path / "new"],
            "--test-data", "'reference'", "--mode reference", capsys=capsys)
    assert snapshot(out) == before


def test_fewshot_options(earlier, no_run, capsys):
    out, cfg = earlier
    before = snapshot(out)
    refused(["fewshot", "--config", cfg, "--out", out, "--resume", "--shots", "0"], "--shots", capsys=capsys)
    refused(["fewshot", "--config", cfg, "--out", out, "--resume", "--compounds", "Happy"], "--compounds", "'Happy'",
            capsys=capsys)
    refused(["fewshot", "--config", cfg, "--out", out, "--resume", "--compounds", "Joyful"], "--compounds",
            "'Joyful'", capsys=capsys)
    refused(["fewshot", "--config", cfg, "--out", out, "--resume", "--repeats", "0"], "--repeats 0", capsys=capsys)
    assert snapshot(out) == before


def test_missing_data_path_of_a_config(tmp_path, earlier, no_run, capsys):
    out, _ = earlier
    cfg = tmp_path / "cfee.yaml"
    cfg.write_text(TINY_YAML.replace("source: synthetic", "source: path, path: ../no/such/faces"))
    refused(["run", "--config", cfg, "--out", out, "--resume"], "data.path", "../no/such/faces", "cfee.yaml",
            "--data", capsys=capsys)
    refused(["run", "--config", cfg, "--data", tmp_path / "nope", "--out", tmp_path / "new"], "nope",
            "no such folder", capsys=capsys)


def test_packaged_config_data_path_is_found_from_any_working_directory(tmp_path, monkeypatch):
    from compound_fer.commands._common import PACKAGED, PROJECT_ROOT, resolve_data_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    assert resolve_data_path("x", key="data.path", config_file=PACKAGED / "cfee_cpu.yaml") == str(tmp_path / "x")
    assert resolve_data_path("compound_fer", key="data.path", config_file=PACKAGED / "cfee_cpu.yaml") == \
        str(PROJECT_ROOT / "compound_fer")


def test_report_and_evaluate_on_missing_things(tmp_path, capsys):
    refused(["report", tmp_path / "nope"], "nope", "not found", capsys=capsys)
    (tmp_path / "empty").mkdir()
    refused(["report", tmp_path / "empty"], "empty", "no results", capsys=capsys)
    refused(["evaluate", "--model", tmp_path / "m.pt", "--data", tmp_path], "m.pt", capsys=capsys)


def test_synth_bad_numbers(tmp_path, capsys):
    refused(["synth", "--out", tmp_path / "s", "--identities", "0"], "--identities", capsys=capsys)
    refused(["synth", "--out", tmp_path / "s", "--image-size", "8"], "--image-size", capsys=capsys)


def test_ctrl_c_prints_the_resume_command(earlier, monkeypatch, capsys):
    out, cfg = earlier

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fingerprint, "claim", interrupted)
    err = refused(["run", "--config", cfg, "--out", out, "--overwrite"], "Continue with:", capsys=capsys, rc=130)
    assert f"compound-fer run --config {cfg} --out {out} --resume" in err
    assert "--overwrite" not in err.split("Continue with:")[1]


def test_huge_jpeg_is_decoded_small(tmp_path):
    """A 108-megapixel JPEG (PIL's bomb limit is 89 MP) is read at reduced size, in little memory."""
    import subprocess
    import sys

    big = tmp_path / "big.jpg"
    subprocess.run([sys.executable, "-c", "from PIL import Image, ImageDraw; im = Image.new('RGB', (12000, 9000), "
                    "(120, 100, 90)); ImageDraw.Draw(im).ellipse((3000, 2000, 9000, 7000), fill=(220, 180, 150)); "
                    f"im.save({str(big)!r}, quality=60)"], check=True)
    probe = ("import resource, sys; from compound_fer.data.images import read_image; "
             "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; a, s = read_image(sys.argv[1]); "
             "r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
             "print(a.shape[0], a.shape[1], s, (r1 - r0) // 1024)")
    res = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, check=True)
    h, w, scale, grew_mb = res.stdout.split()
    assert (int(h), int(w)) == (1200, 1600) and float(scale) == pytest.approx(1600 / 12000)
    assert int(grew_mb) < 150  # a full decode alone would take 324 MB
    # the pixel at the middle of the face ellipse is face-coloured: decoded, not a blank placeholder
    arr, _ = read_image(big)
    assert arr[600, 800, 0] > 200


# ------------------------------------------------------------------ what a user sees
def _saved_basic_model(tmp_path):
    from compound_fer.model_io import save_model
    from compound_fer.models import build_model

    classes = list(taxonomy.basic_names())
    path = tmp_path / "basic.pt"
    recipe = {"crop": {"image_size": 32, "source": "synthetic"}}  # whole frames, as the synthetic faces
    save_model(build_model("small_cnn", num_classes=len(classes), pretrained=False, image_size=32), path,
               meta={"classes": classes, "backbone": "small_cnn", "image_size": 32, "recipe": recipe})
    return path


def test_evaluate_names_absent_classes_once_instead_of_nan_rows(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from compound_fer.data.synthetic import generate

    model = _saved_basic_model(tmp_path)
    faces = generate(categories=["Happy", "Sad"], n_subjects=2, per_subject=1, image_size=32, seed=0)
    data = tmp_path / "faces"
    for i, label in enumerate(faces.labels):
        (data / taxonomy.CATEGORIES[int(label)].name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.images[i].permute(1, 2, 0).numpy()).save(data / taxonomy.CATEGORIES[int(label)].name
                                                                        / f"{i}.png")
    argv = ["evaluate", "--model", str(model), "--data", str(data), "--json", str(tmp_path / "e.json")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "n=0" not in out
    assert "Happy" in out and f"not in {data}: Angry, Surprised, Disgusted, Fearful" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert set(data["per_class_recall"]) == {"Happy", "Sad"} and data["absent_classes"][0] == "Angry"


def test_weights_that_do_not_fit_are_named_in_one_line(tmp_path, capsys):
    model = _saved_basic_model(tmp_path)
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["classes"] = meta["classes"] + ["Awed"]  # 7 outputs expected, 6 saved
    model.with_suffix(".json").write_text(json.dumps(meta))
    err = refused(["evaluate", "--model", model, "--data", tmp_path], "basic.pt", "shape mismatch", capsys=capsys)
    assert "Missing key" not in err and "size mismatch for" not in err and len(err) < 600


def test_skip_summary_points_cli_users_at_data_info():
    report = SkipReport()
    for i in range(12):
        report.add(f"f{i}.jpg", "zero-byte file")
    text = report.summary(limit=10)
    assert "meta[" not in text and "compound-fer data-info --check-images" in text


def test_help_lists_only_options_the_command_has(capsys):
    for argv, absent in ((["fewshot", "--help"], ("--methods", "--orders", "--no-fewshot")),
                         (["demo", "--help"], ("--data", "--test-data"))):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        for opt in absent:
            assert opt not in out, (argv, opt)
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    assert all(o in out for o in ("--methods", "--orders", "--no-fewshot", "--data", "--overwrite"))


def test_disk_full_in_the_middle_of_a_run_keeps_the_rows_written_and_resume_finishes(tmp_path, monkeypatch, capsys):
    """The second continual row cannot be written (ENOSPC): exit 2 naming that row file, the first row
    is intact, no temporary file is left, and `--resume` computes only what is missing."""
    import compound_fer.runner.protocol as protocol

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML.replace("methods: [naive]", "methods: [naive, replay]"))
    out = tmp_path / "out"
    real = protocol.write_json

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_for_replay(path, obj):
        if "replay" in os.path.basename(str(path)):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(os, "fsync", no_space)
                return real(path, obj)
        return real(path, obj)

    monkeypatch.setattr(protocol, "write_json", full_for_replay)
    argv = ["run", "--config", cfg, "--out", out, "--no-progress"]
    refused(argv, "continual_seed0_replay_order0.json", "No space left", "--resume", capsys=capsys)
    naive = out / "rows" / "continual_seed0_naive_order0.json"
    first = naive.read_bytes()
    assert json.loads(first)["method"] == "naive"
    assert not (out / "rows" / "continual_seed0_replay_order0.json").exists() and not list(out.rglob(".*.tmp"))
    monkeypatch.setattr(protocol, "write_json", real)  # space freed
    assert cli.main([str(a) for a in argv] + ["--resume"]) == 0
    assert naive.read_bytes() == first  # reused, not recomputed
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted(r.get("method", "") for r in rows) == ["", "naive", "replay"]


def test_api_external_test_set_lacking_compounds_fails_before_the_basic_phase(tmp_path):
    import yaml

    import compound_fer.runner.protocol as protocol
    from compound_fer.runner.plan import MissingTestClasses

    train = labelled_folder(tmp_path / "train", [*taxonomy.basic_names(), "Awed"])
    cfg = parse_config(yaml.safe_load(TINY_YAML)).with_overrides(data={"source": "path", "path": str(train)})
    test = labelled_folder(tmp_path / "test", [*taxonomy.basic_names(), "Awed"])
    with pytest.raises(MissingTestClasses, match=r"data\.test_path .*test.*no image of .*Sadly angry.*"
                                                 r"fewshot\.compounds") as err:
        protocol.run_protocol(cfg, out_dir=tmp_path / "out", test_path=str(test), progress=False)
    assert err.value.present == ["Awed"] and "--" not in str(err.value)  # library messages name config keys
    assert not (tmp_path / "out").exists()  # refused while planning: no folder, no basic phase


def test_loading_a_step_checkpoint_prints_nothing(tmp_path, capfd):
    import avalanche.checkpointing  # noqa: F401 - registers the dill reducer for torch.device that prints
    import torch

    from compound_fer.checkpoint import StepCheckpoint

    ckpt = StepCheckpoint(path=tmp_path / "c.ckpt")
    ckpt.save(step=2, state={"device": torch.device("cpu"), "x": torch.zeros(2)})
    capfd.readouterr()
    step, state = ckpt.load(restore=False)
    assert step == 2 and state["device"] == torch.device("cpu")
    assert "Mapping" not in capfd.readouterr().out
