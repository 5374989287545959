"""The backbone registry: one :class:`BackboneSpec` per name, one file per backbone in this package.

Each module here defines ``SPECS`` (plain data and a builder that imports torch only when it is called), so
:mod:`compound_fer.config` checks ``model.backbone`` against :func:`names` without importing torch, and
:func:`compound_fer.models.build_model` builds any of them. A new backbone is one module here plus its test;
the docs table in docs/configuration.md is generated from :func:`specs` (docs/hooks/registry_tables.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

from compound_fer.errors import ConfigError

__all__ = ["BackboneSpec", "Parts", "names", "registered", "spec_of", "specs"]


class Parts(NamedTuple):
    """What a builder returns: the trunk's and the tail's modules in order (build_model adds the ImageNet
    normalisation before the trunk and the global pooling after the tail) and the tail's output channels."""

    trunk: Sequence[Any]
    tail: Sequence[Any]
    feature_dim: int


@dataclass(frozen=True, kw_only=True)
class BackboneSpec:
    """One backbone: ``build(pretrained)`` -> :class:`Parts`; ``weights`` says where its ImageNet weights
    come from offline (None: it has none); ``default_size`` is the crop side build_model uses when given
    none; ``target_layer`` the Grad-CAM layer, a dotted name inside the FERModel; ``split`` a line on
    what the trunk (frozen in continual steps) and the tail hold."""

    name: str
    build: Callable[[bool], Parts]
    weights: str | None
    default_size: int
    target_layer: str
    split: str

    @property
    def has_weights(self) -> bool:
        """Whether ``pretrained=True`` can load ImageNet weights for it (else it always starts random)."""
        return self.weights is not None


@lru_cache(maxsize=1)
def _registry() -> dict[str, BackboneSpec]:
    out: dict[str, BackboneSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        for spec in importlib.import_module(f"{__name__}.{info.name}").SPECS:
            if spec.name in out:
                raise ConfigError(f"backbone {spec.name!r} is registered twice ({info.name})")
            out[spec.name] = spec
    return out


def specs() -> tuple[BackboneSpec, ...]:
    """Every registered backbone, by name."""
    return tuple(sorted(_registry().values(), key=lambda s: s.name))


def names() -> tuple[str, ...]:
    """The registered backbone names (what ``model.backbone`` accepts)."""
    return tuple(s.name for s in specs())


def spec_of(name: str) -> BackboneSpec:
    """The backbone ``name`` (any case); a ConfigError listing the registered ones otherwise."""
    spec = _registry().get(str(name).lower())
    if spec is None:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(names())}")
    return spec


def registered(name: str) -> str:
    """``name`` if it is a registered backbone (the config's check); a ValueError listing them otherwise."""
    if name not in names():
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(names())}")
    return name
