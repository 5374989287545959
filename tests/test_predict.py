"""`compound-fer predict` and `compound_fer.predict`: new photos of any size, colour or grey, a photo without a
face and an unreadable file each get one row; faces are cropped with the training's settings (read from the
model's metadata); basic, continual, few-shot and landmark-fused models all work. Tiny synthetic faces,
trained through the CLI in seconds: no real data needed."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import compound_fer
from compound_fer import cli, taxonomy
from compound_fer.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
PHOTO = 96  # drawn size of the synthetic photos: the offline detector finds these cartoon faces
BASIC = [c.name for c in taxonomy.categories("basic")]
TINY = {
    "name": "tiny_predict",
    "data": {"source": "synthetic", "image_size": 32},  # --data makes it a folder; crops: the defaults
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False, "geometry": "landmarks"},
    "basic": {"epochs": 2, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "lr": 0.001, "augment_views": 1},
    "fewshot": {"compounds": ["Happily surprised"], "shots": [2], "epochs": 1},
    "threads": 1,
    "loggers": [],
}


def _photos(n_subjects: int, offset: int, categories=None):
    return generate(categories=categories or [c.name for c in taxonomy.categories(("basic", "compound"))],
                    n_subjects=n_subjects, per_subject=1, image_size=PHOTO, seed=0, subject_offset=offset,
                    masks=False)


def _rgb(faces, i: int) -> np.ndarray:
    return faces.images[i].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fused run on CFEE-named synthetic photos (no landmarks file: the detector places them): its
    basic (not fused), kdpsmr and few-shot (both fused) models."""
    root = tmp_path_factory.mktemp("predict")
    faces = _photos(8, 300)
    (root / "train" / "Images").mkdir(parents=True)
    for i, (label, subject) in enumerate(zip(faces.labels, faces.subjects)):
        name = f"{taxonomy.CATEGORIES[int(label)].cfee_id:02d}_{int(subject):03d}_{i:04d}.jpg"
        Image.fromarray(_rgb(faces, i)).save(root / "train" / "Images" / name, quality=95)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPOUND_FER_CACHE", str(root / "face_cache"))
    try:
        rc = cli.main(["run", "--config", str(root / "tiny.yaml"), "--data", str(root / "train"),
                       "--out", str(root / "run"), "--no-progress"])
    finally:
        mp.undo()
    assert rc == 0
    return root / "run" / "models"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two colour photos, a grey-scale one, a large one, a flat grey image (no face) and a damaged file."""
    root = tmp_path_factory.mktemp("photos")
    faces = _photos(1, 900, categories=BASIC)
    Image.fromarray(_rgb(faces, 0)).save(root / "a_happy.jpg", quality=95)
    Image.fromarray(_rgb(faces, 3)).save(root / "b_fear.png")
    Image.fromarray(_rgb(faces, 1)).convert("L").save(root / "c_grey.png")
    big = Image.new("RGB", (2400, 1800), (40, 60, 80))
    big.paste(Image.fromarray(_rgb(faces, 2)).resize((1200, 1200), Image.BICUBIC), (600, 300))
    big.save(root / "d_large.jpg", quality=90)
    Image.new("RGB", (120, 90), (128, 128, 128)).save(root / "e_flat.png")
    (root / "f_damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image: left out")
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_models_record_how_their_faces_were_cropped(trained):
    meta = json.loads((trained / "basic_seed0.json").read_text())
    assert meta["recipe"]["crop"] == {"image_size": 32, "source": "path", "face_method": "auto", "face_margin": 0.15,
                                      "landmark_detector": "mediapipe", "no_face": "skip"}
    assert meta["recipe"]["geometry"] is None and meta["recipe"]["config"]["name"] == "tiny_predict"
    fused = json.loads((trained / "kdpsmr_seed0.json").read_text())
    assert fused["geometry"]["features"] > 0 and fused["recipe"]["geometry"]["scheme"] == "mediapipe468"


def test_cli_writes_one_row_per_image_and_marks_the_faceless_one(trained, photos, tmp_path, capsys):
    out, cams = tmp_path / "preds.csv", tmp_path / "cams"
    rc = cli.main(["predict", str(trained / "basic_seed0.pt"), str(photos), "--out", str(out), "--top-k", "2",
                   "--gradcam", str(cams), "--no-progress"])
    assert rc == 0
    rows = {Path(r["file"]).name: r for r in _csv(out)}
    assert sorted(rows) == ["a_happy.jpg", "b_fear.png", "c_grey.png", "d_large.jpg", "e_flat.png", "f_damaged.jpg"]
    assert list(_csv(out)[0]) == list(compound_fer.prediction.CSV_COLUMNS)
    for name in ("a_happy.jpg", "b_fear.png", "c_grey.png", "d_large.jpg"):
        r = rows[name]
        assert r["face_found"] == "yes" and r["label"] in BASIC and r["face_method"] == "mediapipe", r
        top = [t.split(":") for t in r["top_k"].split("; ")]
        assert len(top) == 2 and top[0][0] == r["label"] and float(top[0][1]) == float(r["probability"])
        assert float(top[0][1]) >= float(top[1][1]) and Path(r["gradcam"]).is_file()
    flat, damaged = rows["e_flat.png"], rows["f_damaged.jpg"]
    assert flat["face_found"] == "no" and flat["label"] == "" and "no face" in flat["reason"]
    assert damaged["face_found"] == "no" and re.search("corrupt|truncated|not a readable", damaged["reason"])
    assert sorted(p.name for p in cams.iterdir()) == ["a_happy.png", "b_fear.png", "c_grey.png", "d_large.png"]
    text = capsys.readouterr().out
    assert "6 image(s): 4 labelled, 2 without a face or unreadable" in text and str(out) in text


def test_cli_prints_the_csv_without_out(trained, photos, capsys):
    assert cli.main(["predict", str(trained / "basic_seed0.pt"), str(photos / "e_flat.png"),
                     str(photos / "a_happy.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("file,face_found,label") and len(lines) == 3
    assert lines[1].split(",")[1] == "no" and lines[2].split(",")[1] == "yes"


@pytest.mark.parametrize("model", ["kdpsmr_seed0.pt", "fewshot_seed0_happily_surprised_2shot.pt"])
def test_api_labels_with_continual_and_fewshot_fused_models(trained, photos, model, caplog):
    preds = compound_fer.predict(trained / model, [photos], top_k=50, progress=False)
    assert [Path(p.file).name for p in preds][:2] == ["a_happy.jpg", "b_fear.png"] and len(preds) == 6
    classes = json.loads((trained / model).with_suffix(".json").read_text())["classes"]
    for p in preds[:4]:
        assert p.face_found and p.label in classes and len(p.top_k) == len(classes)
        assert abs(sum(q for _, q in p.top_k) - 1) < 1e-4
    assert not preds[4].face_found and preds[4].label is None and "no face" in preds[4].reason
    assert "mean geometry" not in caplog.text  # detected landmarks of the training's scheme fed the geometry
    with pytest.raises(dataclasses.FrozenInstanceError):
        preds[0].label = "Happy"


def test_api_takes_arrays_and_a_loaded_model(trained, photos):
    from compound_fer.model_io import load_model

    face = np.asarray(Image.open(photos / "a_happy.jpg"))
    grey = np.asarray(Image.open(photos / "c_grey.png"))
    model, meta = load_model(trained / "basic_seed0.pt")
    by_path = compound_fer.predict(trained / "basic_seed0.pt", photos / "a_happy.jpg", progress=False)[0]
    preds = compound_fer.predict((model, meta), [face, grey, np.full((50, 50, 3), 0.5)], top_k=1, progress=False)
    assert [p.file for p in preds] == ["<image 0>", "<image 1>", "<image 2>"]
    assert preds[0].face_found and preds[0].label == by_path.label and len(preds[0].top_k) == 1
    assert abs(preds[0].probability - by_path.probability) < 1e-5
    assert preds[1].face_found and not preds[2].face_found


def test_a_model_of_the_synthetic_data_sees_whole_frames(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run / "models")
    meta = json.loads((run / "models" / "basic_seed0.json").read_text())
    meta.pop("recipe")  # as an older model: the run folder's config.yaml says how faces were made
    (run / "models" / "basic_seed0.json").write_text(json.dumps(meta))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"source": "synthetic", "image_size": 32}}))
    flat = np.full((40, 60, 3), 128, np.uint8)
    (p,) = compound_fer.predict(run / "models" / "basic_seed0.pt", [flat], progress=False)
    assert p.face_found and p.face_method == "whole image"


@pytest.mark.parametrize("argv, words", [
    (["predict", "{model}", "{tmp}/nowhere"], ("nowhere", "no such file or folder")),
    (["predict", "{tmp}/missing.pt", "{tmp}"], ("missing.pt", "not found")),
    (["predict", "{model}", "{photos}", "--top-k", "0"], ("--top-k", "at least 1")),
    (["predict", "{model}", "{photos}", "--out", "{tmp}"], ("--out", "is a folder")),
    (["predict", "{model}", "{empty}"], ("empty", "no image files")),
])
def test_bad_input_is_one_line_and_exit_2(trained, photos, tmp_path, capsys, argv, words):
    (tmp_path / "empty").mkdir()
    fill = {"model": trained / "basic_seed0.pt", "tmp": tmp_path, "photos": photos, "empty": tmp_path / "empty"}
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_importing_the_package_does_not_load_torch():
    code = ("import sys, compound_fer; assert 'torch' not in sys.modules; "
            "assert callable(compound_fer.predict) and compound_fer.Prediction; "
            "import compound_fer.commands.predict; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_example_runs(trained, photos, tmp_path, monkeypatch):
    """docs/api.md, "Predict new photos": its Python example, run where the demo's model and photos would be."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("## Predict new photos"):]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    shutil.copytree(trained, tmp_path / "runs" / "demo" / "models")
    shutil.copytree(photos, tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)
    preds = scope["predictions"]
    assert len(preds) == 6 and sum(p.face_found for p in preds) == 4
    assert (tmp_path / "predictions.csv").is_file()
