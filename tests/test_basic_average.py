"""``basic.average_last``: the basic model is the average of the last K epochs' weights (SWA), not the best
validation epoch, so a noisy validation split cannot swing it (issue 28)."""

from __future__ import annotations

import pytest
import torch

from compound_fer.config import parse_config
from compound_fer.errors import ConfigError
from compound_fer.models import build_model
from compound_fer.training import basic as basic_mod
from compound_fer.training.basic import BasicLoop, train_basic


def _fake_epochs(monkeypatch):  # noqa: ANN001, ANN202 - epoch e sets every float weight to e + 1
    calls = {"n": 0}

    def epoch(net, model, opt, order, **kwargs):  # noqa: ANN001, ANN202
        calls["n"] += 1
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(calls["n"]))
        return 1.0, 1

    monkeypatch.setattr(basic_mod, "_train_epoch", epoch)
    return calls


def _data():  # noqa: ANN202
    torch.manual_seed(0)
    return torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 3, (8,))


def test_the_model_is_the_mean_of_the_last_k_epochs(monkeypatch):
    calls = _fake_epochs(monkeypatch)
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=32)
    x, y = _data()
    res = train_basic(model, train_x=x, train_y=y, val_x=x, val_y=y,
                      loop=BasicLoop(epochs=4, lr=1e-3, batch_size=4, patience=1, average_last=2, progress=False))
    assert calls["n"] == 4  # no early stop, whatever the validation says
    assert res.best_epoch == 3 and len(res.history) == 4
    w = next(model.parameters())
    assert torch.allclose(w, torch.full_like(w, 3.5))  # epochs 3 and 4 (weights 3 and 4)
    assert model.head.active_units.dtype == torch.bool  # a bool buffer keeps its value


def test_average_last_is_at_most_the_epochs():
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=32)
    x, y = _data()
    with pytest.raises(ConfigError, match="average_last"):
        train_basic(model, train_x=x, train_y=y, val_x=x, val_y=y,
                    loop=BasicLoop(epochs=2, lr=1e-3, batch_size=4, average_last=3, progress=False))


def test_the_config_carries_it_to_the_loop():
    cfg = parse_config({"name": "t", "basic": {"epochs": 6, "average_last": 3}})
    loop = BasicLoop.of_phase(cfg.basic, seed=0, device="cpu", progress=False)
    assert loop.average_last == 3
