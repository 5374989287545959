"""`compound-fer run --test-data`: every subject of --data trains (a validation share stops early), another
folder tests. End to end through the CLI on tiny synthetic faces written as CFEE-named files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from landmark_shapes import cfee_points
from PIL import Image

from compound_fer import cli, taxonomy
from compound_fer.data.synthetic import generate

SIZE = 32
TINY = {
    "name": "tiny_external",
    # --data replaces the source; the synthetic crops fill the image: landmarks span it, no margin
    "data": {"source": "synthetic", "image_size": SIZE, "face_method": "landmarks", "face_margin": 0.0},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 2, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "lr": 0.001, "augment_views": 1},
    "fewshot": {"enabled": False},
    "threads": 1,
    "loggers": [],
}
CLASSES = [c.name for c in taxonomy.categories(("basic", "compound"))]  # the 21 the protocol uses


def full_frame_landmarks(size: int) -> np.ndarray:
    """78 CFEE-scheme points (eyes level) whose contour + brows box is the whole image: with margin 0 the
    landmark crop is the image itself (Haar finds only some cartoon faces, so the test does not rely on it)."""
    p = cfee_points(contour_top=-60.0, contour_height=120.0)
    lo, hi = p[np.r_[18:34, 63:78]].min(0), p[np.r_[18:34, 63:78]].max(0)
    return (p - (lo + hi) / 2) * (size / (hi - lo).max()) + size / 2


def write_cfee_folder(root, *, subjects: int, offset: int, classes=CLASSES) -> int:
    """Synthetic faces of subjects offset..offset+subjects-1 as ``Images/EE_SSS_NNNN.jpg`` + landmarks.csv."""
    faces = generate(categories=classes, n_subjects=subjects, per_subject=1, image_size=SIZE, seed=0,
                     subject_offset=offset, masks=False)
    (root / "Images").mkdir(parents=True)
    lm = full_frame_landmarks(SIZE)
    header = ["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)]
    lines = [",".join(header)]
    for i, (img, label, subject) in enumerate(zip(faces.images, faces.labels, faces.subjects)):
        name = f"{taxonomy.CATEGORIES[int(label)].cfee_id:02d}_{int(subject):03d}_{i:04d}.jpg"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "Images" / name, quality=95)
        lines.append(",".join([name] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]))
    (root / "landmarks.csv").write_text("\n".join(lines) + "\n")
    return len(faces)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    n_train = write_cfee_folder(root / "train", subjects=10, offset=100)  # subjects 100..109
    n_test = write_cfee_folder(root / "test", subjects=4, offset=200)  # subjects 200..203
    cfg = root / "tiny_external.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    return root, cfg, n_train, n_test


@pytest.fixture(autouse=True)
def face_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "face_cache"))  # never the user's cache


def run_cli(folders, out, *extra):
    root, cfg, _, _ = folders
    return cli.main(["run", "--config", str(cfg), "--data", str(root / "train"), "--test-data", str(root / "test"),
                     "--out", str(out), "--no-fewshot", "--no-progress", "--threads", "1", *extra])


@pytest.fixture(scope="module")
def external_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPOUND_FER_CACHE", str(out / "face_cache"))
        assert run_cli(folders, out) == 0
    return out, json.loads((out / "results.json").read_text())


def test_external_folder_is_the_test_set_and_every_data_subject_trains(folders, external_run):
    _, _, n_train, n_test = folders
    out, results = external_run
    for name in ("results.json", "results.csv", "results.md", "config.yaml", "models/basic_seed0.pt"):
        assert (out / name).is_file(), name
    assert results["test_data"].endswith("test")
    basic = [r for r in results["rows"] if r["kind"] == "basic"]
    assert len(basic) == 1
    info = basic[0]["split"]
    assert info["mode"] == "strict" and info["test"] == "external"
    # every subject of --data is in train or val (a validation share only), none in both, none of the test folder's
    train_ids, val_ids, test_ids = (set(info[f"{k}_subject_ids"]) for k in ("train", "val", "test"))
    assert train_ids | val_ids == set(range(100, 110)) and not train_ids & val_ids
    assert len(val_ids) == 2  # val_fraction 0.2 of 10 subjects
    assert test_ids == set(range(200, 204)) and not (train_ids | val_ids) & test_ids
    assert info["shared_subject_ids"] == [] and info["test_missing_classes"] == []
    assert info["train_images"] + info["val_images"] == n_train
    assert info["test_images"] == n_test == 4 * len(CLASSES)  # the whole folder, nothing held out of --data
    cont = [r for r in results["rows"] if r["kind"] == "continual"]
    assert [r["method"] for r in cont] == ["kdpsmr"] and cont[0]["mode"] == "strict"
    assert len(cont[0]["step_accuracy"]) == 16 and all(0.0 <= a <= 1.0 for a in cont[0]["step_accuracy"])


def test_test_data_in_reference_mode_is_a_config_error(folders, tmp_path, capsys):
    assert run_cli(folders, tmp_path / "out", "--mode", "reference") == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--test-data" in err and "evaluation.mode: strict" in err and "'reference'" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_test_folder_sharing_no_class_is_a_clear_error(folders, tmp_path, capsys):
    _, cfg, _, _ = folders
    write_cfee_folder(tmp_path / "basic_only", subjects=4, offset=100, classes=CLASSES[:6])
    write_cfee_folder(tmp_path / "awed_only", subjects=2, offset=300, classes=["Awed"])
    rc = cli.main(["run", "--config", str(cfg), "--data", str(tmp_path / "basic_only"), "--test-data",
                   str(tmp_path / "awed_only"), "--out", str(tmp_path / "out"), "--no-fewshot", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "share none" in err and "Awed" in err and "Happy" in err


def test_test_folder_without_a_protocol_class_names_the_folder(folders, tmp_path, capsys):
    root, cfg, _, _ = folders
    write_cfee_folder(tmp_path / "neutral_only", subjects=2, offset=300, classes=["Neutral"])
    rc = cli.main(["run", "--config", str(cfg), "--data", str(root / "train"), "--test-data",
                   str(tmp_path / "neutral_only"), "--out", str(tmp_path / "out"), "--no-fewshot", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "neutral_only" in err and "include_neutral" in err
