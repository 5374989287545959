"""The one optimizer factory every method uses: adam, adamw or sgd (momentum 0.9) by name."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from compound_fer.errors import ConfigError

__all__ = ["OPTIMIZERS", "make_optimizer", "optimizer_from_args"]

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(params: Iterable[nn.Parameter], *, name: str = "adam", lr: float = 1e-3,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch optimizer ``name`` over ``params`` (frozen parameters get no gradient and are skipped).

    Avalanche re-collects the model's parameters when the head grows, so the list given here only seeds it.
    """
    key = name.lower()
    params = list(params)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ConfigError(f"strategy option optimizer={name!r} is unknown; use one of {', '.join(OPTIMIZERS)}")


def optimizer_from_args(params: Iterable[nn.Parameter], args: Any) -> torch.optim.Optimizer:
    """:func:`make_optimizer` with a strategy's ``optimizer``, ``lr`` and ``weight_decay`` (StrategyArgs)."""
    return make_optimizer(params, name=args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
