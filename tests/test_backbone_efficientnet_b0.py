"""The trial backbone added through the registry (compound_fer/backbones/efficientnet_b0.py): torchvision's
EfficientNet-B0, random init offline (its ImageNet file is not shipped), usable by a protocol config."""

from __future__ import annotations

import pytest
import torch

from compound_fer.config import ModelConfig
from compound_fer.errors import WeightsError
from compound_fer.models import build_model


def test_efficientnet_b0_splits_at_its_last_stage_and_trains_only_the_tail_in_continual_steps():
    torch.manual_seed(0)
    m = build_model("efficientnet_b0", num_classes=4, pretrained=False)
    assert m.feature_dim == 1280 and m.image_size == 112
    assert ModelConfig(backbone="efficientnet_b0").backbone == "efficientnet_b0"
    m.set_trainable("tail_head").train()
    assert not any(p.requires_grad for p in m.trunk.parameters())
    before = [p.clone() for p in m.trunk.parameters()]
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(m(torch.rand(2, 3, 64, 64)), torch.tensor([0, 3]))
    loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, m.trunk.parameters()))


def test_efficientnet_b0_without_its_weights_file_says_to_use_random_init(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match=r"efficientnet_b0_rwightman-7f5810bc\.pth.*pretrained=False"):
        build_model("efficientnet_b0", num_classes=3, pretrained=True)
