"""The reference's augmentation on uint8/float image tensors: flip, small rotation, zoom, translation."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from compound_fer.config import AugmentConfig


def make_augment(cfg: AugmentConfig | None = None) -> v2.Transform:
    """A per-image transform (C, H, W) -> (C, H, W) as in the reference (Keras RandomFlip/Rotation/Zoom/Translation)."""
    cfg = cfg or AugmentConfig()
    ops: list[v2.Transform] = []
    if cfg.flip:
        ops.append(v2.RandomHorizontalFlip())
    if cfg.rotation_deg or cfg.zoom or cfg.translate:
        ops.append(
            v2.RandomAffine(
                degrees=cfg.rotation_deg,
                translate=(cfg.translate, cfg.translate) if cfg.translate else None,
                scale=(1.0 - cfg.zoom, 1.0 + cfg.zoom) if cfg.zoom else None,
            )
        )
    return v2.Compose(ops) if ops else v2.Identity()


def augment_batch(images: torch.Tensor, transform: v2.Transform) -> torch.Tensor:
    """Apply ``transform`` to each image of a batch independently (v2 shares parameters across a batch)."""
    return torch.stack([transform(img) for img in images])
