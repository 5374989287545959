"""Saved models: a plain state dict (.pt) plus a small JSON of metadata (classes, preprocessing, backbone).

Loading always uses ``weights_only=True``: a file that carries pickled code is refused, never executed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from compound_fer.errors import WeightsError
from compound_fer.io import save_torch, write_json


def save_model(model: torch.nn.Module, path: str | Path, *, meta: dict[str, Any]) -> Path:
    """Write ``path`` (state dict) and ``path.with_suffix('.json')`` (metadata), both atomically."""
    path = Path(path)
    required = {"classes", "backbone", "image_size"}
    missing = required - set(meta)
    if missing:
        raise ValueError(f"save_model: metadata lacks {sorted(missing)}")
    save_torch(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    write_json(path.with_suffix(".json"), {**meta, "format": "compound_fer/state_dict-v1"})
    return path


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` with weights_only=True; pickled code or a broken file is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path} holds more than tensors (pickled code or objects), so it was NOT loaded: "
            "only plain state dicts are accepted. Re-save it with torch.save(model.state_dict(), path). "
            f"Detail: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsError(f"{path} is not a readable torch file (truncated or corrupt?): {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    return state


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a saved model from its metadata JSON and load its weights safely."""
    from compound_fer.models import build_model

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise WeightsError(f"metadata {meta_path} not found next to {path}: it names the classes and backbone")
    try:
        meta = json.loads(meta_path.read_text())
        classes = list(meta["classes"])
        backbone = meta["backbone"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise WeightsError(f"metadata {meta_path} is unreadable or lacks 'classes'/'backbone': {err}") from None
    model = build_model(backbone, num_classes=len(classes), pretrained=False, head=meta.get("head", "linear"),
                        image_size=int(meta.get("image_size", 112)))
    state = load_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit a {backbone} with {len(classes)} classes: {err}") from None
    model.eval()
    return model, meta
