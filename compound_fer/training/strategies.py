"""The paper's method, KD + PSMR, and its two ablations as Avalanche strategies, registered by name.

``KDPSMR`` is a plain ``SupervisedTemplate`` with two plugins: :class:`DistillationPlugin` (the loss)
and :class:`PSMRPlugin` (the data of each step). ``KDOnly`` drops the replay (each step trains on the
new class only, distilling from the basic model); ``PSMROnly`` drops the distillation.
Defaults are the reference's: T = 3, gamma0 = 0.1, zero-padded basic teacher, memory 30% of the
training images in ``grow`` mode, Adam 1e-5, batch 16.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import CrossEntropyLoss

from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from compound_fer.errors import ConfigError
from compound_fer.training.distillation import DistillationPlugin, Padding, TeacherMode
from compound_fer.training.head_check import HeadSizeCheck
from compound_fer.training.optim import make_optimizer, optimizer_from_args
from compound_fer.training.predictive_sorting import Mode, PSMRPlugin, Score
from compound_fer.training.entry import StrategyArgs, register

log = logging.getLogger(__name__)


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


class KDPSMR(SupervisedTemplate):
    """Knowledge distillation from the basic model + Predictive Sorting Memory Replay (the paper's method).

    The first experience is the basic step (no KD, all its data); from the second on, each step trains
    on the PSMR memory plus ``m`` random images of the new class, with the KD loss. Pass ``teacher`` to
    distil from an already-trained basic model from the first experience on.
    """

    use_kd = True
    use_psmr = True

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-5,
        basic_lr: float | None = None,
        criterion: nn.Module | None = None,
        train_mb_size: int = 16,
        train_epochs: int = 1,
        eval_mb_size: int = 128,
        device: str | torch.device = "cpu",
        plugins: Sequence[SupervisedPlugin] | None = None,
        evaluator: Any = None,
        eval_every: int = -1,
        temperature: float = 3.0,
        gamma0: float = 0.1,
        teacher: nn.Module | None = None,
        teacher_padding: Padding = "zeros",
        teacher_mode: TeacherMode = "basic",
        feature_weight: float = 0.0,
        quota: int | None = None,
        memory_fraction: float = 0.3,
        num_classes_total: int | None = None,
        total_train_images: int | None = None,
        memory_mode: Mode = "grow",
        max_size: int | None = None,
        score: Score = "logit",
        seed: int = 0,
    ) -> None:
        if eval_mb_size is None or eval_mb_size < 1:
            raise ConfigError(f"eval_mb_size must be >= 1, got {eval_mb_size}")
        own: list[SupervisedPlugin] = []
        self.kd: DistillationPlugin | None = None
        self.psmr: PSMRPlugin | None = None
        if self.use_kd:
            self.kd = DistillationPlugin(teacher=teacher, temperature=temperature, gamma0=gamma0,
                                         teacher_padding=teacher_padding, teacher_mode=teacher_mode,
                                         feature_weight=feature_weight)
            own.append(self.kd)
        if self.use_psmr:
            self.psmr = PSMRPlugin(quota=quota, memory_fraction=memory_fraction,
                                   num_classes_total=num_classes_total, total_train_images=total_train_images,
                                   mode=memory_mode, max_size=max_size, score=score, seed=seed)
            own.append(self.psmr)
        if basic_lr is not None:
            own.append(_FirstExperienceLR(basic_lr=basic_lr, lr=lr))
        own.append(HeadSizeCheck())  # a head that does not grow: a clear error, not IndexError in the loss
        if optimizer is None:
            optimizer = make_optimizer(model.parameters(), name="adam", lr=lr)
        kwargs: dict[str, Any] = {}
        if evaluator is not None:
            kwargs["evaluator"] = evaluator
        super().__init__(
            model=model, optimizer=optimizer, criterion=criterion or CrossEntropyLoss(),
            train_mb_size=train_mb_size, train_epochs=train_epochs, eval_mb_size=eval_mb_size,
            device=device, plugins=own + list(plugins or []), eval_every=eval_every, **kwargs,
        )


class KDOnly(KDPSMR):
    """Ablation: distillation from the basic model, no replay (each step sees the new class only)."""

    use_psmr = False


class PSMROnly(KDPSMR):
    """Ablation: Predictive Sorting Memory Replay, no distillation."""

    use_kd = False


# --------------------------------------------------------------------------- registry builders

#: the options each part reads (the runner passes the distillation ones from continual.kd, and memory_mode
#: and quota from continual); ``teacher`` (a model) is an API-only KD option
_KD_OPTIONS = {"temperature": "distillation temperature T (continual.kd.temperature, 3.0)",
               "gamma0": "KD weight at step 0 (continual.kd.gamma0, 0.1)",
               "teacher_padding": "zeros or mask for the teacher's missing classes (continual.kd.teacher_padding)",
               "teacher_mode": "basic (frozen basic model) or previous (continual.kd.teacher_mode)",
               "feature_weight": "weight of the embedding distillation MSE (continual.kd.feature_weight, 0)"}
_PSMR_OPTIONS = {"quota": "images kept per class (the runner passes memory_fraction x train images // classes)",
                 "memory_fraction": "per-class memory as a share of the training images (instead of quota)",
                 "memory_mode": "grow or limit (continual.memory_mode)",
                 "score": "how PSMR ranks a class's images for the memory (logit)",
                 "total_train_images": "training images the memory_fraction refers to",
                 "max_size": "memory limit in images in limit mode (default mem_size)"}
_COMMON_OPTIONS = {"basic_lr": "learning rate while training experience 0 (default lr)",
                   "eval_every": "Avalanche periodic evaluation (-1: none)"}
_KD_KEYS = set(_KD_OPTIONS) | {"teacher"}
_PSMR_KEYS = set(_PSMR_OPTIONS)
_COMMON_KEYS = set(_COMMON_OPTIONS)
KDPSMR_OPTIONS = {**_COMMON_OPTIONS, **_KD_OPTIONS, **_PSMR_OPTIONS}


def _build(cls: type[KDPSMR], *, model: nn.Module, args: StrategyArgs, evaluator: Any,
           plugins: Sequence[Any]) -> KDPSMR:
    keys = _COMMON_KEYS | (_KD_KEYS if cls.use_kd else set()) | (_PSMR_KEYS if cls.use_psmr else set())
    extra = dict(args.extra)
    ignored = sorted(set(extra) - keys)
    if ignored:
        log.debug("%s ignores options %s", cls.__name__, ignored)
    opts = {k: v for k, v in extra.items() if k in keys and v is not None}
    if cls.use_psmr:
        if opts.get("quota") is None and opts.get("memory_fraction") is None:
            opts["quota"] = max(1, args.mem_size // args.num_classes_total)
        if opts.get("memory_mode", "grow") == "limit" and opts.get("max_size") is None:
            opts["max_size"] = max(1, args.mem_size)
        opts["num_classes_total"] = args.num_classes_total
    optimizer = optimizer_from_args(model.parameters(), args)
    return cls(model=model, optimizer=optimizer, lr=args.lr, train_mb_size=args.train_mb_size,
               train_epochs=args.train_epochs, eval_mb_size=args.eval_mb_size, device=args.device,
               plugins=list(plugins), evaluator=evaluator, seed=args.seed, **opts)


@register("kdpsmr", summary="The paper: KD from the frozen basic model + Predictive Sorting Memory Replay",
          uses_memory=True, caps_new_class=True, options=KDPSMR_OPTIONS)
def build_kdpsmr(*, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> KDPSMR:
    """Registry builder for :class:`KDPSMR`; ``args.extra`` may hold any KD/PSMR option."""
    return _build(KDPSMR, model=model, args=args, evaluator=evaluator, plugins=plugins)


@register("kd", summary="Ablation: KD from the frozen basic model, no replay", uses_memory=False,
          options={**_COMMON_OPTIONS, **_KD_OPTIONS})
def build_kd_only(*, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> KDOnly:
    """Registry builder for :class:`KDOnly`."""
    return _build(KDOnly, model=model, args=args, evaluator=evaluator, plugins=plugins)


@register("psmr", summary="Ablation: Predictive Sorting Memory Replay, no KD", uses_memory=True,
          caps_new_class=True, options={**_COMMON_OPTIONS, **_PSMR_OPTIONS})
def build_psmr_only(*, model: nn.Module, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> PSMROnly:
    """Registry builder for :class:`PSMROnly`."""
    return _build(PSMROnly, model=model, args=args, evaluator=evaluator, plugins=plugins)


__all__ = ["KDOnly", "KDPSMR", "PSMROnly", "build_kd_only", "build_kdpsmr", "build_psmr_only"]
