"""A registry of continual strategies by name, and one factory for all of them.

Every method (the paper's, its ablations, baselines, related systems) registers a builder with
:func:`~compound_fer.training.entry.register`, declaring its options, so the benchmark harness and the
CLI treat them alike: same backbone, memory budget and schedule. This module imports the built-in
method modules; they import only :mod:`compound_fer.training.entry`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, Sequence

from compound_fer.errors import ConfigError
from compound_fer.training.entry import Builder, Entry, StrategyArgs, register, registered

__all__ = ["Builder", "Entry", "StrategyArgs", "available", "check_method_options", "make_strategy", "register"]


def _load_builtin() -> None:
    """Import the method modules (one file per family); importing fills the registry."""
    from compound_fer.training import baselines, omni, pathnet, prototypes, purified, strategies  # noqa: F401


def available() -> dict[str, Entry]:
    """All registered strategies, by name."""
    _load_builtin()
    return registered()


def check_method_options(method_options: Mapping[str, Mapping[str, Any]]) -> None:
    """ConfigError for a method that is not registered or an option its method does not declare
    (the message names the method, the key and the valid keys)."""
    entries = available()
    for method, opts in method_options.items():
        entry = entries.get(str(method).lower())
        if entry is None:
            raise ConfigError(f"continual.method_options: unknown method {method!r}; available: {', '.join(entries)}")
        unknown = sorted(set(opts) - set(entry.options))
        if unknown:
            valid = ", ".join(sorted(entry.options)) or "none (this method has no options)"
            raise ConfigError(f"continual.method_options.{method}: unknown option(s) {', '.join(unknown)}; "
                              f"valid keys: {valid}")


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
