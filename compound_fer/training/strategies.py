"""The paper's method, KD + PSMR, and its two ablations as Avalanche strategies, registered by name.

``KDPSMR`` is a plain ``SupervisedTemplate`` with two plugins: :class:`DistillationPlugin` (the loss)
and :class:`PSMRPlugin` (the data of each step). ``KDOnly`` drops the replay (each step trains on the
new class only, distilling from the basic model); ``PSMROnly`` drops the distillation.
Defaults are the reference's: T = 3, gamma0 = 0.1, zero-padded basic teacher, memory 30% of the
training images in ``grow`` mode, Adam 1e-5, batch 16.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Mapping, Sequence

import torch
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field, field_validator
from torch import nn
from torch.nn import CrossEntropyLoss

from compound_fer.errors import ConfigError
from compound_fer.memory import MemoryBudget, per_class_quota, resolve_memory
from compound_fer.training.distillation import DistillationPlugin
from compound_fer.training.entry import KDOptions, MethodOptions, StrategyArgs, register, validate_options
from compound_fer.training.head_check import HeadSizeCheck
from compound_fer.training.optim import make_optimizer
from compound_fer.training.predictive_sorting import DEFAULT_MEMORY_FRACTION, Mode, Pick, PSMRPlugin, Score
from compound_fer.training.template import template_kwargs


class CommonOptions(MethodOptions):
    """Options of the paper's strategy and its ablations."""

    basic_lr: float | None = Field(None, gt=0.0, description="learning rate while training experience 0 (default lr)")
    eval_every: int = Field(-1, description="Avalanche periodic evaluation (-1: none)")


