"""Frozen-trunk caching: continual and few-shot steps train only the last stage and the head (as the
reference), so each image's trunk feature maps are computed once (plus a few augmented views) and the
steps train on them: the CPU cost of a step drops by the trunk's share of the network. When the steps
train the head alone, the tail is frozen too and each view's pooled embedding is cached instead
(:func:`pooled_features`): a step then costs a linear layer per minibatch.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from compound_fer.data.augment import augment_batch


@torch.no_grad()
def trunk_maps(
    model: nn.Module,
    images: torch.Tensor,
    *,
    views: int = 0,
    augment=None,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    desc: str = "trunk maps",
    return_flips: bool = False,
):
    """Trunk feature maps of uint8 images: (N, 1 + views, C, h, w); view 0 is the un-augmented image.

    Restores the model's train/eval mode. Augmented views use ``augment`` with a fixed seed.
    ``return_flips``: return (maps, flips) with flips (N, 1 + views) bool, the views ``augment`` mirrored
    (for landmark geometry that follows each view; the maps are the same as without it).
    """
    if views and augment is None:
        raise ValueError("trunk_maps: views > 0 needs an augment transform")
    trunk = model.trunk
    was_training = trunk.training
    trunk.eval()
    torch.manual_seed(seed)
    out, flips = [], []
    try:
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
            xb = images[i : i + batch_size].float().div_(255)
            per_view, fl = [xb], [torch.zeros(len(xb), dtype=torch.bool)]
            for _ in range(views):
                if return_flips:
                    v, f = augment_batch(xb, augment, return_flips=True)
                    per_view.append(v)
                    fl.append(f)
                else:
                    per_view.append(augment_batch(xb, augment))
            maps = [trunk(v.to(device)).cpu() for v in per_view]
            out.append(torch.stack(maps, dim=1))
            flips.append(torch.stack(fl, dim=1))
    finally:
        trunk.train(was_training)
    return (torch.cat(out), torch.cat(flips)) if return_flips else torch.cat(out)


class PickView:
    """Transform for cached rows with a view axis: maps (V, C, h, w) -> (C, h, w), or pooled embeddings
    (V, D) -> (D,) with ``event_dims=1``; a random view in training, view 0 otherwise."""

    def __init__(self, *, random: bool, event_dims: int = 3) -> None:
        self.random = random
        self.event_dims = event_dims

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim <= self.event_dims:  # already one view
            return x
        i = int(torch.randint(len(x), (1,))) if self.random else 0
        return x[i]

    def __repr__(self) -> str:
        return f"PickView(random={self.random}, event_dims={self.event_dims})"


@torch.no_grad()
def pooled_features(net: nn.Module, rows: torch.Tensor, *, batch_size: int = 256, device: str = "cpu",
                    progress: bool = True, desc: str = "pooled features") -> torch.Tensor:
    """``net.features`` of every view of cached maps (N, V, C, h, w) -> (N, V, D), in eval mode.

    ``net`` is a :class:`CachedTrunkModel` whose tail is frozen: its BatchNorm statistics are fixed and it
    has no dropout, so a view's embedding is the same in training and testing and can be computed once."""
    was_training = net.training
    net.eval()
    n, v = rows.shape[:2]
    flat = rows.reshape(n * v, *rows.shape[2:])
    try:
        out = [net.features(flat[i : i + batch_size].to(device)).float().cpu()
               for i in tqdm(range(0, len(flat), batch_size), desc=desc, unit="batch", disable=not progress,
                             leave=False)]
    finally:
        net.train(was_training)
    return torch.cat(out).reshape(n, v, -1)


class PooledFeatureModel(nn.Module):
    """The head of a FERModel fed with cached pooled embeddings (trunk and tail frozen and skipped).

    Shares its head with the full model, so training it trains the full model; ``features`` is the
    identity (or picks the plain half of mirrored rows), so iCaRL, herding, prototypes and PSMR see the same
    embedding as on maps or images."""

    def __init__(self, *, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head  # fused landmark geometry, if any, is already inside the cached embedding
        self.feature_dim = model.feature_dim

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., 0, 0] if z.ndim == 4 else z  # mirrored rows (B, D, 1, 2): the first of the pair

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z))


class CachedTrunkModel(nn.Module):
    """The trainable part of a FERModel (tail + head), fed with cached trunk maps.

    Shares its tail and head modules with the full model, so training it trains the full model;
    exposes ``features``/``head``/``feature_dim`` like FERModel so every strategy treats it alike.
    BatchNorm layers stay in eval mode (frozen statistics, as in the reference).
    """

    def __init__(self, *, model: nn.Module) -> None:
        super().__init__()
        self.tail = model.tail
        self.head = model.head
        self.geometry = getattr(model, "geometry", None)  # fused landmarks: maps arrive packed (fusion.pack)
        self.feature_dim = model.feature_dim

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        if self.geometry is None:
            return self.tail(maps)
        maps, g = self.geometry.split(maps)
        return self.geometry.fuse(self.tail(maps), g)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(maps))

    def train(self, mode: bool = True) -> "CachedTrunkModel":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self
