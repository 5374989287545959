"""A registry of continual strategies by name, and one factory for all of them.

Every method (the paper's, its ablations, baselines, related systems) registers a builder with
:func:`~compound_fer.training.entry.register`, declaring its options model, so the benchmark harness and the
CLI treat them alike: same backbone, memory budget and schedule. This module imports the built-in
method modules; they import only :mod:`compound_fer.training.entry` and the shared training helpers.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, Sequence

from compound_fer.errors import ConfigError
from compound_fer.training import baselines, omni, pathnet, prototypes, purified, strategies  # noqa: F401 - fill it
from compound_fer.training.entry import (
    Builder,
    Entry,
    MethodOptions,
    StrategyArgs,
    register,
    registered,
    validate_options,
)

__all__ = ["Builder", "Entry", "StrategyArgs", "available", "entry_of", "make_strategy", "register",
           "validate_options"]

_ARG_FIELDS = frozenset(f.name for f in fields(StrategyArgs)) - {"options"}


def available() -> dict[str, Entry]:
    """All registered strategies, by name."""
    return registered()


def entry_of(name: str, *, where: str = "method") -> Entry:
    """The registered method ``name``; a ConfigError naming ``where`` and the registered methods otherwise."""
    entries = available()
    entry = entries.get(str(name).lower())
    if entry is None:
        raise ConfigError(f"{where}: unknown method {name!r}; available: {', '.join(entries)}")
    return entry


def make_strategy(
    name: str,
    *,
    model: Any,
    evaluator: Any = None,
    plugins: Sequence[Any] = (),
    options: MethodOptions | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Build the strategy registered as ``name``. ``kwargs`` are :class:`StrategyArgs` fields or options of
    the method (``options`` gives them as one model or mapping; ``extra`` is the same mapping's old name);
    an unknown or mistyped option is a ConfigError naming the method and the key."""
    entry = entry_of(name)
    given = dict(kwargs.pop("extra", None) or {})
    if isinstance(options, MethodOptions):
        given = {**{k: getattr(options, k) for k in options.model_fields_set}, **given}
    else:
        given.update(options or {})
    given.update({k: v for k, v in kwargs.items() if k not in _ARG_FIELDS})
    opts = entry.validate(given, where=f"method {entry.name!r}")
    args = StrategyArgs(**{k: v for k, v in kwargs.items() if k in _ARG_FIELDS}, options=opts)
    return entry.builder(model=model, args=args, evaluator=evaluator, plugins=list(plugins))
