"""One model contract: every model file a run writes carries its input recipe, so a continual or few-shot
model copied anywhere predicts exactly as in place; `predict`, `evaluate` and `gradcam --data` place each face
the same way (one function, :func:`compound_fer.prediction.inputs.model_inputs`; the crops are compared); an
older file without a recipe says what to pass; `predict` screens landmark rows as the loader does; --top-k
past the class count and progress bars off a terminal are said, not silent."""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from landmark_shapes import cfee_points
from PIL import Image

import compound_fer
from compound_fer import cli, taxonomy
from compound_fer.commands._progress import show_progress
from compound_fer.data.synthetic import generate
from compound_fer.errors import ConfigError, DataError
from compound_fer.explain import pipeline
from compound_fer.model_io import load_model, save_model
from compound_fer.models import build_model
from compound_fer.prediction import inputs as prediction_inputs

TINY = {
    "name": "tiny_contract",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 12, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 1, "lr": 0.002, "batch_size": 32, "patience": 1},
    "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "lr": 0.001, "augment_views": 1},
    "fewshot": {"compounds": ["Happily surprised"], "shots": [1], "epochs": 1, "mode": "reference"},
    "threads": 1,
    "loggers": [],
}
FEWSHOT = "fewshot_seed0_happily_surprised_1shot"
BASIC = [c.name for c in taxonomy.categories("basic")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run on the built-in synthetic faces (whole frames): its run folder."""
    root = tmp_path_factory.mktemp("contract")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert cli.main(["run", "--config", str(root / "tiny.yaml"), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Labelled class folders of synthetic photos (96 px, one per category), as `synth --images` writes."""
    root = tmp_path_factory.mktemp("photos")
    faces = generate(categories=[c.name for c in taxonomy.categories(("basic", "compound"))], n_subjects=1,
                     per_subject=1, image_size=96, seed=0, subject_offset=900, masks=False)
    for i, label in enumerate(faces.labels):
        folder = root / taxonomy.CATEGORIES[int(label)].name
        folder.mkdir(exist_ok=True)
        Image.fromarray(faces.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:02d}.png")
    return root


def _rows(preds) -> list[tuple]:
    return [(Path(p.file).name, p.face_found, p.label, p.probability, p.top_k, p.face_method, p.reason)
            for p in preds]


def _copy(model: Path, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for suffix in (".pt", ".json"):
        shutil.copy(model.with_suffix(suffix), where / model.with_suffix(suffix).name)
    return where / model.name


def test_every_model_file_carries_its_recipe(run):
    files = sorted((run / "models").glob("*.json"))
    assert {f.stem for f in files} == {"basic_seed0", "kdpsmr_seed0", FEWSHOT}
    for f in files:
        recipe = json.loads(f.read_text())["recipe"]
        assert recipe["crop"] == {"image_size": 32, "source": "synthetic", "face_method": "auto", "face_margin": 0.15,
                                  "landmark_detector": "mediapipe", "no_face": "skip"}, f
        assert recipe["config"]["name"] == "tiny_contract" and recipe["input"].startswith("float RGB"), f


@pytest.mark.parametrize("name", ["kdpsmr_seed0", FEWSHOT])
def test_a_copied_model_predicts_exactly_as_in_place(run, photos, tmp_path, name):
    here = run / "models" / f"{name}.pt"
    there = _copy(here, tmp_path / "elsewhere")  # no run folder, no config.yaml beside it
    a = compound_fer.predict(here, [photos], top_k=5, progress=False)
    b = compound_fer.predict(there, [photos], top_k=5, progress=False)
    c = compound_fer.predict(load_model(there), [photos], top_k=5, progress=False)  # the (model, meta) pair
    assert _rows(a) == _rows(b) == _rows(c)
    assert len(a) == 21 and all(p.face_found and p.face_method == "whole image" for p in a)


def test_an_older_file_without_a_recipe_says_what_to_pass(run, photos, tmp_path, caplog):
    old = _copy(run / "models" / "kdpsmr_seed0.pt", tmp_path / "old")
    meta = json.loads(old.with_suffix(".json").read_text())
    meta.pop("recipe")  # as an older version wrote it (the sha256 covers the .pt only)
    old.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"kdpsmr_seed0\.pt has no input recipe.*--config CONFIG"):
        compound_fer.predict(old, [photos], progress=False)
    given = compound_fer.predict(old, [photos], progress=False, config=run / "config.yaml")
    assert _rows(given) == _rows(compound_fer.predict(run / "models" / "kdpsmr_seed0.pt", [photos], progress=False))
    (tmp_path / "config.yaml").write_text((run / "config.yaml").read_text())  # old/ now sits in a run folder
    with caplog.at_level(logging.WARNING):
        assert _rows(compound_fer.predict(old, [photos], progress=False)) == _rows(given)
    assert "has no input recipe" in caplog.text and f"--config {tmp_path / 'config.yaml'}" in caplog.text


class _Spy:
    """Records every face placement (items, FoundFaces) made through prediction.inputs.model_inputs."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[list, object]] = []
        real = prediction_inputs.find_faces

        def spy(items, *args, **kw):
            faces = real(items, *args, **kw)
            self.calls.append(([str(x) for x in items], faces))
            return faces

        monkeypatch.setattr(prediction_inputs, "find_faces", spy)

    def crops(self) -> dict[str, np.ndarray]:
        """{file: crop} of the last placement."""
        items, faces = self.calls[-1]
        return {f: faces.crop[i] for i, f in enumerate(items) if faces.crop[i] is not None}


def _placements(model: Path, data: Path, monkeypatch, capsys) -> tuple[dict, dict, dict, str]:
    """The crops `predict`, `evaluate` and `gradcam --data` (its pipeline) make of ``data``, and evaluate's output."""
    spy = _Spy(monkeypatch)
    assert cli.main(["predict", str(model), str(data), "--no-progress"]) == 0
    by_predict = spy.crops()
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(model), "--data", str(data)]) == 0
    by_evaluate, printed = spy.crops(), capsys.readouterr().out
    _, _, faces, _, _ = pipeline.saved_model_setup(model, data=data)
    by_gradcam = {src: faces.images[i].numpy() for i, src in enumerate(faces.sources)}
    return by_predict, by_evaluate, by_gradcam, printed