class PSMROptions(MethodOptions):
    """Predictive Sorting Memory Replay. ``memory_mode`` inherits ``continual.memory_mode``; the memory is
    decided once, by :meth:`with_memory` (the run's plan calls it; the builder only for options no plan
    resolved)."""

    inherits: ClassVar[Mapping[str, str]] = {"memory_mode": "continual.memory_mode"}
    quota: int | None = Field(None, ge=1, description="images kept per class (default: the run's memory_fraction "
                              "x train images // classes)")
    memory_fraction: float | None = Field(None, description="per-class memory as a share of the training images "
                                          "(instead of quota and of continual.memory_fraction)")
    memory_mode: Mode = Field("grow", description="grow or limit (continual.memory_mode)")
    score: Score = Field("logit", description="how PSMR ranks a class's images for the memory (logit)")
    selection: Pick = Field("top", description="which ranks the memory keeps: top (the paper's, most confident), "
                            "spread (easy to hard) or random")
    total_train_images: int | None = Field(None, ge=1, description="training images the memory_fraction refers to")
    max_size: int | None = Field(None, ge=1, description="memory limit in images in limit mode (default mem_size)")

    @field_validator("memory_fraction")
    @classmethod
    def _a_share(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 1:  # the bound of continual.memory_fraction in a config
            raise ValueError(f"memory_fraction must be between 0 and 1 (a share of the training images), got {v}")
        return v

    def with_memory(self, run: MemoryBudget, *, n_train_images: int | None,
                    n_classes_total: int | None) -> tuple["PSMROptions", MemoryBudget]:
        """The options with the memory they use, and that memory: ``quota``, else ``memory_fraction`` of
        ``total_train_images`` (default ``n_train_images``), else the run's budget ``run``
        (:func:`~compound_fer.memory.resolve_memory`, the one rule); in limit mode the total ``max_size``
        (default ``run.total``). A fraction whose images are unknown is left to the first experience."""
        used = resolve_memory(quota=self.quota, memory_fraction=self.memory_fraction,
                              n_train_images=self.total_train_images or n_train_images,
                              n_classes_total=n_classes_total)
        if used is None and self.memory_fraction is None:
            used = run
        update: dict[str, Any] = {"quota": used.quota} if used is not None and self.quota is None else {}
        if self.memory_mode == "limit":
            size = self.max_size or max(1, run.total)
            if self.max_size is None:
                update["max_size"] = size
            used = MemoryBudget(size, per_class_quota(size, n_classes_total or 1))
        return (self.model_copy(update=update) if update else self), used or run


class KDPSMROptions(CommonOptions, KDOptions, PSMROptions):
    """KD + PSMR: the distillation options (``continual.kd``), PSMR's and the common ones."""


class KDOnlyOptions(CommonOptions, KDOptions):
    """KD without replay."""


class PSMROnlyOptions(CommonOptions, PSMROptions):
    """PSMR without distillation."""


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """How a KDPSMR template loops (the reference's defaults: Adam 1e-5, batch 16, one epoch): learning rate,
    epochs, batch sizes, device, and the seed of PSMR's draws."""

    lr: float = 1e-5
    train_epochs: int = 1
    train_mb_size: int = 16
    eval_mb_size: int = 128
    device: str | torch.device = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eval_mb_size is None or self.eval_mb_size < 1:
            raise ConfigError(f"eval_mb_size must be >= 1, got {self.eval_mb_size}")

    @classmethod
    def of_args(cls, args: StrategyArgs) -> "Schedule":
        """The schedule of a registry build (its :class:`StrategyArgs`)."""
        return cls(lr=args.lr, train_epochs=args.train_epochs, train_mb_size=args.train_mb_size,
                   eval_mb_size=args.eval_mb_size, device=args.device, seed=args.seed)


_SCHEDULE_KEYS = frozenset(f.name for f in fields(Schedule))


class _FirstExperienceLR(SupervisedPlugin):
    """Use ``basic_lr`` while training the first experience (the basic model) and ``lr`` afterwards."""

    def __init__(self, *, basic_lr: float, lr: float) -> None:
        super().__init__()
        self.basic_lr, self.lr, self.seen = basic_lr, lr, 0

    def before_training_epoch(self, strategy, **kwargs):  # noqa: ANN001 - after make_optimizer
        for group in strategy.optimizer.param_groups:
            group["lr"] = self.basic_lr if self.seen == 0 else self.lr

    def after_training_exp(self, strategy, **kwargs):  # noqa: ANN001
        self.seen += 1


def grouped_options(options: MethodOptions | Mapping[str, Any] | None, schedule: Schedule | None,
                    flat: Mapping[str, Any]) -> tuple[KDPSMROptions, Schedule]:
    """``options`` and ``schedule`` with the flat keywords of the earlier KDPSMR signature (``lr=``,
    ``temperature=``, ``quota=``, ...) applied over them; a keyword of neither is a TypeError."""
    unknown = sorted(set(flat) - _SCHEDULE_KEYS - set(KDPSMROptions.model_fields))
    if unknown:
        raise TypeError(f"KDPSMR got unexpected keyword argument(s): {', '.join(unknown)}")
    schedule = replace(schedule or Schedule(), **{k: v for k, v in flat.items() if k in _SCHEDULE_KEYS})
    given = {k: v for k, v in flat.items() if k in KDPSMROptions.model_fields}
    if not given:
        return validate_options(KDPSMROptions, options, where="KDPSMR options"), schedule
    if isinstance(options, MethodOptions):
        options = {k: getattr(options, k) for k in options.model_fields_set}
    return validate_options(KDPSMROptions, {**(options or {}), **given}, where="KDPSMR options"), schedule


class KDPSMR(SupervisedTemplate):
    """Knowledge distillation from the basic model + Predictive Sorting Memory Replay (the paper's method).

    The first experience is the basic step (no KD, all its data); from the second on, each step trains
    on the PSMR memory plus ``m`` random images of the new class, with the KD loss. Set ``teacher`` to
    distil from an already-trained basic model from the first experience on.

    ``options`` (:class:`KDPSMROptions`: KD, PSMR, ``basic_lr``, ``eval_every``) and ``schedule``
    (:class:`Schedule`) group the settings; the flat keywords of earlier versions (``lr=1e-5,
    temperature=3.0, memory_fraction=0.3, ...``) still work and override them.
    """

    use_kd = True
    use_psmr = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _flat_keywords_checked_here(cls)

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 criterion: nn.Module | None = None, plugins: Sequence[SupervisedPlugin] | None = None,
                 evaluator: Any = None, options: MethodOptions | Mapping[str, Any] | None = None,
                 schedule: Schedule | None = None, num_classes_total: int | None = None, **flat: Any) -> None:
        o, schedule = grouped_options(options, schedule, flat)
        self.options, self.schedule = o, schedule
        own: list[SupervisedPlugin] = []
        self.kd: DistillationPlugin | None = None
        self.psmr: PSMRPlugin | None = None
        if self.use_kd:
            self.kd = DistillationPlugin(teacher=o.teacher, temperature=o.temperature, gamma0=o.gamma0,
                                         teacher_padding=o.teacher_padding, teacher_mode=o.teacher_mode,
                                         feature_weight=o.feature_weight)
            own.append(self.kd)
        if self.use_psmr:
            fraction = DEFAULT_MEMORY_FRACTION if o.memory_fraction is None else o.memory_fraction
            self.psmr = PSMRPlugin(quota=o.quota, memory_fraction=fraction, num_classes_total=num_classes_total,
                                   total_train_images=o.total_train_images, mode=o.memory_mode,
                                   max_size=o.max_size, score=o.score, selection=o.selection, seed=schedule.seed)
            own.append(self.psmr)
        if o.basic_lr is not None:
            own.append(_FirstExperienceLR(basic_lr=o.basic_lr, lr=schedule.lr))
        own.append(HeadSizeCheck())  # a head that does not grow: a clear error, not IndexError in the loss
        if optimizer is None:
            optimizer = make_optimizer(model.parameters(), name="adam", lr=schedule.lr)
        kwargs: dict[str, Any] = {}
        if evaluator is not None:
            kwargs["evaluator"] = evaluator
        super().__init__(
            model=model, optimizer=optimizer, criterion=criterion or CrossEntropyLoss(),
            train_mb_size=schedule.train_mb_size, train_epochs=schedule.train_epochs,
            eval_mb_size=schedule.eval_mb_size, device=schedule.device, plugins=own + list(plugins or []),
            eval_every=o.eval_every, **kwargs,
        )


