"""The backbone registry (compound_fer/backbones/): every registered backbone builds a FERModel whose
trunk, tail and Grad-CAM layer fit together, and the config accepts exactly the registered names."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from compound_fer import backbones
from compound_fer.config import ModelConfig
from compound_fer.errors import ConfigError, WeightsError
from compound_fer.models import BACKBONES, build_model


def _buildable(name: str) -> bool:
    return name != "efficientnet_lite0" or importlib.util.find_spec("efficientnet_lite_pytorch") is not None


@pytest.mark.parametrize("spec", backbones.specs(), ids=lambda s: s.name)
def test_every_registered_backbone_builds_with_its_size_and_grad_cam_layer(spec):
    if not _buildable(spec.name):
        pytest.skip(f"{spec.name}: its package is not installed")
    torch.manual_seed(0)
    m = build_model(spec.name, num_classes=3, pretrained=False).eval()
    assert m.name == spec.name and m.image_size == spec.default_size
    assert m.target_layer is m.get_submodule(spec.target_layer)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps = m.trunk(x)
        assert torch.allclose(m.forward_from_trunk(maps), m(x), atol=1e-5)
        assert m.features(x).shape == (2, m.feature_dim)
        seen = []
        hook = m.target_layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
        m(x)
        hook.remove()
    assert seen and seen[0].ndim == 4  # Grad-CAM's layer gives a spatial map


def test_config_accepts_every_registered_name_and_refuses_others_naming_them():
    assert set(BACKBONES) == set(backbones.names())
    for name in backbones.names():
        assert ModelConfig(backbone=name).backbone == name
    with pytest.raises(ValueError, match="unknown backbone 'resnet1'; choose one of .*small_cnn"):
        ModelConfig(backbone="resnet1")
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'"):
        build_model("vgg", num_classes=2)


def test_a_backbone_without_weights_always_starts_random_and_trains_its_batchnorm():
    spec = backbones.spec_of("small_cnn")
    assert not spec.has_weights
    assert build_model("small_cnn", num_classes=2, pretrained=True).freeze_bn is False


def test_missing_hub_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match=r"resnet50-0676ba61\.pth.*pretrained=False"):
        build_model("resnet50", num_classes=3, pretrained=True)
