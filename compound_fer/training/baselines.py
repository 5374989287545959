"""Baseline continual strategies, registered by name: naive, lwf, ewc, icarl, replay, herding, gdumb, joint.

Every builder uses the same optimizer, criterion, schedule, batch sizes and device (``template_kwargs``), so
a comparison with the paper's method differs only in the method. Options beyond ``StrategyArgs`` are typed
models declared beside the builder (e.g. ``make_strategy("lwf", model=m, alpha=1.0, temperature=2.0)``);
each builder's docstring lists its constraints.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from avalanche.training.plugins import GDumbPlugin, ReplayPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer, HerdingSelectionStrategy, ParametricBuffer
from avalanche.training.supervised import EWC, Cumulative, GDumb, ICaRL, LwF, Naive
from pydantic import Field
from torch import nn

from compound_fer.errors import ConfigError
from compound_fer.training.entry import MethodOptions, StrategyArgs, register
from compound_fer.training.heads import pregrow_head
from compound_fer.training.template import quiet_evaluator, template_kwargs

__all__ = ["EWCOptions", "FeaturesOf", "LwFOptions", "ModelFeaturesHerding", "quiet_evaluator", "template_kwargs"]


class LwFOptions(MethodOptions):
    """LwF's own options: Li & Hoiem's T = 2; it inherits nothing from ``continual.kd`` (the paper's KD)."""

    alpha: float = Field(1.0, description="distillation weight (1.0)")
    temperature: float = Field(2.0, gt=0.0, description="distillation temperature (2.0, Li & Hoiem's; "
                               "continual.kd does not set it)")


class EWCOptions(MethodOptions):
    ewc_lambda: float = Field(100.0, ge=0.0, description="penalty weight (100.0)")
    ewc_mode: Literal["separate", "online"] = Field("separate", description="separate (default) or online")
    decay_factor: float = Field(0.9, ge=0.0, le=1.0, description="Fisher decay in online mode (0.9)")


class FeaturesOf(nn.Module):
    """``model.features(x)`` as a module: the feature extractor iCaRL and herding need.

    Falls back to ``trunk`` then ``tail`` when the model has no ``features`` method.
    """
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "features") and not (hasattr(model, "trunk") and hasattr(model, "tail")):
            raise ConfigError(
                f"{type(model).__name__} has no features(x) (nor trunk/tail): iCaRL and herding need the "
                "feature extractor of a compound_fer.models.FERModel"
            )
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "features"):
            out = self.model.features(x)
        else:
            out = self.model.tail(self.model.trunk(x))
        return out.flatten(1)


class ModelFeaturesHerding(HerdingSelectionStrategy):
    """Avalanche's herding (iCaRL's greedy mean matching) on ``model.features`` instead of a named layer."""
    def __init__(self, model: nn.Module) -> None:  # noqa: D107 - no super(): no layer hook needed
        self.feature_extractor = FeaturesOf(model)


@register("naive", summary="fine-tuning on each experience alone (lower bound)", uses_memory=False)
def build_naive(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """Plain fine-tuning: catastrophic forgetting is expected; the lower bound."""
    return Naive(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins))


@register("lwf", summary="Learning without Forgetting (Li & Hoiem 2016), Avalanche LwF", uses_memory=False,
          options=LwFOptions)
def build_lwf(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """LwF: distils the previous step's model on the current data (:class:`LwFOptions`).

    Needs a benchmark with task labels (nc_benchmark-based scenarios have them).
    """
    opts = args.options_as(LwFOptions)
    return LwF(
        model=model,
        alpha=opts.alpha,
        temperature=opts.temperature,
        **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins),
    )


@register("ewc", summary="Elastic Weight Consolidation (Kirkpatrick et al. 2017)", uses_memory=False,
          options=EWCOptions)
def build_ewc(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """EWC with one Fisher penalty per experience (:class:`EWCOptions`)."""
    opts = args.options_as(EWCOptions)
    return EWC(
        model=model,
        ewc_lambda=opts.ewc_lambda,
        mode=opts.ewc_mode,
        decay_factor=opts.decay_factor if opts.ewc_mode == "online" else None,
        **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins),
    )


@register("icarl", summary="iCaRL (Rebuffi et al. 2017): herding exemplars, BCE distillation, NCM", uses_memory=True,
          flips_inputs=True)
