"""The protocol with landmark geometry fused (model.geometry: landmarks) and component-initialised outputs,
end to end on tiny synthetic faces given made-up CFEE landmarks that depend on the expression."""

import dataclasses

import numpy as np
import pytest
import torch
from landmark_shapes import cfee_points

from compound_fer.config import parse_config
from compound_fer.data.synthetic import generate
from compound_fer.errors import DataError
from compound_fer.fusion import pack
from compound_fer.model_io import load_model
from compound_fer.runner import run_protocol
from compound_fer.training.predict import predict

CFG = {
    "name": "tiny-geometry",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 12, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False, "geometry": "landmarks"},
    "basic": {"epochs": 2, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "lr": 0.001, "augment_views": 1,
                  "component_init": True},
    "fewshot": {"enabled": False},
    "threads": 1,
    "loggers": [],
}


def _with_landmarks(faces):
    """Each face gets the cartoon's 78 points, the mouth opened by its label, plus noise (crop pixels)."""
    rng = np.random.default_rng(0)
    pts = np.repeat(cfee_points()[None], len(faces), 0)
    pts[:, 49:63, 1] += faces.labels.numpy()[:, None] * 0.8
    pts = (pts + rng.normal(0, 0.5, pts.shape)) * 0.2 + 16
    return dataclasses.replace(faces, landmarks=torch.from_numpy(pts).float(), landmark_scheme="cfee78",
                               landmarks_valid=torch.ones(len(faces), dtype=torch.bool))


@pytest.fixture(scope="module")
def geometry_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    real = generate
    mp.setattr("compound_fer.data.synthetic.generate", lambda **kw: _with_landmarks(real(**kw)))
    out = tmp_path_factory.mktemp("geo")
    try:
        rows = run_protocol(parse_config(CFG), out_dir=out, progress=False)
    finally:
        mp.undo()
    return out, rows


def test_basic_row_reports_the_geometry_stage(geometry_run):
    _, rows = geometry_run
    basic = next(r for r in rows if r["kind"] == "basic")
    assert basic["geometry"]["scheme"] == "cfee78"
    assert basic["geometry"]["features"] > 156 and basic["geometry"]["faces_without_landmarks"]["test"] == 0


def test_every_compound_step_records_its_zero_shot_accuracy(geometry_run):
    _, rows = geometry_run
    row = next(r for r in rows if r["kind"] == "continual")
    assert len(row["zero_shot"]) == 15
    assert all(0.0 <= z["seen_accuracy"] <= 1.0 for z in row["zero_shot"])


def test_saved_model_reloads_with_its_geometry(geometry_run):
    out, _ = geometry_run
    model, meta = load_model(out / "models" / "kdpsmr_seed0.pt")
    assert meta["geometry"]["features"] == model.geometry.dim
    x = pack(torch.rand(4, 3, 32, 32), torch.randn(4, model.geometry.dim))  # RGB + geometry planes
    assert predict(model, x).shape == (4,)


def test_faces_without_landmarks_are_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="model.geometry"):
        run_protocol(parse_config(CFG), out_dir=tmp_path, progress=False)


def test_test_faces_of_another_landmark_scheme_fall_back_to_their_pixels(caplog):
    from compound_fer.runner.dataset import Splits
    from compound_fer.runner.geometry import _test_geometry

    faces = _with_landmarks(generate(categories=["Happy", "Sad"], n_subjects=3, per_subject=1, image_size=32, seed=0))
    bare = dataclasses.replace(faces, landmarks=None, landmark_scheme=None, landmarks_valid=None)
    g = _test_geometry(Splits(faces, faces, bare, {}))
    assert g.shape[0] == len(bare) and torch.isnan(g).all()
    assert "classified from their pixels" in caplog.text
    assert torch.isfinite(_test_geometry(Splits(faces, faces, faces, {}))).all()