def _same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_evaluate_and_gradcam_place_synthetic_faces_as_predict(run, photos, monkeypatch, capsys):
    """A model of the synthetic faces sees whole frames in all three (evaluate and gradcam ran the detector)."""
    model = run / "models" / "kdpsmr_seed0.pt"
    by_predict, by_evaluate, by_gradcam, printed = _placements(model, photos, monkeypatch, capsys)
    assert len(by_predict) == 21 and _same(by_predict, by_evaluate) and _same(by_predict, by_gradcam)
    preds = compound_fer.predict(model, [photos], progress=False)
    right = np.mean([p.label == Path(p.file).parent.name for p in preds])
    assert f"21 images, accuracy {100 * right:.2f}%" in printed  # the same faces, the same labels


# ------------------------------------------------------------------- models of real-photo crops
def _real_model(path: Path, **crop) -> Path:
    """An untrained small_cnn over the basic classes, saved with a recipe of real-photo crops."""
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=len(BASIC), pretrained=False, image_size=32)
    recipe = {"version": 1, "crop": {"image_size": 32, "source": "path", "face_method": "auto", "face_margin": 0.15,
                                     "landmark_detector": None, "no_face": "skip", **crop},
              "geometry": None, "input": "float RGB in [0,1]", "config": {}}
    return save_model(model, path, meta={"classes": BASIC, "backbone": "small_cnn", "head": "linear",
                                         "image_size": 32, "recipe": recipe})


