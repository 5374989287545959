"""Model files: the sidecar's sha256 is checked at load, wrong kinds of file get a WeightsError naming the
file, class_order comes back from the sidecar, and Grad-CAM refuses a model that lacks it."""

from __future__ import annotations

import json

import pytest
import torch

from compound_fer import taxonomy
from compound_fer.errors import WeightsError
from compound_fer.model_io import load_model, load_state_dict, save_model, sha256_of

CLASSES = ["Happy", "Surprised", "Happily surprised"]


@pytest.fixture()
def saved(tmp_path):
    from compound_fer.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=32)
    path = save_model(model, tmp_path / "m.pt", meta={"classes": CLASSES, "backbone": "small_cnn", "image_size": 32})
    return model, path


def test_sidecar_records_the_weights_sha256_and_load_restores_class_order(saved):
    model, path = saved
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_of(path)
    loaded, _ = load_model(path)
    assert loaded.class_order == [taxonomy.label_of(n) for n in CLASSES]
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_flipped_bytes_are_refused_naming_the_file(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 400):  # inside the tensor data: still a loadable zip
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{path.name}.*sha256.*NOT loaded"):
        load_model(path)


def test_text_file_as_pt_is_a_clear_weights_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("everything here is text, not tensors\n")
    with pytest.raises(WeightsError, match=rf"{bad.name} is a text file, not model weights"):
        load_state_dict(bad)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pt is empty"):
        load_state_dict(tmp_path / "empty.pt")


def test_json_given_as_model_names_the_pt_file(saved):
    _, path = saved
    sidecar = path.with_suffix(".json")
    for call in (load_model, load_state_dict):
        with pytest.raises(WeightsError, match=rf"{sidecar.name} is a model's metadata sidecar.*{path.name}") as err:
            call(sidecar)
        assert "pickled code" not in str(err.value)


def test_gradcam_refuses_a_fer_model_without_class_order(saved):
    from compound_fer.explain.gradcam import class_mean_cams, compute_cams

    _, path = saved
    model, _ = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    labels = [taxonomy.label_of("Happy")] * 2
    assert compute_cams(model, x, labels).shape == (2, 32, 32)  # restored class_order: explained
    del model.class_order
    with pytest.raises(ValueError, match="no class_order"):
        compute_cams(model, x, labels)
    with pytest.raises(ValueError, match="no class_order"):
        class_mean_cams(model, x, labels)
    order = [taxonomy.label_of(n) for n in CLASSES]
    assert compute_cams(model, x, labels, class_order=order).shape == (2, 32, 32)  # or given explicitly
