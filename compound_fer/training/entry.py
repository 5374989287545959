"""What a method declares when it registers: its builder, summary, flags and options.

The method modules import only this module, and :mod:`compound_fer.training.registry` imports them, so
registration has no import cycle. Options are what ``continual.method_options.<method>`` may set; each
is declared with a one-line description (default included) where the method is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from compound_fer.errors import ConfigError

__all__ = ["Builder", "Entry", "StrategyArgs", "register", "registered"]


@dataclass(frozen=True, kw_only=True)
class StrategyArgs:
    """Arguments every strategy shares. ``mem_size`` is the total replay budget M (images);
    ``num_classes_total`` the classes of the whole stream, so a per-class quota is M // num_classes_total.
    ``extra`` carries method-specific options (e.g. ``temperature`` for distillation)."""

    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    train_epochs: int = 5
    train_mb_size: int = 16
    eval_mb_size: int = 128
    device: str = "cpu"
    mem_size: int = 200
    num_classes_total: int = 21
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("train_epochs", "train_mb_size", "eval_mb_size", "num_classes_total"):
            if getattr(self, name) < 1:
                raise ConfigError(f"strategy option {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"strategy option lr must be > 0, got {self.lr}")
        if self.mem_size < 0:
            raise ConfigError(f"strategy option mem_size must be >= 0, got {self.mem_size}")


#: builder(model=..., args=StrategyArgs, evaluator=..., plugins=[...]) -> avalanche SupervisedTemplate
Builder = Callable[..., Any]


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Builder
    summary: str
    uses_memory: bool
    #: the method samples the new class's m images itself (PSMR), so the scenario must not cap them first
    caps_new_class: bool = False
    #: the method needs each training sample's subject id (PurifiedLearning): the runner passes
    #: ``extra["subjects"]``, one id tensor per training experience
    needs_subjects: bool = False
    #: option name -> one-line description: the keys ``continual.method_options.<name>`` may set
    options: Mapping[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, *, summary: str, uses_memory: bool = False, caps_new_class: bool = False,
             needs_subjects: bool = False, options: Mapping[str, str] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (lower-case, unique) with the options it reads."""

    def deco(builder: Builder) -> Builder:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key].builder is not builder:
            raise ValueError(f"strategy {key!r} registered twice")
        _REGISTRY[key] = Entry(key, builder, summary, uses_memory, caps_new_class, needs_subjects,
                               dict(options or {}))
        return builder

    return deco


def registered() -> dict[str, Entry]:
    """The methods registered so far (those of the modules imported), by name."""
    return dict(sorted(_REGISTRY.items()))