def _landmark_folder(root: Path, spoil: str | None = None) -> Path:
    """Class folders happy/ and sad/ of 240x180 images with a landmarks.csv; the row of ``spoil`` has x and y
    swapped."""
    lines = []
    for c, cls in enumerate(("Happy", "Sad")):
        (root / cls).mkdir(parents=True)
        for j in range(3):
            i, name = 3 * c + j, f"{cls}/{j}.png"
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(root / name)
            p = cfee_points() * (0.8 + 0.05 * i) + (120 + 2 * i, 90 + i)
            p = p[:, ::-1] if name == spoil else p
            lines.append(",".join([name] + [f"{v:.2f}" for v in p[:, 0]] + [f"{v:.2f}" for v in p[:, 1]]))
    head = ",".join(["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)])
    (root / "landmarks.csv").write_text("\n".join([head, *lines]) + "\n")
    return root


def test_evaluate_and_gradcam_place_landmark_crops_as_predict(tmp_path, monkeypatch, capsys):
    model = _real_model(tmp_path / "m.pt", face_margin=0.3)  # not the readers' default margin
    data = _landmark_folder(tmp_path / "faces")
    by_predict, by_evaluate, by_gradcam, printed = _placements(model, data, monkeypatch, capsys)
    assert len(by_predict) == 6 and _same(by_predict, by_evaluate) and _same(by_predict, by_gradcam)
    assert "6 images, accuracy" in printed


def test_a_swapped_landmark_row_is_named_by_file_and_line(tmp_path, caplog, capsys):
    model = _real_model(tmp_path / "m.pt")
    data = _landmark_folder(tmp_path / "faces", spoil="Sad/1.png")
    with caplog.at_level(logging.WARNING):
        preds = {Path(p.file).name + Path(p.file).parent.name: p
                 for p in compound_fer.predict(model, [data], progress=False)}
    bad = preds["1.pngSad"]
    assert not bad.face_found and "line 6" in bad.reason and "side by side" in bad.reason, bad
    assert sum(p.face_found for p in preds.values()) == 5
    assert "landmarks.csv: 1 of 6 landmark row(s) fail the sanity checks" in caplog.text and "line 6" in caplog.text
    # one photo whose only row is swapped: refused, naming the file and the line
    lm = tmp_path / "one.csv"
    text = (data / "landmarks.csv").read_text().splitlines()
    lm.write_text("\n".join([text[0], text[5].replace("Sad/1.png", "1.png")]) + "\n")
    assert cli.main(["predict", str(model), str(data / "Sad" / "1.png"), "--landmarks", str(lm)]) == 2
    err = capsys.readouterr().err
    assert str(lm) in err and "line 2" in err and "x and y columns look swapped" in err, err


def test_top_k_past_the_class_count_says_so(tmp_path, caplog, capsys):
    model = _real_model(tmp_path / "m.pt")
    data = _landmark_folder(tmp_path / "faces")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["predict", str(model), str(data), "--top-k", "50"]) == 0
    assert "top-k 50: the model has 6 classes, so every image lists all 6" in caplog.text
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 6 and all(r.split(",")[4].count(":") == 6 for r in rows)  # all six classes listed


def test_progress_bars_only_on_a_terminal(monkeypatch, tmp_path, capsys):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    args = cli.build_parser().parse_args(["evaluate", "--model", "m.pt", "--data", "d"])
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert show_progress(args) is False  # a log file or a pipe: no bars
    monkeypatch.setattr(sys, "stderr", Tty())
    assert show_progress(args) is True
    assert show_progress(cli.build_parser().parse_args(["evaluate", "--model", "m", "--data", "d",
                                                        "--no-progress"])) is False
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "--no-progress" in capsys.readouterr().out


def test_evaluate_refuses_a_folder_without_the_models_classes(tmp_path, capsys):
    model = _real_model(tmp_path / "m.pt")
    (tmp_path / "faces" / "Awed").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(tmp_path / "faces" / "Awed" / "x.png")
    assert cli.main(["evaluate", "--model", str(model), "--data", str(tmp_path / "faces")]) == 2
    assert "no image of the model's classes" in capsys.readouterr().err
    with pytest.raises(DataError):
        from compound_fer.prediction.labelled import labelled_inputs

        labelled_inputs(*load_model(model), tmp_path / "faces")
