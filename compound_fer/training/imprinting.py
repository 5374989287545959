"""A new class's output that weighs its support faces against its basic components (the AU prior).

The new compound's unit is a blend of two rows of the linear head:

* the **data** row: the support faces' prototype (unit-norm mean of centred, L2-normalised embeddings),
  calibrated toward its components' prototypes as TEEN does (Wang et al., NeurIPS 2023):
  ``p' = (1 - alpha) p + alpha * sum_b softmax(tau cos(p, p_b)) p_b`` over the components ``b``, then
  imprinted (Qi, Brown & Lowe, CVPR 2018): scaled to the mean norm of the basic rows, its bias ``-w . centre``
  (so the logit reads the centred embedding);
* the **prior** row: the mean of the components' rows (training/component_init.py, the AU table).

The data's weight grows with the shots: ``k / (k + kappa)`` (kappa 0: the data row alone). The blend may
then be fine-tuned (the kept mode's training) or used as it is.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor

from compound_fer.errors import ConfigError
from compound_fer.training.component_init import component_rows
from compound_fer.training.prototypes import class_embeddings, prototypes

__all__ = ["TEEN_TAU", "ImprintPlugin", "blended_unit", "data_weight", "imprinted_unit", "support_prototype",
           "teen_calibrate"]

TEEN_TAU = 16.0  # TEEN's softmax temperature over cos(p, p_b) (its paper's default)


def support_prototype(z: Tensor, centre: Tensor) -> Tensor:
    """Unit-norm mean of the centred, L2-normalised support embeddings ``z`` (K, D)."""
    return F.normalize(F.normalize(z - centre, dim=1).mean(0), dim=0)


def teen_calibrate(p: Tensor, base: Tensor, *, alpha: float, tau: float) -> Tensor:
    """TEEN's calibration of prototype ``p`` (D,) toward the base prototypes ``base`` (B, D): the share
    ``alpha`` moves to their softmax(tau cos)-weighted mean. ``alpha`` 0 (or no base) returns ``p``."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"imprint: alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0 or len(base) == 0:
        return p
    weights = torch.softmax(tau * (F.normalize(base, dim=1) @ F.normalize(p, dim=0)), dim=0)
    return (1.0 - alpha) * p + alpha * (weights[:, None] * base).sum(0)


def data_weight(shots: int, kappa: float) -> float:
    """The data row's share of the blend: ``k / (k + kappa)`` (1 when ``kappa`` is 0, 0 with no shot)."""
    if kappa < 0:
        raise ConfigError(f"imprint: kappa must be >= 0, got {kappa}")
    return float(shots) / (shots + kappa) if shots + kappa > 0 else 0.0


def imprinted_unit(p: Tensor, centre: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(weight, bias) of the unit whose logit is ``scale * p_hat . (z - centre)``: the imprinted row."""
    w = scale * F.normalize(p, dim=0)
    return w, -(w @ centre)


def blended_unit(support_z: Tensor, *, centre: Tensor, base: Tensor, prior: tuple[Tensor, Tensor], scale: float,
                 alpha: float, kappa: float, tau: float = TEEN_TAU, shots: int | None = None) -> tuple[Tensor, Tensor]:
    """The new class's (weight, bias): ``lam * imprint(TEEN(p)) + (1 - lam) * prior``, ``lam = k/(k+kappa)``.

    ``base``: the components' prototypes (B, D); ``prior``: the components' mean (weight, bias); ``shots``:
    the k of the blend (default: the rows of ``support_z``)."""
    p = teen_calibrate(support_prototype(support_z, centre), base, alpha=alpha, tau=tau)
    w_data, b_data = imprinted_unit(p, centre, scale)
    lam = data_weight(len(support_z) if shots is None else shots, kappa)
    return lam * w_data + (1 - lam) * prior[0], lam * b_data + (1 - lam) * prior[1]


class ImprintPlugin(SupervisedPlugin):
    """Before each compound experience trains, sets its units to :func:`blended_unit` (after component init).

    Experience 0 (the basic faces) sets the centre, the basic prototypes and the rows' scale. ``shots``:
    the k of the blend (None: each class's faces in the experience)."""

    def __init__(self, *, class_order: Sequence[int], alpha: float, kappa: float, tau: float = TEEN_TAU,
                 shots: int | None = None, device: str = "cpu") -> None:
        super().__init__()
        self.class_order = [int(c) for c in class_order]
        self.alpha, self.tau, self.kappa, self.shots = float(alpha), float(tau), float(kappa), shots
        self.device = device
        self.centre: Tensor | None = None
        self.scale = 1.0
        self.means: dict[int, Tensor] = {}
        self.set: list[dict] = []

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche strategy
        head = getattr(strategy.model, "head", None)
        if head is None or not hasattr(head, "classifier") or not hasattr(strategy.model, "features"):
            raise ConfigError("imprint: the model needs a GrowingHead and a features() method (a FERModel)")
        feats, labels = class_embeddings(strategy.model, strategy.experience.dataset, device=self.device)
        if self.centre is None:  # the basic faces: centre, prototypes, the basic rows' scale
            self.centre = feats.mean(0)
            self.scale = float(head.classifier.weight.detach().norm(dim=1).mean())
            self.means.update(prototypes(feats, labels, self.centre))
            return
        self._set_units(head, feats, labels)

    @torch.no_grad()
    def _set_units(self, head, feats: Tensor, labels: Tensor) -> None:  # noqa: ANN001 - GrowingHead
        w, b = head.classifier.weight, head.classifier.bias
        for c in [int(v) for v in labels.unique()]:
            rows = component_rows(c, self.class_order)
            if c >= len(w) or not rows or any(r not in self.means for r in rows):
                continue
            z = feats[labels == c].cpu()
            prior = (w[rows].mean(0).cpu(), b[rows].mean(0).cpu())
            base = torch.stack([self.means[r] for r in rows])
            new_w, new_b = blended_unit(z, centre=self.centre, base=base, prior=prior, scale=self.scale,
                                        alpha=self.alpha, tau=self.tau, kappa=self.kappa, shots=self.shots)
            w[c], b[c] = new_w.to(w), new_b.to(b)
            self.set.append({"label": c, "shots": self.shots or len(z),
                             "data_weight": round(data_weight(self.shots or len(z), self.kappa), 4)})
