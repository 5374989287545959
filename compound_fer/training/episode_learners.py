"""Learners for N-way K-shot episodes on the basic model's frozen embedding (no image is seen again).

Each learner takes the support embeddings of one episode and predicts its queries' episode labels:

* ``ncm``: nearest class mean, cosine to the centred, L2-normalised support mean (SimpleShot's CL2N).
* ``component_finetune``: an N-way head whose units start as the mean of each compound's basic components'
  units (the basic head), fine-tuned on the support faces.
* ``kept``: the kept-mode learner: the basic head plus N component-initialised units, trained on a PSMR
  memory of basic faces (the top-m of each basic class by its true-class logit) and the support with the
  logit-adjusted loss (the few-shot bias correction), scored among the episode's N classes.
* ``imprint``: each class's unit blends its support prototype (imprinted, TEEN-calibrated toward its components'
  prototypes) with its components' mean unit, data weight k / (k + kappa) (training/imprinting.py); fine-tuned
  on the support as ``component_finetune`` when ``finetune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from compound_fer.errors import ConfigError
from compound_fer.training.imprinting import blended_unit

__all__ = ["BasicHead", "LEARNERS", "basic_prototypes", "component_units", "learner"]


@dataclass(frozen=True)
class BasicHead:
    """What the learners know of the basic model: its head's last Linear, the centre of the basic training
    embeddings, the PSMR memory's embeddings and labels, and each basic label's components table."""

    weight: Tensor  # (basic classes, D)
    bias: Tensor  # (basic classes,)
    centre: Tensor  # (D,)
    memory_x: Tensor  # (M, D)
    memory_y: Tensor  # (M,) basic labels
    components: dict[int, tuple[int, ...]]  # compound label -> rows of its basic components in the head
    prototypes: Tensor | None = None  # (basic classes, D) CL2N prototypes of the basic training faces (None: memory's)


def component_units(head: BasicHead, classes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """(weights, biases) of one unit per class: the mean of its components' basic units."""
    rows = [list(head.components.get(int(c), ())) for c in classes]
    if any(not r for r in rows):
        missing = [int(c) for c, r in zip(classes, rows) if not r]
        raise ConfigError(f"episodes: classes {missing} have no basic components in the basic head")
    w = torch.stack([head.weight[r].mean(0) for r in rows])
    b = torch.stack([head.bias[r].mean(0) for r in rows])
    return w, b


def _ncm(head: BasicHead, sx: Tensor, sy: Tensor, qx: Tensor, classes: Sequence[int], **_: float) -> Tensor:
    z = F.normalize(sx - head.centre, dim=1)
    protos = F.normalize(torch.stack([z[sy == i].mean(0) for i in range(len(classes))]), dim=1)
    return (F.normalize(qx - head.centre, dim=1) @ protos.T).argmax(1)


def _fit(w: Tensor, b: Tensor, x: Tensor, y: Tensor, *, steps: int, lr: float, shift: Tensor | None = None) -> None:
    """Full-batch Adam on (w, b) in place, cross-entropy (on logits + ``shift`` when given)."""
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            logits = x @ w.T + b
            F.cross_entropy(logits if shift is None else logits + shift, y).backward()
            opt.step()
    w.requires_grad_(False)
    b.requires_grad_(False)


def _component_finetune(head: BasicHead, sx: Tensor, sy: Tensor, qx: Tensor, classes: Sequence[int], *,
                        steps: int = 50, lr: float = 1e-3, **_: float) -> Tensor:
    w, b = (t.clone() for t in component_units(head, classes))
    _fit(w, b, sx, sy, steps=steps, lr=lr)
    return (qx @ w.T + b).argmax(1)


def _kept(head: BasicHead, sx: Tensor, sy: Tensor, qx: Tensor, classes: Sequence[int], *, steps: int = 50,
          lr: float = 1e-3, tau: float = 1.0, **_: float) -> Tensor:
    n_basic = len(head.bias)
    cw, cb = component_units(head, classes)
    w, b = torch.cat([head.weight, cw]).clone(), torch.cat([head.bias, cb]).clone()
    x = torch.cat([head.memory_x, sx])
    y = torch.cat([head.memory_y, sy + n_basic])
    counts = torch.bincount(y, minlength=len(b)).float()
    shift = tau * torch.log((counts / counts.sum()).clamp_min(1e-8))  # the logit-adjusted loss
    _fit(w, b, x, y, steps=steps, lr=lr, shift=shift)
    return (qx @ w[n_basic:].T + b[n_basic:]).argmax(1)


def basic_prototypes(head: BasicHead) -> Tensor:
    """The basic classes' prototypes (the head's, else the memory's centred, L2-normalised class means)."""
    if head.prototypes is not None:
        return head.prototypes
    z = F.normalize(head.memory_x - head.centre, dim=1)
    return F.normalize(torch.stack([z[head.memory_y == c].mean(0) for c in range(len(head.bias))]), dim=1)


def _imprint(head: BasicHead, sx: Tensor, sy: Tensor, qx: Tensor, classes: Sequence[int], *, steps: int = 50,
             lr: float = 1e-3, alpha: float = 0.5, kappa: float = 1.0, finetune: bool = False, **_: float) -> Tensor:
    component_units(head, classes)  # refuses a class without components
    protos, scale = basic_prototypes(head), float(head.weight.norm(dim=1).mean())
    units = []
    for i, c in enumerate(classes):
        rows = list(head.components[int(c)])
        units.append(blended_unit(sx[sy == i], centre=head.centre, base=protos[rows], scale=scale, alpha=alpha,
                                  kappa=kappa, prior=(head.weight[rows].mean(0), head.bias[rows].mean(0))))
    w, b = torch.stack([u[0] for u in units]), torch.stack([u[1] for u in units])
    if finetune:
        _fit(w, b, sx, sy, steps=steps, lr=lr)
    return (qx @ w.T + b).argmax(1)


Learner = Callable[..., Tensor]
LEARNERS: dict[str, Learner] = {"ncm": _ncm, "component_finetune": _component_finetune, "kept": _kept,
                                "imprint": _imprint}


def learner(name: str) -> Learner:
    """The learner ``name`` (one of :data:`LEARNERS`)."""
    if name not in LEARNERS:
        raise ConfigError(f"episodes: unknown learner {name!r}; valid: {', '.join(LEARNERS)}")
    return LEARNERS[name]
