"""Class prototypes in the head: a class's output from the mean embedding of its training faces.

Two uses, one plugin (the embedding is what the head's Linear reads: ``model.features``):

* ``imprint``: before an experience trains, each new class's unit is set to the mean of its faces'
  centred, L2-normalised embeddings, scaled to the norm of the trained units (weight imprinting, Qi, Brown
  & Lowe 2018), then trained as usual. With one image the new class already has a direction of its own.
* ``ncm``: nearest class mean. After each experience every seen class's unit *is* its prototype (cosine
  to the class mean of centred embeddings, SimpleShot's CL2N), whatever training did to the head. Means
  are stored when a class arrives (vectors, not images), so this needs an embedding that stays frozen.
  As a continual method it is registered as ``ncm`` (no training at all: the frozen embedding of the
  basic model and one stored mean per class); in kept few-shot episodes it is ``fewshot.prototypes: ncm``.

Centring subtracts the mean embedding of the basic faces (experience 0); it rides in the bias, so the
head stays a plain Linear and KD, replay, Grad-CAM and saved models work unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.supervised import Naive

from compound_fer.errors import ConfigError
from compound_fer.training.entry import StrategyArgs, register
from compound_fer.training.predict import dataset_outputs
from compound_fer.training.template import template_kwargs

PrototypeMode = Literal["imprint", "ncm"]


def class_embeddings(model: torch.nn.Module, dataset, *, device: str = "cpu",  # noqa: ANN001 - Avalanche dataset
                     batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, labels) of every face of ``dataset`` under its eval transform."""
    return dataset_outputs(model, dataset, fn=model.features, device=device, batch_size=batch_size)


def prototypes(feats: torch.Tensor, labels: torch.Tensor, centre: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per label: the unit-norm mean of the centred, L2-normalised embeddings (SimpleShot's CL2N)."""
    z = F.normalize(feats - centre, dim=1)
    return {int(c): F.normalize(z[labels == c].mean(0), dim=0) for c in labels.unique()}


class PrototypePlugin(SupervisedPlugin):
    """Sets class units from prototypes: ``imprint`` the new ones before training, or ``ncm`` all after."""

    def __init__(self, *, mode: PrototypeMode = "imprint", device: str = "cpu") -> None:
        super().__init__()
        if mode not in ("imprint", "ncm"):
            raise ConfigError(f"prototypes must be 'imprint' or 'ncm', got {mode!r}")
        self.mode = mode
        self.device = device
        self.centre: torch.Tensor | None = None
        self.scale: float | None = None
        self.means: dict[int, torch.Tensor] = {}

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche strategy
        head = getattr(strategy.model, "head", None)
        if head is None or not hasattr(head, "classifier") or not hasattr(strategy.model, "features"):
            raise ConfigError("prototypes: the model needs a GrowingHead and a features() method (a FERModel)")
        feats, labels = class_embeddings(strategy.model, strategy.experience.dataset, device=self.device)
        first = self.centre is None
        if first:  # experience 0: the basic faces set the centre and the units' scale
            self.centre = feats.mean(0)
            self.scale = float(head.classifier.weight.detach().norm(dim=1).mean())
        new = prototypes(feats, labels, self.centre)
        self.means.update(new)
        if self.mode == "imprint" and not first:  # the basic units are trained already: imprint new classes only
            self._set_units(head, list(new))

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche strategy
        if self.mode == "ncm":
            self._set_units(strategy.model.head, list(self.means))

    @torch.no_grad()
    def _set_units(self, head, labels: list[int]) -> None:  # noqa: ANN001 - GrowingHead
        w, b = head.classifier.weight, head.classifier.bias
        for c in labels:
            if c < len(w):
                w[c] = self.scale * self.means[c].to(w)
                b[c] = -(w[c] @ self.centre.to(w))


@register("ncm", summary="nearest class mean on the basic model's frozen embedding (no training; one mean per "
          "class, no images kept)", uses_memory=False)
def build_ncm(*, model: torch.nn.Module, args: StrategyArgs, evaluator, plugins) -> object:  # noqa: ANN001
    """Every class's unit is its centred mean embedding, stored when the class arrives; nothing trains."""
    plugins = [*plugins, PrototypePlugin(mode="ncm", device=args.device)]
    strategy = Naive(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins))
    strategy.train_epochs = 0  # the means are the classifier: no gradient step
    return strategy
