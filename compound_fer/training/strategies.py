"""The paper's method, KD + PSMR, and its two ablations as Avalanche strategies, registered by name.

``KDPSMR`` is a plain ``SupervisedTemplate`` with two plugins: :class:`DistillationPlugin` (the loss)
and :class:`PSMRPlugin` (the data of each step). ``KDOnly`` drops the replay (each step trains on the
new class only, distilling from the basic model); ``PSMROnly`` drops the distillation.
Defaults are the reference's: T = 3, gamma0 = 0.1, zero-padded basic teacher, memory 30% of the
training images in ``grow`` mode, Adam 1e-5, batch 16.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn
from torch.nn import CrossEntropyLoss

from compound_fer.errors import ConfigError
from compound_fer.training.distillation import DistillationPlugin, Padding, TeacherMode
from compound_fer.training.entry import KDOptions, MethodOptions, StrategyArgs, register
from compound_fer.training.head_check import HeadSizeCheck
from compound_fer.training.optim import make_optimizer
from compound_fer.training.predictive_sorting import DEFAULT_MEMORY_FRACTION, Mode, Pick, PSMRPlugin, Score
from compound_fer.training.template import template_kwargs


class CommonOptions(MethodOptions):
    """Options of the paper's strategy and its ablations."""

    basic_lr: float | None = Field(None, gt=0.0, description="learning rate while training experience 0 (default lr)")
    eval_every: int = Field(-1, description="Avalanche periodic evaluation (-1: none)")


class PSMROptions(MethodOptions):
    """Predictive Sorting Memory Replay (the runner passes ``quota`` and ``continual.memory_mode``)."""

    quota: int | None = Field(None, ge=1, description="images kept per class (default mem_size // classes; the "
                              "runner passes memory_fraction x train images // classes)")
    memory_fraction: float | None = Field(None, ge=0.0, le=1.0, description="per-class memory as a share of the "
                                          "training images (instead of quota)")
    memory_mode: Mode = Field("grow", description="grow or limit (continual.memory_mode)")
    score: Score = Field("logit", description="how PSMR ranks a class's images for the memory (logit)")
    selection: Pick = Field("top", description="which ranks the memory keeps: top (the paper's, most confident), "
                            "spread (easy to hard) or random")
    total_train_images: int | None = Field(None, ge=1, description="training images the memory_fraction refers to")
    max_size: int | None = Field(None, ge=1, description="memory limit in images in limit mode (default mem_size)")


class KDPSMROptions(CommonOptions, KDOptions, PSMROptions):
    """KD + PSMR: the distillation options (``continual.kd``), PSMR's and the common ones."""


class KDOnlyOptions(CommonOptions, KDOptions):
    """KD without replay."""


class PSMROnlyOptions(CommonOptions, PSMROptions):
    """PSMR without distillation."""


_KD = KDOptions()


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
        eval_every: int = CommonOptions().eval_every,
        temperature: float = _KD.temperature,
        gamma0: float = _KD.gamma0,
        teacher: nn.Module | None = None,
        teacher_padding: Padding = _KD.teacher_padding,
        teacher_mode: TeacherMode = _KD.teacher_mode,
        feature_weight: float = _KD.feature_weight,
        quota: int | None = None,
        memory_fraction: float = DEFAULT_MEMORY_FRACTION,
        num_classes_total: int | None = None,
        total_train_images: int | None = None,
        memory_mode: Mode = "grow",
        max_size: int | None = None,
        score: Score = "logit",
        selection: Pick = "top",
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
                                   mode=memory_mode, max_size=max_size, score=score,
                                   selection=selection, seed=seed)
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


def _build(cls: type[KDPSMR], options: type[MethodOptions], *, model: nn.Module, args: StrategyArgs, evaluator: Any,
           plugins: Sequence[Any]) -> KDPSMR:
    """``cls`` from StrategyArgs and its options: the quota defaults to the args' per-class share of mem_size,
    the limit-mode memory to mem_size."""
    o = args.options_as(options)
    opts = {k: getattr(o, k) for k in options.model_fields if getattr(o, k) is not None}  # not a subclass's fields
    if cls.use_psmr:
        if o.quota is None and o.memory_fraction is None:
            opts["quota"] = args.quota
        if o.memory_mode == "limit" and o.max_size is None:
            opts["max_size"] = max(1, args.mem_size)
        opts["num_classes_total"] = args.num_classes_total
    return cls(model=model, lr=args.lr, seed=args.seed, **opts,
               **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins, criterion=False))


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
