"""The one batched prediction helper (argmax over a model's outputs), and accuracy on top of it."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["accuracy", "dataset_outputs", "predict"]


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """Argmax predictions for float inputs, batched, restoring the model's train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        out = [model(inputs[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(inputs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, **kw) -> float:
    """Share of ``inputs`` whose prediction equals ``targets`` (NaN when there are none)."""
    if len(targets) == 0:
        return float("nan")
    return float((predict(model, inputs, **kw) == targets).float().mean())


@torch.no_grad()
def dataset_outputs(model: nn.Module, dataset: Any, *, fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, labels) of every sample of an Avalanche dataset under its eval transform, in eval mode;
    ``fn`` (default: the model itself, i.e. logits) may be e.g. ``model.features``."""
    fn = fn or model
    was_training = model.training
    model.eval()
    ds = dataset.eval() if hasattr(dataset, "eval") else dataset
    outs, labels = [], []
    try:
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
            outs.append(fn(batch[0].to(device)).float().cpu())
            labels.append(torch.as_tensor(batch[1]).long())
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(labels)
