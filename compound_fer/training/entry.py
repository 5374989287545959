"""What a method declares when it registers: its builder, summary, flags and typed options.

The method modules import only this module (and the shared training helpers), and
:mod:`compound_fer.training.registry` imports them, so registration has no import cycle. A method's
options are a pydantic model (:class:`MethodOptions`) declared beside its builder: the keys
``continual.method_options.<method>`` and ``make_strategy(name, **options)`` may set, with their types and
defaults written once. The distillation methods compose :class:`KDOptions` (the ``continual.kd`` section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compound_fer.config import KDConfig
from compound_fer.errors import ConfigError
from compound_fer.memory import MemoryBudget, per_class_quota

__all__ = ["Builder", "Entry", "KDOptions", "MethodOptions", "NoOptions", "StrategyArgs", "register", "registered",
           "validate_options"]


class MethodOptions(BaseModel):
    """Base of every method's options: unknown keys refused, values typed, frozen once validated.

    ``inherits`` declares, per options model, which fields take their value from the run's config (option ->
    dotted config key, e.g. ``continual.kd.temperature``) unless ``continual.method_options.<method>`` sets
    them; a model inherits its bases' declarations (:meth:`config_keys`). No field is matched by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    inherits: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def config_keys(cls) -> dict[str, str]:
        """Option -> config key of every field this model (or one of its bases) declares as inherited."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("inherits", {}))
        return {k: v for k, v in out.items() if k in cls.model_fields}

    def with_memory(self, run: MemoryBudget, *, n_train_images: int | None,
                    n_classes_total: int | None) -> tuple["MethodOptions", MemoryBudget]:
        """These options with the memory they use decided, and that memory; a method without memory options
        uses the run's budget ``run`` as it is (PSMR's options decide their quota: ``PSMROptions``)."""
        return self, run


class NoOptions(MethodOptions):
    """A method without options."""


class KDOptions(KDConfig, MethodOptions):
    """Distillation from the basic model (the fields of ``continual.kd``, which they inherit); ``teacher``
    (a model) is API-only."""

    inherits: ClassVar[Mapping[str, str]] = {k: f"continual.kd.{k}" for k in KDConfig.model_fields}
    teacher: Any = Field(None, description="an already-trained teacher model (API only)")


OptionsT = TypeVar("OptionsT", bound=MethodOptions)


def validate_options(cls: type[OptionsT], values: Mapping[str, Any] | MethodOptions | None, *, where: str) -> OptionsT:
    """``values`` as ``cls``: a ConfigError naming ``where`` and the key for an unknown or mistyped option."""
    if isinstance(values, cls):
        return values
    if isinstance(values, MethodOptions):
        values = {k: getattr(values, k) for k in values.model_fields_set}
    values = dict(values or {})
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        valid = ", ".join(sorted(cls.model_fields)) or "none (this method has no options)"
        raise ConfigError(f"{where}: unknown option(s) {', '.join(map(str, unknown))}; valid keys: {valid}")
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        raise ConfigError(f"{where}.{key}: {e['msg']} (got {e.get('input')!r})") from None


@dataclass(frozen=True, kw_only=True)
class StrategyArgs:
    """Arguments every strategy shares. ``mem_size`` is the total replay budget M (images);
    ``num_classes_total`` the classes of the whole stream (``quota``: the per-class share m).
    ``options``: the method's options (its :class:`MethodOptions`, or a mapping validated by
    :meth:`options_as`); ``subjects``: one subject-id tensor per training experience (``needs_subjects``)."""

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
    options: MethodOptions | Mapping[str, Any] | None = None
    subjects: Any = None

    def __post_init__(self) -> None:
        for name in ("train_epochs", "train_mb_size", "eval_mb_size", "num_classes_total"):
            if getattr(self, name) < 1:
                raise ConfigError(f"strategy option {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"strategy option lr must be > 0, got {self.lr}")
        if self.mem_size < 0:
            raise ConfigError(f"strategy option mem_size must be >= 0, got {self.mem_size}")

    @property
    def quota(self) -> int:
        """The per-class memory m of ``mem_size`` over ``num_classes_total`` classes."""
        return per_class_quota(self.mem_size, self.num_classes_total)

    def options_as(self, cls: type[OptionsT]) -> OptionsT:
        """The method's options as ``cls`` (validated when given as a mapping)."""
        return validate_options(cls, self.options, where=f"strategy options ({cls.__name__})")


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
    #: ``StrategyArgs.subjects``, one id tensor per training experience
    needs_subjects: bool = False
    #: the options model: the keys ``continual.method_options.<name>`` may set
    options_type: type[MethodOptions] = NoOptions
    #: the method reads its inputs' spatial layout (omni distils images), so it trains on cached maps even
    #: when the head trains alone (no pooled embeddings)
    needs_maps: bool = False
    #: the method averages each input with its horizontal flip (iCaRL's class means): on pooled embeddings it
    #: gets each view's embedding beside its flipped map's (Inputs.embedded_mirrored)
    flips_inputs: bool = False

    @property
    def options(self) -> dict[str, str]:
        """Option name -> one-line description."""
        return {k: f.description or "" for k, f in self.options_type.model_fields.items()}

    def validate(self, values: Mapping[str, Any] | MethodOptions | None, *, where: str | None = None) -> MethodOptions:
        """``values`` as this method's options; ConfigError naming the method and the key otherwise."""
        return validate_options(self.options_type, values, where=where or f"method {self.name!r}")


_REGISTRY: dict[str, Entry] = {}


def register(name: str, *, summary: str, uses_memory: bool = False, caps_new_class: bool = False,
             needs_subjects: bool = False, options: type[MethodOptions] = NoOptions,
             needs_maps: bool = False, flips_inputs: bool = False) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (lower-case, unique) with its options model."""

    def deco(builder: Builder) -> Builder:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key].builder is not builder:
            raise ValueError(f"strategy {key!r} registered twice")
        _REGISTRY[key] = Entry(key, builder, summary, uses_memory, caps_new_class, needs_subjects, options,
                               needs_maps, flips_inputs)
        return builder

    return deco


def registered() -> dict[str, Entry]:
    """The methods registered so far (those of the modules imported), by name."""
    return dict(sorted(_REGISTRY.items()))
