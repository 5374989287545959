"""Knowledge distillation from the frozen basic model, exactly as the reference code does it.

    L = (1 - g_i) * CE(y, z_s) + g_i * CE(softmax(z_t' / T), softmax(z_s / T)),   g_i = g0 * exp(-i / (1 + e))

``CE(p, q) = -sum p log q`` (a soft cross-entropy, no T^2 factor), ``i`` the 0-based continual step
(experience 1 -> i = 0), ``z_t'`` the teacher logits zero-padded to the student's classes. Zero padding
is a quirk of the reference: a zero logit is not "no class", so new classes receive soft-target mass
(about 12% at T = 3); ``padding="mask"`` gives them exactly 0 instead.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin
from torch import Tensor, nn

from compound_fer.errors import ConfigError

Padding = Literal["zeros", "mask"]
TeacherMode = Literal["basic", "previous"]


def kd_gamma(i: int, gamma0: float = 0.1) -> float:
    """Distillation weight of 0-based continual step ``i``: ``gamma0 * exp(-i / (1 + e))``."""
    if i < 0:
        raise ValueError(f"continual step index must be >= 0, got {i}")
    return float(gamma0 * math.exp(-i / (1.0 + math.e)))


def soft_targets(teacher_logits: Tensor, num_classes: int, *, temperature: float, padding: Padding = "zeros",
                 teacher_mask: Tensor | None = None) -> Tensor:
    """Teacher probabilities over the student's ``num_classes`` columns.

    ``zeros``: logits padded with 0 then ``softmax(z / T)`` (the reference; new classes get mass).
    ``mask``: ``softmax`` over the teacher's classes only; new classes get exactly 0.
    ``teacher_mask`` (bool, width of ``teacher_logits``) marks columns the teacher never learned; they are
    treated like padding.
    """
    n, c_t = teacher_logits.shape
    if c_t > num_classes:
        raise ValueError(f"teacher has {c_t} classes but the student only {num_classes}")
    if padding not in ("zeros", "mask"):
        raise ConfigError(f"teacher_padding must be 'zeros' or 'mask', got {padding!r}")
    known = torch.zeros(num_classes, dtype=torch.bool, device=teacher_logits.device)
    known[:c_t] = True if teacher_mask is None else teacher_mask.to(teacher_logits.device).bool()
    z = teacher_logits.new_zeros(n, num_classes)
    z[:, :c_t] = teacher_logits
    z = torch.where(known, z, torch.zeros_like(z))
    z = z / temperature
    if padding == "mask":
        z = z.masked_fill(~known, float("-inf"))
    return torch.softmax(z, dim=1)


def soft_cross_entropy(targets: Tensor, student_logits: Tensor, *, temperature: float) -> Tensor:
    """Batch mean of ``-sum_c p_c log softmax(z_s / T)_c``; terms with ``p_c = 0`` contribute exactly 0."""
    log_q = torch.log_softmax(student_logits / temperature, dim=1)
    return -(targets * log_q).nan_to_num(0.0).sum(dim=1).mean()


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *, gamma: float,
                      temperature: float = 3.0, padding: Padding = "zeros") -> Tensor:
    """``(1 - gamma) * CE(y, z_s) + gamma * CE(softmax(z_t'/T), softmax(z_s/T))`` (the reference loss)."""
    ce = F.cross_entropy(student_logits, targets)
    p = soft_targets(teacher_logits, student_logits.shape[1], temperature=temperature, padding=padding)
    return (1.0 - gamma) * ce + gamma * soft_cross_entropy(p, student_logits, temperature=temperature)


def freeze(model: nn.Module) -> nn.Module:
    """A frozen deep copy: eval mode, no gradients; its weights never change."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class DistillationPlugin(SupervisedPlugin):
    """Adds the reference's distillation term to every training mini-batch of a continual step.

    ``teacher=None`` snapshots a frozen copy of the model after the first training experience (the basic
    model) and distils from the next experience on; a given teacher is used from the first experience.
    ``teacher_mode="previous"`` re-snapshots after every experience instead (the teacher is the previous
    step's model). Evaluation uses CE only. If other plugins add terms to the loss, they stay unscaled:
    the plugin adds ``gamma * (KD - CE)`` to ``strategy.loss``.
    """

    def __init__(self, *, teacher: nn.Module | None = None, temperature: float = 3.0, gamma0: float = 0.1,
                 teacher_padding: Padding = "zeros", teacher_mode: TeacherMode = "basic",
                 feature_weight: float = 0.0) -> None:
        super().__init__()
        if feature_weight < 0:
            raise ConfigError(f"feature_weight must be >= 0, got {feature_weight}")
        self.feature_weight = float(feature_weight)  # MSE between student and teacher embeddings (not decayed)
        if teacher_padding not in ("zeros", "mask"):
            raise ConfigError(f"teacher_padding must be 'zeros' or 'mask', got {teacher_padding!r}")
        if teacher_mode not in ("basic", "previous"):
            raise ConfigError(f"teacher_mode must be 'basic' or 'previous', got {teacher_mode!r}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.teacher: nn.Module | None = freeze(teacher) if teacher is not None else None
        self.temperature = temperature
        self.gamma0 = gamma0
        self.teacher_padding: Padding = teacher_padding
        self.teacher_mode: TeacherMode = teacher_mode
        self.step = 0  # 0-based continual step of the current/next KD experience
        self._active = False
        self.last_kd_loss: float | None = None

    @property
    def gamma(self) -> float:
        """Weight of the current continual step."""
        return kd_gamma(self.step, self.gamma0)

    def before_training_exp(self, strategy, **kwargs):  # noqa: ANN001
        self._active = self.teacher is not None
        if self._active:
            self.teacher.to(strategy.device)

    def before_backward(self, strategy, **kwargs):  # noqa: ANN001
        if not self._active:
            return
        z_s = strategy.mb_output
        with torch.no_grad():
            self.teacher.eval()
            z_t = self.teacher(strategy.mb_x)
        mask = _active_units(self.teacher)
        p = soft_targets(z_t, z_s.shape[1], temperature=self.temperature, padding=self.teacher_padding,
                         teacher_mask=mask)
        student_active = _active_units(strategy.model)
        if student_active is not None and not bool(student_active.all()):
            # units never trained are masked to a huge negative value: keep them out of the KD term
            keep = student_active.to(z_s.device)
            z_s, p = z_s[:, keep], p[:, keep]
            p = p / p.sum(dim=1, keepdim=True)
        kd = soft_cross_entropy(p, z_s, temperature=self.temperature)
        ce = F.cross_entropy(strategy.mb_output, strategy.mb_y)
        g = self.gamma
        strategy.loss = strategy.loss + g * (kd - ce)
        self.last_kd_loss = float(kd.detach())
        if self.feature_weight > 0:
            strategy.loss = strategy.loss + self.feature_weight * feature_distillation(strategy.model, self.teacher,
                                                                                       strategy.mb_x)


    def after_training_exp(self, strategy, **kwargs):  # noqa: ANN001
        if self._active:
            self.step += 1
        if self.teacher is None or self.teacher_mode == "previous":
            self.teacher = freeze(strategy.model)
        self._active = False


def feature_distillation(student: nn.Module, teacher: nn.Module, x: Tensor) -> Tensor:
    """Mean squared distance between the student's and the teacher's embeddings (``features``) of ``x``:
    it keeps the representation the basic model learned, whatever happens to the logits."""
    with torch.no_grad():
        target = teacher.features(x)
    return F.mse_loss(student.features(x), target)


def _active_units(model: nn.Module) -> Tensor | None:
    head = getattr(model, "head", None)
    units = getattr(head, "active_units", None)
    return units if isinstance(units, Tensor) else None


__all__ = [
    "DistillationPlugin",
    "distillation_loss",
    "feature_distillation",
    "freeze",
    "kd_gamma",
    "soft_cross_entropy",
    "soft_targets",
]
