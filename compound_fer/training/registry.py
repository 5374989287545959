"""A registry of continual strategies by name, and one factory for all of them.

Every method (the paper's, its ablations, baselines, related systems) registers a builder here, so the
benchmark harness and the CLI treat them alike: same backbone, memory budget and schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

from compound_fer.errors import ConfigError


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


_REGISTRY: dict[str, Entry] = {}


def register(name: str, *, summary: str, uses_memory: bool = False, caps_new_class: bool = False,
             needs_subjects: bool = False) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (lower-case, unique)."""

    def deco(builder: Builder) -> Builder:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key].builder is not builder:
            raise ValueError(f"strategy {key!r} registered twice")
        _REGISTRY[key] = Entry(key, builder, summary, uses_memory, caps_new_class, needs_subjects)
        return builder

    return deco


def _load_builtin() -> None:
    # Importing the method modules fills the registry; each is one file per method.
    import importlib

    for mod in (
        "compound_fer.training.strategies",
        "compound_fer.training.baselines",
        "compound_fer.training.purified",
        "compound_fer.training.omni",
        "compound_fer.training.pathnet",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def available() -> dict[str, Entry]:
    """All registered strategies, by name."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def make_strategy(
    name: str,
    *,
    model: Any,
    evaluator: Any = None,
    plugins: Sequence[Any] = (),
    **kwargs: Any,
) -> Any:
    """Build the strategy registered as ``name``; kwargs are StrategyArgs fields, the rest go to ``extra``."""
    entries = available()
    key = name.lower()
    if key not in entries:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(entries)}")
    known = {f.name for f in fields(StrategyArgs)}
    extra = dict(kwargs.pop("extra", {}) or {})
    extra.update({k: v for k, v in kwargs.items() if k not in known})
    args = StrategyArgs(**{k: v for k, v in kwargs.items() if k in known}, extra=extra)
    return entries[key].builder(model=model, args=args, evaluator=evaluator, plugins=list(plugins))
