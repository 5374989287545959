"""The reference's augmentation on uint8/float image tensors: flip, small rotation, zoom, translation.

Landmark-aware flips: :func:`flip_batch` mirrors images with their landmarks (x mirrored, point order
permuted left <-> right), and ``augment_batch(..., return_flips=True)`` says which images it flipped, so
landmark geometry can follow an augmented view (rotation, zoom and shift leave eye-aligned geometry
unchanged; only the flip matters).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from compound_fer.config import AugmentConfig
from compound_fer.data.schemes import flip_points


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


def _split_flip(transform: v2.Transform) -> tuple[float, v2.Transform]:
    """(flip probability, the rest) of a transform whose first step is RandomHorizontalFlip (else p=0)."""
    if isinstance(transform, v2.RandomHorizontalFlip):
        return float(transform.p), v2.Identity()
    if isinstance(transform, v2.Compose):
        ops = list(transform.transforms)
        if any(isinstance(t, v2.RandomHorizontalFlip) for t in ops[1:]):
            raise ValueError("augment_batch(return_flips=True) needs RandomHorizontalFlip as the first step")
        if ops and isinstance(ops[0], v2.RandomHorizontalFlip):
            return float(ops[0].p), v2.Compose(ops[1:]) if len(ops) > 1 else v2.Identity()
    return 0.0, transform


def augment_batch(images: torch.Tensor, transform: v2.Transform, *, return_flips: bool = False):
    """Apply ``transform`` to each image of a batch independently (v2 shares parameters across a batch).

    ``return_flips``: also return (N,) bool, which images the transform's horizontal flip mirrored;
    the images and random draws are the same as without it.
    """
    if not return_flips:
        return torch.stack([transform(img) for img in images])
    p, rest = _split_flip(transform)
    out, flips = [], []
    for img in images:
        flip = bool(torch.rand(1) < p) if p > 0 else False  # the draw v2.RandomHorizontalFlip makes
        out.append(rest(img.flip(-1) if flip else img))
        flips.append(flip)
    return torch.stack(out), torch.tensor(flips, dtype=torch.bool)


def flip_batch(images: torch.Tensor, landmarks: torch.Tensor | np.ndarray | None = None,
               scheme: str | None = None, *, which: torch.Tensor | None = None):
    """Mirror images (N, C, H, W) left-right, with their landmarks (N, K, 2) in the images' pixels.

    ``which``: (N,) bool, only those faces (default: all). Returns (images, landmarks or None).
    """
    which = torch.ones(len(images), dtype=torch.bool) if which is None else torch.as_tensor(which, dtype=torch.bool)
    out = torch.where(which[:, None, None, None], images.flip(-1), images)
    if landmarks is None:
        return out, None
    if scheme is None:
        raise ValueError("flip_batch: landmarks need their scheme (e.g. 'cfee78') to swap left and right points")
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float32))
    mirrored = torch.from_numpy(flip_points(lm.numpy(), scheme, images.shape[-1]).astype(np.float32))
    return out, torch.where(which[:, None, None], mirrored, lm)
