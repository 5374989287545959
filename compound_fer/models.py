"""Backbones with offline ImageNet weights, split into a frozen *trunk* and a trainable *tail*, and a
head that grows by one output per new class while keeping the old outputs exactly.

The model takes float images in [0, 1] and normalises them itself (ImageNet mean/std is the first
module of the trunk), so training, cached trunk maps and Grad-CAM always see the same preprocessing.

Trunk/tail split (the unit the runner caches: ``maps = model.trunk(images)`` once, then train
``model.forward_from_trunk(maps)``): each backbone's is in its file of :mod:`compound_fer.backbones`, the
registry (name -> builder, weights, default size, Grad-CAM layer) whose table docs/configuration.md shows.

The reference (ResNet50V2 in Keras) freezes BatchNorm throughout; so do we for pretrained backbones:
BatchNorm layers stay in eval mode and get no gradient whatever ``train()`` or ``set_trainable`` say.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from compound_fer import backbones
from compound_fer.errors import ConfigError
from compound_fer.fusion import GeometryEncoder
from compound_fer.pretrained import (  # noqa: F401 - re-exported
    MOBILENET_V2_FILE,
    RESNET_FILES,
    _hub_checkpoint,
    _load_state,
    _mobilenet_v2_weights_path,
)

try:  # Avalanche is a hard dependency, but keep models importable without paying its import cost twice
    from avalanche.models.dynamic_modules import DynamicModule
except Exception:  # pragma: no cover - avalanche missing
    DynamicModule = nn.Module  # type: ignore[misc,assignment]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HeadKind = Literal["linear", "reference"]
Policy = Literal["all", "tail_head", "head"]



class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a module, so it travels with the model."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class GlobalPool(nn.Module):
    """Global average or max pooling to a flat feature vector (the reference uses max)."""

    def __init__(self, kind: Literal["avg", "max"] = "avg") -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ConfigError(f"pool must be 'avg' or 'max', got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "max":
            return torch.amax(x, dim=(2, 3))
        return torch.mean(x, dim=(2, 3))


class GrowingHead(DynamicModule):
    """Classifier whose last Linear grows when an experience brings new classes.

    Old rows are copied exactly; new rows are Glorot-uniform (fan_out = the new number of outputs, as
    Keras initialises the rebuilt Dense layer) with bias 0, as in the reference. ``body`` holds the
    layers before the growing Linear (Dropout for ``"linear"``; Dropout -> 512 sigmoid -> Dropout -> 32
    sigmoid -> Dropout for ``"reference"``). Units added while evaluating on classes never trained are
    *inactive* and output ``mask_value`` (as Avalanche's IncrementalClassifier), so evaluating a stream
    with future classes neither crashes nor lets untrained units steal predictions.
    """

    def __init__(self, *, in_features: int, num_classes: int, kind: HeadKind = "linear",
                 dropout: float = 0.2, mask_value: float = -1000.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if kind == "linear":
            self.body: nn.Module = nn.Dropout(dropout)
            width = in_features
        elif kind == "reference":
            self.body = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(in_features, 512), nn.Sigmoid(),
                nn.Dropout(dropout), nn.Linear(512, 32), nn.Sigmoid(), nn.Dropout(dropout),
            )
            for m in self.body.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            width = 32
        else:
            raise ConfigError(f"head must be 'linear' or 'reference', got {kind!r}")
        self.kind = kind
        self.dropout = dropout
        self.mask_value = mask_value
        self.classifier = nn.Linear(width, num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.register_buffer("active_units", torch.ones(num_classes, dtype=torch.bool))

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @torch.no_grad()
    def grow(self, n_new: int, *, active: bool = True) -> None:
        """Add ``n_new`` outputs; old weights and biases are kept bit for bit."""
        if n_new <= 0:
            return
        old = self.classifier
        n_old, width = old.out_features, old.in_features
        new = nn.Linear(width, n_old + n_new).to(device=old.weight.device, dtype=old.weight.dtype)
        bound = math.sqrt(6.0 / (width + n_old + n_new))
        new.weight.uniform_(-bound, bound)
        new.bias.zero_()
        new.weight[:n_old] = old.weight
        new.bias[:n_old] = old.bias
        new.weight.requires_grad_(old.weight.requires_grad)
        new.bias.requires_grad_(old.bias.requires_grad)
        self.classifier = new
        flags = torch.full((n_new,), bool(active), dtype=torch.bool, device=self.active_units.device)
        self.active_units = torch.cat([self.active_units, flags])

    @torch.no_grad()
    def adaptation(self, experience) -> None:  # noqa: ANN001 - Avalanche experience
        """Avalanche hook: grow to cover the experience's classes; training activates them."""
        classes = [int(c) for c in experience.classes_in_this_experience]
        if not classes:
            return
        need = max(classes) + 1
        if need > self.num_classes:
            self.grow(need - self.num_classes, active=False)
        if self.training:
            self.active_units[classes] = True

    def forward(self, x: Tensor) -> Tensor:
        out = self.classifier(self.body(x))
        if not bool(self.active_units.all()):
            out = out.masked_fill(~self.active_units, self.mask_value)
        return out


class FERModel(nn.Module):
    """Images in [0, 1] -> logits, as ``head(tail(trunk(x)))``.

    ``trunk`` (normalisation + stem .. second-to-last stage) maps images to feature maps and is what
    continual steps freeze and what the runner may cache; ``tail`` (last stage + global pooling) maps
    them to a ``feature_dim`` vector; ``head`` is a :class:`GrowingHead`. ``target_layer`` is the last
    4-D layer, for Grad-CAM.
    """

    def __init__(self, *, trunk: nn.Module, tail: nn.Module, head: GrowingHead, feature_dim: int,
                 target_layer: nn.Module, name: str = "custom", freeze_bn: bool = True,
                 image_size: int = 112) -> None:
        super().__init__()
        self.trunk = trunk
        self.tail = tail
        self.head = head
        self.feature_dim = feature_dim
        self.name = name
        self.freeze_bn = freeze_bn
        self.image_size = image_size
        self._target_layer = [target_layer]  # a list, so it is not registered twice as a submodule
        self.geometry: GeometryEncoder | None = None  # set by attach_geometry: inputs then carry landmarks
        self.policy: Policy = "all"
        self.set_trainable("all")

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def target_layer(self) -> nn.Module:
        return self._target_layer[0]

    def features(self, x: Tensor) -> Tensor:
        """Feature vectors (N, feature_dim) for iCaRL/herding and probes: the pooled CNN embedding, then
        the standardised geometry when the model fuses landmarks (``x`` then packed, see fusion.pack)."""
        return self.features_from_trunk(x, from_images=True)

    def features_from_trunk(self, x: Tensor, *, from_images: bool = False) -> Tensor:
        """Features of cached trunk maps (or of images with ``from_images``), geometry fused if any."""
        g = None
        if self.geometry is not None:
            x, g = self.geometry.split(x)
        z = self.tail(self.trunk(x) if from_images else x)
        return z if g is None else self.geometry.fuse(z, g)

    def forward_from_trunk(self, maps: Tensor) -> Tensor:
        """Logits from cached trunk maps: tail + head only."""
        return self.head(self.features_from_trunk(maps))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def attach_geometry(self, encoder: GeometryEncoder) -> "FERModel":
        """Fuse landmark geometry into the features: a fresh head over [CNN embedding, geometry].

        Inputs must then be packed (:func:`compound_fer.fusion.pack`). The old head is replaced (its
        width changes); train the new one on the basic classes before continual steps.
        """
        old, width = self.head, self.tail_dim
        self.geometry = encoder
        self.feature_dim = width + encoder.dim
        self.head = GrowingHead(in_features=self.feature_dim, num_classes=old.num_classes, kind=old.kind,
                                dropout=old.dropout).to(old.classifier.weight.device)
        return self

    @property
    def tail_dim(self) -> int:
        """Width of the CNN embedding alone (feature_dim less the fused geometry)."""
        return self.feature_dim - (self.geometry.dim if self.geometry is not None else 0)

    def set_trainable(self, policy: Policy) -> "FERModel":
        """Freeze by phase: ``all`` (basic training), ``tail_head`` (continual steps: last stage + head),
        ``head`` (linear probe). BatchNorm stays frozen (when ``freeze_bn``) whatever the policy."""
        if policy not in ("all", "tail_head", "head"):
            raise ConfigError(f"trainable policy must be 'all', 'tail_head' or 'head', got {policy!r}")
        self.policy = policy
        for p in self.trunk.parameters():
            p.requires_grad_(policy == "all")
        for p in self.tail.parameters():
            p.requires_grad_(policy in ("all", "tail_head"))
        for p in self.head.parameters():
            p.requires_grad_(True)
        self._freeze_batchnorm()
        return self

    def _freeze_batchnorm(self) -> None:
        if not self.freeze_bn:
            return
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FERModel":
        super().train(mode)
        self._freeze_batchnorm()
        return self


# --------------------------------------------------------------------------- building


def build_model(name: str = "mobilenet_v2", *, num_classes: int, pretrained: bool = True,
                head: HeadKind = "linear", dropout: float = 0.2, image_size: int | None = None,
                pool: Literal["avg", "max"] = "avg") -> FERModel:
    """Build the registered backbone ``name`` (:mod:`compound_fer.backbones`) with a growing head.

    Missing weights raise :class:`~compound_fer.errors.WeightsError` saying how to get them, never a
    silent random init; ``pretrained=False`` asks for a random init on purpose (a backbone without
    weights, as ``small_cnn``, ignores it). ``image_size`` defaults to the backbone's; ``pool="max"`` is
    the reference's global max pooling.
    """
    spec = backbones.spec_of(name)
    pretrained = pretrained and spec.has_weights
    parts = spec.build(pretrained)
    trunk = nn.Sequential(Normalize(), *parts.trunk)
    tail = nn.Sequential(*parts.tail, GlobalPool(pool))
    growing = GrowingHead(in_features=parts.feature_dim, num_classes=num_classes, kind=head, dropout=dropout)
    return FERModel(trunk=trunk, tail=tail, head=growing, feature_dim=parts.feature_dim,
                     target_layer=_layer(trunk, tail, spec.target_layer), name=spec.name, freeze_bn=pretrained,
                     image_size=image_size or spec.default_size)


def _layer(trunk: nn.Module, tail: nn.Module, dotted: str) -> nn.Module:
    """The module ``dotted`` (``trunk.N...`` or ``tail.N...``) of a model being built."""
    root, _, rest = dotted.partition(".")
    return {"trunk": trunk, "tail": tail}[root].get_submodule(rest)


BACKBONES = backbones.names()


__all__ = ["BACKBONES", "FERModel", "GrowingHead", "GlobalPool", "Normalize", "build_model",
           "IMAGENET_MEAN", "IMAGENET_STD"]
