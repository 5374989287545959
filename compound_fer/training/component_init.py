"""The basic-compound relationship in the head: a compound's output starts from its basic components.

When a compound class arrives (say Happily surprised), its new output unit is set, before any of its
images is seen, to the mean of its components' units (Happy, Surprised): weights and bias. A face that
shows both components then scores high on the compound from the first step: the zero-shot prior that
training then refines. Works for any strategy whose model has a :class:`~compound_fer.models.GrowingHead`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from avalanche.core import SupervisedPlugin

from compound_fer import taxonomy
from compound_fer.training.predict import predict


def component_rows(new_label: int, class_order: Sequence[int]) -> list[int]:
    """Model-label rows of the basic components of model label ``new_label`` (empty when it has none
    or when a component is not among the model's classes)."""
    order = [int(c) for c in class_order]
    comps = taxonomy.component_labels(taxonomy.name_of(order[new_label]))
    if not comps or any(c not in order for c in comps):
        return []
    return [order.index(c) for c in comps]


@torch.no_grad()
def init_from_components(head, new_labels: Sequence[int], class_order: Sequence[int], *, rule: str = "mean",
                         bias_offset: float = 0.0) -> list[int]:
    """Set each new output of ``head`` from its components' outputs; returns the labels set.

    ``mean``: the average unit (its logit is the mean of the components' logits: never above both);
    ``sum``: the sum (high when both components are, above either one: a zero-shot "both at once" detector).
    """
    if rule not in ("mean", "sum"):
        raise ValueError(f"component init rule must be 'mean' or 'sum', got {rule!r}")
    w, b = head.classifier.weight, head.classifier.bias
    done = []
    for c in new_labels:
        rows = component_rows(int(c), class_order)
        if rows and int(c) < len(w):
            pick = (lambda t: t[rows].mean(0)) if rule == "mean" else (lambda t: t[rows].sum(0))  # noqa: E731
            w[int(c)] = pick(w)
            b[int(c)] = pick(b) + bias_offset
            done.append(int(c))
    return done


class ComponentInitPlugin(SupervisedPlugin):
    """Before each experience trains, initialise its compound outputs from their components.

    ``class_order``: global label of each model label (the scenario's class order). ``probe``: optional
    (inputs, model labels) of held-out faces; the model's accuracy on the new class(es) right after the
    initialisation, before training, is recorded in ``zero_shot`` (one dict per experience with a compound).
    """

    def __init__(self, *, class_order: Sequence[int], probe: tuple[torch.Tensor, np.ndarray] | None = None,
                 rule: str = "mean", bias_offset: float = 0.0, device: str = "cpu") -> None:
        super().__init__()
        self.rule = rule
        self.class_order = [int(c) for c in class_order]
        self.probe = probe
        self.bias_offset = float(bias_offset)
        self.device = device
        self.zero_shot: list[dict] = []

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche strategy
        head = getattr(strategy.model, "head", None)
        if head is None or not hasattr(head, "classifier"):
            return
        new = [int(c) for c in strategy.experience.classes_in_this_experience]
        done = init_from_components(head, new, self.class_order, rule=self.rule, bias_offset=self.bias_offset)
        if done and self.probe is not None:
            self.zero_shot.append(self._score(strategy.model, done))

    def _score(self, model, new: list[int]) -> dict:
        x, y = self.probe
        seen = np.arange(max(new) + 1)
        mask = np.isin(y, seen)
        pred = predict(model, x[torch.from_numpy(mask)], device=self.device).numpy()
        truth = y[mask]
        is_new = np.isin(truth, new)
        return {"classes": [taxonomy.name_of(self.class_order[c]) for c in new],
                "new_class_recall": float((pred[is_new] == truth[is_new]).mean()) if is_new.any() else None,
                "seen_accuracy": float((pred == truth).mean()) if len(truth) else None}

    def __getstate__(self) -> dict:  # step checkpoints: the probe is data, rebuilt by the runner
        state = dict(self.__dict__)
        state["probe"] = None
        return state
