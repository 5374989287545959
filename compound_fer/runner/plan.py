"""One resolved, typed plan per run: the config with every override applied, the methods with their typed
options, the memory budget rule, checked once before any data is made.

The command line (and :func:`~compound_fer.runner.protocol.run_protocol`'s arguments) only turn into
overrides; :func:`resolve_plan` merges them once, checks them once, and the runner and the strategies take
the plan's values as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.memory import MemoryBudget, memory_budget
from compound_fer.overrides import deep_merge, run_overrides
from compound_fer.runner.checks import MissingTestClasses, check_plan, check_test_classes
from compound_fer.training.entry import Entry, KDOptions, MethodOptions, OptionsT, validate_options
from compound_fer.training.registry import entry_of

__all__ = ["MethodPlan", "MissingTestClasses", "ResolvedMethod", "RunPlan", "check_test_classes", "config_options",
           "effective_config", "resolve_plan", "run_overrides"]


@dataclass(frozen=True)
class MethodPlan:
    """A registered method and its validated options (the config keys its options model declares it inherits,
    e.g. ``continual.kd`` and ``continual.memory_mode``, then ``continual.method_options.<name>``)."""

    name: str
    entry: Entry
    options: MethodOptions


@dataclass(frozen=True)
class ResolvedMethod:
    """A method's options as it runs, its memory decided, and that memory (what its row records)."""

    options: MethodOptions
    memory: MemoryBudget


@dataclass(frozen=True)
class RunPlan:
    """Everything a run is: the effective config (what ``config.yaml`` records) and its resolved methods."""

    config: ProtocolConfig
    methods: tuple[MethodPlan, ...]

    @property
    def mode(self) -> str:
        return self.config.evaluation.mode

    @property
    def device(self) -> str:
        return self.config.device

    def method(self, name: str) -> MethodPlan:
        """The plan of the method ``name`` (one of the run's, or any registered one)."""
        for m in self.methods:
            if m.name == name:
                return m
        return resolve_method(self.config, name)

    def memory(self, n_train_images: int, n_classes_total: int) -> MemoryBudget:
        """The run's replay budget M and per-class quota m (``continual.memory_fraction``) for these training
        images and classes; each method's own is :meth:`resolve`."""
        return memory_budget(memory_fraction=self.config.continual.memory_fraction, n_train_images=n_train_images,
                             n_classes_total=n_classes_total)

    def stream_memory(self, n_train_images: int) -> MemoryBudget:
        """:meth:`memory` over every class of the protocol (basic and compound): the few-shot phase's and the
        episodes' memory of basic faces."""
        n_basic = len(taxonomy.basic_names(include_neutral=self.config.data.include_neutral))
        return self.memory(n_train_images, n_basic + len(taxonomy.compound_names()))

    def resolve(self, method: MethodPlan, *, n_train_images: int, n_classes_total: int) -> ResolvedMethod:
        """``method``'s full options for a run of these training images and classes, memory included (its own
        ``quota`` or ``memory_fraction`` where its options have them, else the run's budget): the builder takes
        them as given and the row records this memory."""
        options, used = method.options.with_memory(self.memory(n_train_images, n_classes_total),
                                                   n_train_images=n_train_images, n_classes_total=n_classes_total)
        return ResolvedMethod(options, used)


def resolve_method(cfg: ProtocolConfig, name: str) -> MethodPlan:
    """The method ``name`` with its options validated (ConfigError naming the method and the key)."""
    entry = entry_of(name, where="continual.methods")
    values = {**inherited(cfg, entry.options_type), **cfg.continual.method_options.get(entry.name, {})}
    return MethodPlan(entry.name, entry, entry.validate(values, where=f"continual.method_options.{entry.name}"))


def inherited(cfg: ProtocolConfig, options_type: type[MethodOptions]) -> dict[str, Any]:
    """The values ``options_type`` declares it inherits from the config (:meth:`MethodOptions.config_keys`)."""
    out = {}
    for option, key in options_type.config_keys().items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[option] = value
    return out


def config_options(cfg: ProtocolConfig, options_type: type[OptionsT] = KDOptions) -> OptionsT:
    """``options_type`` from the config alone, by the same declared inheritance (e.g. the few-shot phase's
    :class:`KDOptions`, all of ``continual.kd``)."""
    return validate_options(options_type, inherited(cfg, options_type), where=options_type.__name__)


def effective_config(cfg: ProtocolConfig, overrides: Mapping[str, Any] | None = None, **arguments: Any,
                     ) -> ProtocolConfig:
    """``cfg`` with ``overrides`` and the run ``arguments`` (:func:`run_overrides`) merged once, its methods and
    their options checked: the config that runs and that ``config.yaml`` records."""
    over = deep_merge(overrides or {}, run_overrides(**arguments))
    out = cfg.with_overrides(**over) if over else cfg
    for name in (*out.continual.methods, *out.continual.method_options):
        resolve_method(out, name)
    return out


def resolve_plan(cfg: ProtocolConfig, overrides: Mapping[str, Any] | None = None, **arguments: Any) -> RunPlan:
    """The plan of a run: :func:`effective_config`, then every check that needs no data loaded (the external
    test folder's mode, place and classes; the checks of the loaded data are :mod:`~compound_fer.runner.checks`)."""
    cfg = effective_config(cfg, overrides, **arguments)
    check_plan(cfg)
    return RunPlan(cfg, tuple(resolve_method(cfg, m) for m in cfg.continual.methods))
