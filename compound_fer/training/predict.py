"""The one batched prediction helper (argmax over a model's outputs), and accuracy on top of it."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["accuracy", "predict"]


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
