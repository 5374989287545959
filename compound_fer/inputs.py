"""What the continual and few-shot steps train and test on, and what "cached" implies for them.

:class:`Inputs` holds one row per FaceSet row of each split: float images (N, 3, H, W), or cached trunk
maps (N, views, C, H, W) of a frozen trunk, or pooled embeddings (N, views, D) of a frozen trunk and tail.
With maps, the model is wrapped to run its tail + head only (its head only on embeddings), training picks
a random view per sample and testing uses view 0: these choices live here, once.
The optional ``*_extra`` tensors (N, F) ride along per face (e.g. landmark or action-unit features);
nothing reads them yet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from compound_fer.data.augment import make_augment
from compound_fer.features import CachedTrunkModel, PickView, PooledFeatureModel, pooled_features, trunk_maps

__all__ = ["Inputs", "make_inputs"]


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Per-split model inputs (images or cached trunk maps) and per-face extras (unused for now)."""

    train: torch.Tensor
    test: torch.Tensor
    val: torch.Tensor | None = None
    cached: bool = False
    pooled: bool = False  # rows are pooled embeddings (N, views, D): only the head runs on them
    mirrored: bool = False  # pooled rows (N, views, D, 1, 2): each embedding beside its flipped map's
    # the same faces as pooled embeddings of this frozen tail, for steps that train the head alone
    embedded: "Inputs | None" = None
    embedded_mirrored: "Inputs | None" = None  # the same, mirrored, for methods that flip their inputs
    train_extra: torch.Tensor | None = None
    val_extra: torch.Tensor | None = None
    test_extra: torch.Tensor | None = None

    @classmethod
    def of_images(cls, *, train: Any, test: Any, val: Any = None) -> "Inputs":
        """Float images of FaceSets (no caching): the model sees whole images."""
        return cls(train=train.float_images(), test=test.float_images(),
                   val=None if val is None else val.float_images())

    def wrap(self, model: nn.Module) -> nn.Module:
        """The network that consumes these inputs: the head of ``model`` on embeddings, its tail + head on
        maps, else ``model``."""
        if self.pooled:
            return PooledFeatureModel(model=model)
        return CachedTrunkModel(model=model) if self.cached else model

    def for_trainable(self, policy: str | None, *, mirrored: bool = False) -> "Inputs":
        """The inputs a step training ``policy`` runs on: the pooled embeddings (``mirrored`` ones for a
        method that flips its inputs) when it trains the head alone and they were made, else these."""
        emb = self.embedded_mirrored if mirrored else self.embedded
        return emb if policy == "head" and emb is not None else self

    def with_embeddings(self, model: nn.Module, *, device: str = "cpu", progress: bool = True,
                        mirrored: bool = False) -> "Inputs":
        """These inputs plus the pooled embedding of every cached view (``embedded``; with ``mirrored`` also
        ``embedded_mirrored``): ``model``'s tail must stay frozen wherever they are used."""
        if not self.cached or self.pooled:
            raise ValueError("with_embeddings needs cached trunk maps")
        net = CachedTrunkModel(model=model)

        def embed(rows: torch.Tensor | None, name: str) -> torch.Tensor | None:
            return None if rows is None else pooled_features(net, rows, device=device, progress=progress,
                                                             desc=f"pooled features ({name})")

        splits = {"train": self.train, "val": self.val, "test": self.test}
        plain = {k: embed(v, k) for k, v in splits.items()}
        emb = replace(self, **plain, pooled=True, embedded=None)
        if not mirrored:
            return replace(self, embedded=emb)
        # each view's embedding beside its horizontally flipped map's (N, V, D, 1, 2): torch.flip(x, [3]) swaps them
        pairs = {k: None if v is None else torch.stack([v, embed(torch.flip(splits[k], [-1]), f"{k}, mirrored")],
                                                       dim=-1).unsqueeze(-2) for k, v in plain.items()}
        return replace(self, embedded=emb, embedded_mirrored=replace(emb, **pairs, mirrored=True))

    @property
    def _event_dims(self) -> int:
        """Dimensions of one view of a row: an embedding (D,), a mirrored pair (D, 1, 2) or maps (C, h, w)."""
        return 1 if self.pooled and not self.mirrored else 3

    @property
    def train_transform(self) -> PickView | None:
        """Per-sample transform of training inputs: a random cached view (maps, embeddings), none (images)."""
        return PickView(random=True, event_dims=self._event_dims) if self.cached else None

    @property
    def eval_transform(self) -> PickView | None:
        """Per-sample transform of test inputs: view 0 (maps, embeddings), none (images)."""
        return PickView(random=False, event_dims=self._event_dims) if self.cached else None

    @property
    def test_view(self) -> torch.Tensor:
        """Test inputs as a benchmark stream holds them (maps keep a view axis of length 1)."""
        return self.test[:, :1] if self.cached else self.test

    def one_view(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (rows of one of these splits) as a model takes it in a batch: view 0 of maps, else as is."""
        return x[:, 0] if self.cached else x

    @property
    def test_x(self) -> torch.Tensor:
        """Test inputs ready for prediction (view 0 of maps)."""
        return self.one_view(self.test)


def make_inputs(cfg: Any, model: nn.Module, splits: Any, *, seed: int, progress: bool = True) -> Inputs:
    """Float images of each split, or (``cfg.cache_trunk``) the maps of ``model``'s trunk, computed once.

    Training maps hold ``cfg.continual.augment_views`` augmented views besides the plain one.
    """
    if not cfg.cache_trunk:
        return Inputs.of_images(train=splits.train, val=splits.val, test=splits.test)
    views = cfg.continual.augment_views
    train = trunk_maps(model, splits.train.images, views=views, augment=make_augment(cfg.augment) if views else None,
                       seed=seed, device=cfg.device, progress=progress, desc="trunk maps (train)")
    val, test = (trunk_maps(model, part.images, views=0, seed=seed, device=cfg.device, progress=progress,
                            desc=f"trunk maps ({name})") for part, name in ((splits.val, "val"), (splits.test, "test")))
    return Inputs(train=train, val=val, test=test, cached=True)
