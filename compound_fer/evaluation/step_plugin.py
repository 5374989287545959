"""Avalanche plugin that turns every post-step evaluation into a row of a :class:`ContinualRecord`.

Its own module because it subclasses Avalanche's plugin (importing Avalanche takes seconds); the metrics
in :mod:`compound_fer.evaluation.metrics` stay importable without it.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from avalanche.core import SupervisedPlugin

from compound_fer.evaluation.metrics import ContinualRecord, _labels

__all__ = ["StepPredictionsPlugin"]


class StepPredictionsPlugin(SupervisedPlugin):
    """Collects y_true / y_pred over the whole eval stream after each training step, into a ContinualRecord.

    After every ``strategy.eval(test_stream)`` (or a slice of it) that follows a training experience, the
    predictions of all evaluated experiences are stored as that step's row: ``record.step_accuracies()``
    is the accuracy on all classes seen so far, ``record.matrix()`` the accuracy matrix. No Avalanche
    confusion-matrix metric is involved. Evaluations of other streams (``stream_name``) are ignored;
    evaluating again after the same step overwrites that step.
    """

    def __init__(self, *, stream_name: str = "test", record: ContinualRecord | None = None,
                 basic_classes: Iterable[int] | None = None) -> None:
        super().__init__()
        self.stream_name = stream_name
        self.record = record if record is not None else ContinualRecord(
            basic_classes=None if basic_classes is None else list(basic_classes))
        self.trained_classes: list[list[int]] = []
        self._t: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._active = False
        self._inside_training = False

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._inside_training = True  # periodic evals during training are not a step's result

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._inside_training = False
        self.trained_classes.append(sorted(int(c) for c in strategy.experience.classes_in_this_experience))

    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        origin = getattr(strategy.experience, "origin_stream", None)
        name = getattr(origin, "name", self.stream_name)
        self._active = name == self.stream_name

    def before_eval(self, strategy: Any, **kwargs: Any) -> None:
        self._t, self._p = [], []

    def after_eval_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._active:
            self._t.append(_labels(strategy.mb_y))
            self._p.append(_labels(torch.argmax(strategy.mb_output, dim=1)))

    def after_eval(self, strategy: Any, **kwargs: Any) -> None:
        if self._inside_training or not self.trained_classes or not self._t:
            return
        step = len(self.trained_classes) - 1
        self.record.set_step(step, np.concatenate(self._t), np.concatenate(self._p),
                             new_classes=self.trained_classes[step])
        self._t, self._p = [], []

    @property
    def step_accuracies(self) -> list[float]:
        return self.record.step_accuracies()

    def last_row(self) -> np.ndarray:
        """Accuracy-matrix row of the last recorded step (accuracy on each experience's classes)."""
        return self.record.matrix()[-1]
