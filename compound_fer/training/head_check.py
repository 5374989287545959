"""The check that a model's output layer grows with the classes of a continual stream: a clear error
before the first update of a step, instead of CrossEntropy's ``IndexError: Target 6 is out of bounds``."""

from __future__ import annotations

from avalanche.training.plugins import SupervisedPlugin

from compound_fer.errors import ModelError


class HeadSizeCheck(SupervisedPlugin):
    """On the first minibatch of each training experience, after the forward pass and before the loss: the
    model must have an output unit for every class label seen so far, else a ModelError saying so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = False

    def before_training_exp(self, strategy, **kwargs):  # noqa: ANN001 - after Avalanche's model adaptation
        self.pending = True

    def after_forward(self, strategy, **kwargs):  # noqa: ANN001
        if not self.pending:
            return
        self.pending = False
        out = strategy.mb_output
        if out is None or out.ndim != 2:
            return
        seen = list(getattr(strategy.experience, "classes_seen_so_far", None) or [])
        need = max([int(c) + 1 for c in seen] + [int(strategy.mb_y.max()) + 1 if len(strategy.mb_y) else 0])
        if out.shape[1] < need:
            raise ModelError(
                f"the model's output layer has {out.shape[1]} units for {need} classes (labels 0..{need - 1}) in "
                f"experience {getattr(strategy.experience, 'current_experience', '?')}: its head must grow as "
                f"classes arrive. Build the model with compound_fer.models.build_model (a growing head), or end it "
                f"with Avalanche's avalanche.models.IncrementalClassifier")
