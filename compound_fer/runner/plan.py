"""One resolved, typed plan per run: the config with every override applied, the methods with their typed
options, the memory budget rule, checked once before any data is made.

The command line (and :func:`~compound_fer.runner.protocol.run_protocol`'s arguments) only turn into
overrides; :func:`resolve_plan` merges them once, checks them once, and the runner and the strategies take
the plan's values as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.data.load import scan
from compound_fer.errors import ConfigError, DataError
from compound_fer.memory import MemoryBudget, memory_budget
from compound_fer.runner.checks import check_paths, needs_of
from compound_fer.training.entry import Entry, MethodOptions
from compound_fer.training.registry import entry_of

__all__ = ["MethodPlan", "MissingTestClasses", "RunPlan", "effective_config", "resolve_plan", "run_overrides"]

#: what ``data.test_path`` needs; the one place this is checked
EXTERNAL_NEEDS_STRICT = ("data.test_path needs evaluation.mode: strict, got {mode!r}: the reference mode reports its "
                         "validation fold and has no test set")


@dataclass(frozen=True)
class MethodPlan:
    """A registered method and its validated options (``continual.kd`` and ``continual.memory_mode`` where its
    options declare them, then ``continual.method_options.<name>``)."""

    name: str
    entry: Entry
    options: MethodOptions

    def with_quota(self, quota: int) -> MethodOptions:
        """The options with the run's per-class quota, unless the method's options set one already."""
        if "quota" in self.entry.options_type.model_fields and getattr(self.options, "quota", None) is None:
            return self.options.model_copy(update={"quota": quota})
        return self.options


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
        """The replay budget M and the per-class quota m of a run with these training images and classes."""
        return memory_budget(memory_fraction=self.config.continual.memory_fraction, n_train_images=n_train_images,
                             n_classes_total=n_classes_total)


def run_overrides(*, data_path: str | None = None, test_path: str | None = None,
                  methods: Sequence[str] | None = None, orders: int | None = None, seeds: Sequence[int] | None = None,
                  fewshot: bool | None = None) -> dict[str, Any]:
    """The config overrides of a run's arguments (``methods=[]``: no continual phase)."""
    over: dict[str, Any] = {}
    if data_path:
        over["data"] = {"source": "path", "path": str(data_path)}
    if test_path:
        over.setdefault("data", {})["test_path"] = str(test_path)
    if methods is not None or orders is not None:  # orders=0 is refused by the config, not ignored
        over["continual"] = {**({"methods": [m.lower() for m in methods]} if methods is not None else {}),
                             **({"orders": orders} if orders is not None else {})}
    if seeds is not None:
        over["seeds"] = [int(s) for s in seeds]
    if fewshot is not None:
        over["fewshot"] = {"enabled": bool(fewshot)}
    return over


def resolve_method(cfg: ProtocolConfig, name: str) -> MethodPlan:
    """The method ``name`` with its options validated (ConfigError naming the method and the key)."""
    entry = entry_of(name, where="continual.methods")
    fields = entry.options_type.model_fields
    given = {**cfg.continual.kd.model_dump(), "memory_mode": cfg.continual.memory_mode}
    values = {**{k: v for k, v in given.items() if k in fields}, **cfg.continual.method_options.get(entry.name, {})}
    return MethodPlan(entry.name, entry, entry.validate(values, where=f"continual.method_options.{entry.name}"))


def effective_config(cfg: ProtocolConfig, overrides: Mapping[str, Any] | None = None, **arguments: Any,
                     ) -> ProtocolConfig:
    """``cfg`` with ``overrides`` and the run ``arguments`` (:func:`run_overrides`) merged once, its methods and
    their options checked: the config that runs and that ``config.yaml`` records."""
    over = _merge(dict(overrides or {}), run_overrides(**arguments))
    out = cfg.with_overrides(**over) if over else cfg
    for name in (*out.continual.methods, *out.continual.method_options):
        resolve_method(out, name)
    return out


def resolve_plan(cfg: ProtocolConfig, overrides: Mapping[str, Any] | None = None, **arguments: Any) -> RunPlan:
    """The plan of a run: :func:`effective_config`, then every check that needs no data loaded (the external
    test folder's mode, place and classes; the checks of the loaded data are :mod:`~compound_fer.runner.checks`)."""
    cfg = effective_config(cfg, overrides, **arguments)
    if cfg.data.test_path:
        if cfg.evaluation.mode != "strict":
            raise ConfigError(EXTERNAL_NEEDS_STRICT.format(mode=cfg.evaluation.mode))
        check_paths(cfg.data.path, cfg.data.test_path)
        check_test_classes(cfg)
    return RunPlan(cfg, tuple(resolve_method(cfg, m) for m in cfg.continual.methods))


class MissingTestClasses(DataError):
    """The external test folder lacks compound classes the run tests; ``present``: those it has."""

    def __init__(self, message: str, *, missing: Sequence[str], present: Sequence[str], needs_all: bool) -> None:
        super().__init__(message)
        self.missing, self.present, self.needs_all = list(missing), list(present), needs_all


def check_test_classes(cfg: ProtocolConfig) -> None:
    """``data.test_path`` holds every class the run tests (:func:`~compound_fer.runner.checks.needs_of`, the one
    rule; checked again on the decoded faces) and shares classes with ``data.path``, from a listing, before any
    image is decoded. A folder holding none of the protocol's classes is left to the loader, which says more."""
    test_path = str(cfg.data.test_path)
    protocol = set(taxonomy.basic_names(include_neutral=cfg.data.include_neutral)) | set(taxonomy.compound_names())
    have = set(scan(test_path).category_counts()) & protocol
    if not have:
        return
    if cfg.data.source == "path" and cfg.data.path:
        train = set(scan(cfg.data.path).category_counts()) & protocol
        if train and not train & have:
            raise DataError(f"data.test_path {test_path}: its classes ({', '.join(sorted(have))}) share none with "
                            f"data.path {cfg.data.path} ({', '.join(sorted(train))}); check the folder names")
    # the compound classes, from the listing; a missing basic class is named by the checks of the decoded faces
    missing = [n for n in needs_of(cfg).test if n not in have and n in taxonomy.compound_names()]
    if not missing:
        return
    present = [n for n in taxonomy.compound_names() if n in have]
    hint = ("the continual phase tests every compound class, so add their images" if cfg.continual.methods
            else "add their images")
    if present:
        hint += ", or run the few-shot phase alone (continual.methods: []) on the classes it has (fewshot.compounds)"
    raise MissingTestClasses(f"data.test_path {test_path}: no image of {len(missing)} class(es) this run "
                             f"tests ({', '.join(missing)}); {hint}", missing=missing, present=present,
                             needs_all=bool(cfg.continual.methods))


def _merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out