def build_icarl(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """Avalanche ICaRL on ``model.features`` + ``model.head``; at eval it classifies by nearest class mean.

    Constraints: the benchmark must be built by ``nc_benchmark`` (iCaRL reads ``classes_order`` and
    ``n_classes_per_exp``); ``mem_size`` is the total budget (fixed memory, split evenly over seen classes);
    the strategy's model is a ``TrainEvalModel`` wrapping yours, so evaluate ``strategy.model``; the head is
    grown once to ``num_classes_total`` outputs before training (iCaRL's loss copies the previous model's
    state, which a head that grows between steps breaks), so labels must be < ``num_classes_total``;
    units stay masked until their class is trained. Avalanche's
    NCM keeps a zero mean for classes not seen yet, which can attract far-away samples.
    """
    if not hasattr(model, "head"):
        raise ConfigError(f"iCaRL needs a model with .head and .features(x); {type(model).__name__} has no head")
    pregrow_head(model.head, args.num_classes_total)
    # iCaRL brings its own BCE distillation loss
    kw = template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins, criterion=False)
    strategy = ICaRL(
        feature_extractor=FeaturesOf(model),
        classifier=model.head,
        memory_size=args.mem_size,
        buffer_transform=None,
        fixed_memory=True,
        **kw,
    )
    # Avalanche's iCaRL learns the embedding size from the first training forward pass; when experience 0 is
    # replayed with zero epochs (a shared basic model) there is none, so give it the size up front.
    for p in strategy.plugins:
        if type(p).__name__ == "_ICaRLPlugin" and getattr(model, "feature_dim", None):
            p.embedding_size = int(model.feature_dim)
    return strategy


class _PostAdaptUpdate:
    """Avalanche 0.6's ReplayPlugin and GDumbPlugin call ``storage_policy.update``, deprecated, which warns
    on every step and re-installs a "once" DeprecationWarning filter first (so no warnings filter of ours can
    silence it): run its whole body, ``post_adapt``, directly instead."""

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Update the buffer from ``strategy``'s current experience (avalanche's ``update`` without the warning)."""
        self.post_adapt(strategy, strategy.experience)


class _ClassBalancedBuffer(_PostAdaptUpdate, ClassBalancedBuffer):
    """avalanche's ClassBalancedBuffer whose ``update`` does not warn (:class:`_PostAdaptUpdate`)."""


class _ParametricBuffer(_PostAdaptUpdate, ParametricBuffer):
    """avalanche's ParametricBuffer whose ``update`` does not warn (:class:`_PostAdaptUpdate`)."""


@register("replay", summary="experience replay, random class-balanced buffer of mem_size images", uses_memory=True)
def build_replay(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """Replay with a random buffer of ``mem_size`` images in total, balanced over the classes seen."""
    kw = template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins)
    buffer = _ClassBalancedBuffer(max_size=args.mem_size, adaptive_size=True)
    kw["plugins"].append(ReplayPlugin(mem_size=args.mem_size, storage_policy=buffer))
    return Naive(model=model, **kw)


@register("herding", summary="replay with herding exemplars (iCaRL selection) on model features", uses_memory=True)
def build_herding(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """Replay whose buffer (``mem_size`` in total, grouped by class) keeps the herding-selected exemplars."""
    kw = template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins)
    buffer = _ParametricBuffer(
        max_size=args.mem_size, groupby="class", selection_strategy=ModelFeaturesHerding(model)
    )
    kw["plugins"].append(ReplayPlugin(mem_size=args.mem_size, storage_policy=buffer))
    return Naive(model=model, **kw)


@register(
    "gdumb", summary="GDumb (Prabhu et al. 2020): retrain from scratch on a class-balanced buffer", uses_memory=True
)
def build_gdumb(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """GDumb: a greedy class-balanced buffer of ``mem_size`` images; the model is reset to its initial
    weights and trained on the buffer only at each step. It replaces ``strategy.model``: evaluate that."""
    strategy = GDumb(model=model, mem_size=args.mem_size,
                     **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins))
    for p in strategy.plugins:  # its own GDumbPlugin's buffer, as GDumbPlugin makes it, minus the warning
        if isinstance(p, GDumbPlugin):
            p.storage_policy = _ClassBalancedBuffer(max_size=args.mem_size, adaptive_size=True)
    return strategy


@register("joint", summary="upper bound: cumulative training on all data seen so far at every step", uses_memory=True)
def build_joint(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any]) -> Any:
    """The upper bound as Avalanche's Cumulative strategy: at step i it trains on the union of experiences
    0..i (continuing from the current weights), so a step accuracy exists at every step. It stores all
    data (unbounded memory); ``mem_size`` is ignored."""
    return Cumulative(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins))
