"""The keyword arguments every Avalanche ``SupervisedTemplate`` gets, built in one place."""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from compound_fer.training.entry import StrategyArgs
from compound_fer.training.optim import optimizer_from_args

__all__ = ["quiet_evaluator", "template_kwargs"]


def quiet_evaluator() -> Any:
    """An EvaluationPlugin with no metrics and no loggers: results come from the runner's predictions instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])


def template_kwargs(*, model: nn.Module, args: StrategyArgs, evaluator: Any, plugins: Sequence[Any],
                    optimizer: bool = True, criterion: bool = True, params: Iterable[Any] | None = None,
                    ) -> dict[str, Any]:
    """Keyword arguments of every SupervisedTemplate, from StrategyArgs: schedule, batch sizes (``eval_mb_size``
    always: Avalanche's default is 1), device, a copy of ``plugins`` (Avalanche appends to the list it gets),
    the evaluator (a quiet one by default), and unless turned off the optimizer (over ``params``, default the
    model's) and the cross-entropy loss."""
    out: dict[str, Any] = dict(
        train_mb_size=args.train_mb_size,
        train_epochs=args.train_epochs,
        eval_mb_size=args.eval_mb_size,
        device=args.device,
        plugins=list(plugins),
        evaluator=evaluator if evaluator is not None else quiet_evaluator(),
    )
    if criterion:
        out["criterion"] = nn.CrossEntropyLoss()
    if optimizer:
        out["optimizer"] = optimizer_from_args(model.parameters() if params is None else params, args)
    return out
