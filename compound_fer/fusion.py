"""Landmark geometry fused with the CNN embedding, inside the model.

Avalanche strategies, replay buffers, distillation and iCaRL see one input tensor per face, so a face's
geometry vector rides *with* its pixels (or its cached trunk maps) as extra channel planes: :func:`pack`
appends them, the model's :class:`GeometryEncoder` splits them off again. Every method then works
unchanged, and the image branch (what Grad-CAM explains) still sees only the RGB channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from compound_fer.errors import ConfigError


def extra_planes(n_extra: int, height: int, width: int) -> int:
    """How many (height x width) channel planes hold ``n_extra`` values."""
    return math.ceil(n_extra / (height * width))


def pack(x: Tensor, extra: Tensor) -> Tensor:
    """Append ``extra`` (N, F) to ``x`` (N, C, h, w) or (N, V, C, h, w) as zero-padded channel planes.

    With views (V), every view of a face carries the same vector. The inverse is :meth:`GeometryEncoder.split`.
    """
    if extra.ndim != 2 or len(extra) != len(x):
        raise ValueError(f"pack: extra must be (N, F) with N = {len(x)}, got {tuple(extra.shape)}")
    h, w = x.shape[-2:]
    k = extra_planes(extra.shape[1], h, w)
    flat = torch.zeros(len(x), k * h * w, dtype=x.dtype)
    flat[:, : extra.shape[1]] = extra.to(x.dtype)
    planes = flat.view(len(x), k, h, w)
    if x.ndim == 5:
        planes = planes.unsqueeze(1).expand(-1, x.shape[1], -1, -1, -1)
    elif x.ndim != 4:
        raise ValueError(f"pack: x must be (N, C, h, w) or (N, V, C, h, w), got {tuple(x.shape)}")
    return torch.cat([x, planes], dim=-3)


class GeometryEncoder(nn.Module):
    """Splits packed inputs and standardises the geometry vector (statistics of the basic training faces).

    Missing landmarks (NaN) become 0 after standardising: the training mean, so such a face is classified
    by its pixels alone. ``weight`` scales the geometry against the CNN embedding.
    """

    def __init__(self, *, mean: Tensor, std: Tensor, weight: float = 1.0) -> None:
        super().__init__()
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ConfigError(f"geometry mean/std must be (F,) vectors, got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(1e-6).clone())
        self.weight = float(weight)

    @property
    def dim(self) -> int:
        return int(self.mean.numel())

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pixels or maps, geometry (N, F)) of a packed (N, C + k, h, w) batch."""
        h, w = x.shape[-2:]
        k = extra_planes(self.dim, h, w)
        return x[:, :-k], x[:, -k:].flatten(1)[:, : self.dim]

    def encode(self, g: Tensor) -> Tensor:
        z = (g - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0) * self.weight

    def fuse(self, embedding: Tensor, g: Tensor) -> Tensor:
        return torch.cat([embedding, self.encode(g)], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, weight={self.weight}"


def standardiser(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and std over the finite rows of ``features`` (N, F), for :class:`GeometryEncoder`."""
    finite = torch.isfinite(features).all(dim=1)
    if not bool(finite.any()):
        raise ConfigError("no face has usable landmarks: geometry cannot be fused (set model.geometry: none)")
    rows = features[finite].double()
    return rows.mean(0).float(), rows.std(0, unbiased=False).float()


def sidecar(model: nn.Module) -> dict:
    """The model-file metadata entry of a model that fuses geometry (what ``load_model`` rebuilds), else {}."""
    geo = getattr(model, "geometry", None)
    return {} if geo is None else {"geometry": {"features": geo.dim, "weight": geo.weight}}