def _flat_keywords_checked_here(cls: type) -> None:
    """Avalanche wraps each template's ``__init__`` to refuse keywords no signature of its classes names; the
    flat keywords of KDPSMR's earlier signature are checked by :func:`grouped_options` instead (TypeError)."""
    init = cls.__dict__.get("__init__")
    if init is not None and hasattr(init, "__wrapped__"):
        cls.__init__ = init.__wrapped__


_flat_keywords_checked_here(KDPSMR)


class KDOnly(KDPSMR):
    """Ablation: distillation from the basic model, no replay (each step sees the new class only)."""

    use_psmr = False


class PSMROnly(KDPSMR):
    """Ablation: Predictive Sorting Memory Replay, no distillation."""

    use_kd = False


# --------------------------------------------------------------------------- registry builders


def _build(cls: type[KDPSMR], options: type[MethodOptions], *, model: nn.Module, args: StrategyArgs, evaluator: Any,
           plugins: Sequence[Any]) -> KDPSMR:
    """``cls`` from StrategyArgs and its options, taken as given; options no plan resolved (the Python API)
    get their memory from the args' budget by the same rule (:meth:`PSMROptions.with_memory`)."""
    o = args.options_as(options)
    if cls.use_psmr and (o.quota is None or (o.memory_mode == "limit" and o.max_size is None)):
        o, _ = o.with_memory(MemoryBudget(args.mem_size, args.quota), n_train_images=None,
                             n_classes_total=args.num_classes_total)
    kw = template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins, criterion=False)
    return cls(model=model, optimizer=kw["optimizer"], evaluator=kw["evaluator"], plugins=kw["plugins"], options=o,
               schedule=Schedule.of_args(args), num_classes_total=args.num_classes_total)


@register("kdpsmr", summary="The paper: KD from the frozen basic model + Predictive Sorting Memory Replay",
          uses_memory=True, caps_new_class=True, options=KDPSMROptions)
def build_kdpsmr(*, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> KDPSMR:
    """Registry builder for :class:`KDPSMR` (:class:`KDPSMROptions`)."""
    return _build(KDPSMR, KDPSMROptions, model=model, args=args, evaluator=evaluator, plugins=plugins)


@register("kd", summary="Ablation: KD from the frozen basic model, no replay", uses_memory=False,
          options=KDOnlyOptions)
def build_kd_only(
    *, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()
) -> KDOnly:
    """Registry builder for :class:`KDOnly`."""
    return _build(KDOnly, KDOnlyOptions, model=model, args=args, evaluator=evaluator, plugins=plugins)


@register("psmr", summary="Ablation: Predictive Sorting Memory Replay, no KD", uses_memory=True,
          caps_new_class=True, options=PSMROnlyOptions)
def build_psmr_only(
    *, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()
) -> PSMROnly:
    """Registry builder for :class:`PSMROnly`."""
    return _build(PSMROnly, PSMROnlyOptions, model=model, args=args, evaluator=evaluator, plugins=plugins)


__all__ = ["CommonOptions", "KDOnly", "KDOnlyOptions", "KDPSMR", "KDPSMROptions", "PSMROnly", "PSMROnlyOptions",
           "PSMROptions", "build_kd_only", "build_kdpsmr", "build_psmr_only"]
