"""The configured device reaches every place that names one (issue 30 part 1): a tiny protocol (basic phase,
continual steps of KD+PSMR, replay and GDumb, few-shot, episodes) run with ``device: "cpu:0"`` (torch's
CPU, spelled so it can be told apart from the ``"cpu"`` defaults) must never fall back to a ``"cpu"``
default in our code: on a GPU that fallback is a tensor on the wrong device. A meta-device check covers
the losses that build tensors in the training step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from compound_fer.config import parse_config

PACKAGE = str(Path(__file__).resolve().parents[1] / "compound_fer")
DEVICE = "cpu:0"
TINY = {
    "name": "tiny-device",
    "device": DEVICE,
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 12, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 1, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["kdpsmr", "replay", "gdumb"], "orders": 1, "epochs": 1, "lr": 0.001,
                  "augment_views": 1},
    "fewshot": {"enabled": True, "shots": [1], "compounds": ["Awed"], "epochs": 1},
    "threads": 1,
    "loggers": ["csv"],
}


class DeviceSpy(TorchFunctionMode):
    """Records, per call site in compound_fer, the device strings given to ``Tensor.to`` and to factories."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        kwargs = kwargs or {}
        given = [kwargs.get("device"), *(a for a in args[1:] if getattr(func, "__name__", "") == "to")]
        for dev in given:
            if isinstance(dev, str):
                self.calls.append((dev, _caller()))
        return func(*args, **kwargs)


def _caller() -> str:
    """file:line of the code that called the torch function, when it is ours ('' for a library's own call,
    e.g. Adam's step counters, which torch keeps on the CPU by design)."""
    f = sys._getframe(2)
    if f.f_code.co_filename.startswith(PACKAGE):
        return f"{f.f_code.co_filename[len(PACKAGE) - len('compound_fer'):]}:{f.f_lineno}"
    return ""


def test_the_configured_device_reaches_every_call_site(tmp_path, monkeypatch):
    from avalanche.training.templates.base import BaseTemplate

    from compound_fer.runner import run_protocol

    strategies: list[torch.device] = []  # the device of every Avalanche strategy the protocol builds
    init = BaseTemplate.__init__

    def recording_init(self, *args, **kwargs):  # noqa: ANN001, ANN202 - a spy on avalanche's constructor
        init(self, *args, **kwargs)
        strategies.append(self.device)

    monkeypatch.setattr(BaseTemplate, "__init__", recording_init)
    spy = DeviceSpy()
    with spy:
        rows = run_protocol(parse_config(TINY), out_dir=tmp_path, progress=False, command="pytest device")
    assert {r.get("kind") for r in rows} >= {"basic", "continual", "fewshot"}
    assert len(strategies) >= 4 and set(strategies) == {torch.device(DEVICE)}, strategies
    ours = [(dev, where) for dev, where in spy.calls if where]
    assert sum(dev == DEVICE for dev, _ in ours) >= 10, ours[:20]  # the argument exists and flows
    fallbacks = sorted({where for dev, where in ours if dev == "cpu"})
    assert fallbacks == [], f"'cpu' defaults used where {DEVICE} was configured: {fallbacks}"


def test_training_losses_build_their_tensors_on_the_logits_device():
    """KD, PSMR scoring and the logit-adjusted loss on the meta device: a CPU tensor made inside them would
    raise "not on the expected device", as a CPU tensor meeting CUDA ones does."""
    from compound_fer.training.bias_correction import _AdjustedLoss
    from compound_fer.training.distillation import distillation_loss, soft_targets

    logits = torch.randn(4, 5, device="meta")
    old = torch.randn(4, 3, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")
    for padding in ("zeros", "mask"):
        assert distillation_loss(logits, old, y, gamma=0.5, padding=padding).device.type == "meta"
    seen = torch.tensor([True, False, True])  # a CPU mask of the teacher's columns, as the plugin keeps it
    assert soft_targets(old, 5, temperature=2.0, teacher_mask=seen).device.type == "meta"
    prior = torch.zeros(5, device="meta")
    assert _AdjustedLoss(torch.nn.CrossEntropyLoss(), prior)(logits, y).device.type == "meta"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_predict_takes_a_string_or_a_torch_device(device):
    from compound_fer.training.predict import predict

    model = torch.nn.Linear(3, 2)
    assert predict(model, torch.randn(5, 3), device=device).shape == (5,)
