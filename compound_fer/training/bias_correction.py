"""Old/new class bias correction: Avalanche plugins that work with any strategy of the registry.

A class-incremental step leaves the classifier leaning toward whichever side it saw more of, or more
recently: the new class in a continual step (its faces are hard, the replayed ones are the memory's
easiest), the stored basic faces in a few-shot step (17 per class against one shot). Each plugin
corrects that in the decision layer only, so the model stays a plain FERModel (KD, replay, saving and
Grad-CAM unchanged); corrections that act after a step are folded into the head's last Linear.

* ``weight_aligning``: after each step, scale the new classes' weight rows so their mean norm equals the
  old classes' (Zhao et al., CVPR 2020, WA).
* ``bic``: hold out a small class-balanced share of the step's data (memory + new class), train on the
  rest, then fit two scalars ``alpha * z + beta`` for the new classes' logits on the held-out faces
  (Wu et al., CVPR 2019, BiC).
* ``balanced_finetune``: after each step, fine-tune the head's last Linear on a class-balanced subset of
  the step's data: the memory plus an equal number of new-class faces (Castro et al., ECCV 2018, EEIL).
* ``logit_adjustment``: train with ``logits + tau * log(prior)``, the priors counted on the step's
  training data, and predict with the plain logits (Menon et al., ICLR 2021).

A cosine-normalised head (LUCIR) is not here: it changes what the basic phase trains, not one step.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from compound_fer.errors import ConfigError
from compound_fer.training.predict import dataset_outputs

log = logging.getLogger(__name__)

Correction = Literal["weight_aligning", "bic", "balanced_finetune", "logit_adjustment"]
CORRECTIONS: tuple[str, ...] = ("weight_aligning", "bic", "balanced_finetune", "logit_adjustment")

__all__ = [
    "BalancedFinetunePlugin",
    "BiCPlugin",
    "BiasCorrectionPlugin",
    "CORRECTIONS",
    "Correction",
    "LogitAdjustmentPlugin",
    "WeightAligningPlugin",
    "bias_history",
    "bias_plugins",
    "plugins_for",
    "class_indices",
    "fold_affine",
    "head_linear",
]


def head_linear(model: nn.Module) -> nn.Linear:
    """The Linear that outputs the logits (a GrowingHead's ``classifier``, or a model's last Linear)."""
    head = getattr(model, "head", None)
    layer = getattr(head, "classifier", None)
    if isinstance(layer, nn.Linear):
        return layer
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("bias correction: the model has no Linear output layer to correct")
    return linears[-1]


def class_indices(dataset: Any) -> dict[int, list[int]]:
    """Row indices of each class in an Avalanche dataset, from its targets."""
    out: dict[int, list[int]] = {}
    for i, y in enumerate(dataset.targets):
        out.setdefault(int(y), []).append(i)
    return out


@torch.no_grad()
def fold_affine(layer: nn.Linear, classes: Sequence[int], *, alpha: float, beta: float = 0.0) -> None:
    """Make the units ``classes`` output ``alpha * logit + beta``: their rows scaled, their biases shifted."""
    idx = torch.as_tensor(list(classes), dtype=torch.long)
    layer.weight[idx] *= alpha
    if layer.bias is not None:
        layer.bias[idx] = layer.bias[idx] * alpha + beta
    elif beta:
        raise ConfigError("bias correction: a shift needs an output layer with a bias")


class BiasCorrectionPlugin(SupervisedPlugin):
    """Tracks the classes seen before the current step: ``old`` and ``new`` for the step in training."""

    name = "none"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.history: list[dict[str, Any]] = []  # one entry per corrected step, for the results row

    def step_classes(self, strategy: Any) -> tuple[list[int], list[int]]:
        exp = strategy.experience
        classes = getattr(exp, "classes_in_this_experience", None)
        present = [int(c) for c in (classes if classes is not None else class_indices(exp.dataset))]
        new = sorted(c for c in present if c not in self.seen)
        return list(self.seen), new

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        old, new = self.step_classes(strategy)
        if old and new:
            self.history.append({"new": new, **self.correct(strategy, old=old, new=new)})
        self.seen.extend(new)

    def correct(self, strategy: Any, *, old: list[int], new: list[int]) -> dict[str, Any]:
        return {}


class WeightAligningPlugin(BiasCorrectionPlugin):
    """WA: after a step, the new classes' rows are scaled to the mean norm of the old classes' rows."""

    name = "weight_aligning"

    def correct(self, strategy: Any, *, old: list[int], new: list[int]) -> dict[str, Any]:
        layer = head_linear(strategy.model)
        norms = layer.weight.detach().norm(dim=1)
        gamma = float(norms[old].mean() / norms[new].mean().clamp_min(1e-12))
        fold_affine(layer, new, alpha=gamma)
        return {"gamma": round(gamma, 4)}


class LogitAdjustmentPlugin(BiasCorrectionPlugin):
    """Logit-adjusted loss: ``CE(z + tau * log prior, y)`` while training, plain ``z`` when predicting.

    The priors are the class shares of the step's training data (after replay has built it); a class
    absent from it gets a prior of ``1e-8``, i.e. it is left out of the step's softmax. With ``margin``
    the step's new classes are shifted ``margin`` nats below the old ones whatever their counts (the
    count prior's gap shrinks as the shots grow: ``log(17 / k)``, 2.8 nats at 1 shot, 1.2 at 5)."""

    name = "logit_adjustment"

    def __init__(self, *, tau: float = 1.0, margin: float | None = None) -> None:
        super().__init__()
        if tau < 0 or (margin is not None and margin < 0):
            raise ConfigError(f"logit_adjustment: tau and margin must be >= 0, got {tau} and {margin}")
        self.tau, self.margin = tau, margin
        self._plain: Any = None
        self.log_prior: Tensor | None = None

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        n_out = head_linear(strategy.model).out_features
        counts = torch.zeros(n_out)
        for c, rows in class_indices(strategy.adapted_dataset).items():
            if c < n_out:
                counts[c] = len(rows)
        self.log_prior = torch.log((counts / counts.sum().clamp_min(1)).clamp_min(1e-8))
        shift = self.tau * self.log_prior
        if self.margin is not None:  # a fixed gap: present old classes 0, new ones -margin; absent ones stay out
            _, new = self.step_classes(strategy)
            shift = torch.where(counts > 0, torch.zeros(n_out), shift)
            shift[[c for c in new if c < n_out and counts[c] > 0]] = -self.margin
        self._plain = strategy._criterion
        strategy._criterion = _AdjustedLoss(self._plain, shift.to(strategy.device))

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self._plain is not None:
            strategy._criterion, self._plain = self._plain, None
        super().after_training_exp(strategy, **kwargs)

    def correct(self, strategy: Any, *, old: list[int], new: list[int]) -> dict[str, Any]:
        lp = self.log_prior.cpu()
        return {"tau": self.tau, **({"margin": self.margin} if self.margin is not None else {}),
                "log_prior_gap": round(float(lp[old].mean() - lp[new].mean()), 4)}


class _AdjustedLoss(nn.Module):
    def __init__(self, base: Any, shift: Tensor) -> None:
        super().__init__()
        self.base, self.shift = base, shift

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        n = min(logits.shape[1], self.shift.numel())
        shift = torch.zeros(logits.shape[1], device=logits.device, dtype=logits.dtype)
        shift[:n] = self.shift[:n].to(logits)
        return self.base(logits + shift, targets)


class BiCPlugin(BiasCorrectionPlugin):
    """BiC: ``holdout`` of each class's step images (the same count for every class) is kept out of
    training; after the step, ``alpha, beta`` for the new classes' logits minimise the cross-entropy on it.

    Steps whose smallest class has fewer than 2 images (a one-shot class) are left uncorrected."""

    name = "bic"

    def __init__(self, *, holdout: float = 0.2, iterations: int = 200, seed: int = 0) -> None:
        super().__init__()
        if not 0 < holdout < 1:
            raise ConfigError(f"bic: holdout must be in (0, 1), got {holdout}")
        self.holdout, self.iterations = holdout, iterations
        self.generator = torch.Generator().manual_seed(seed)
        self._val: Any = None

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        self._val = None
        if not self.seen:
            return  # the first step has no old classes to balance against
        groups = class_indices(strategy.adapted_dataset)
        k = int(round(self.holdout * min(len(v) for v in groups.values())))
        if min(len(v) for v in groups.values()) < 2 or k < 1:
            log.info("bic: a class has too few images to hold out a balanced set; this step is not corrected")
            return
        val, train = [], []
        for _, rows in sorted(groups.items()):
            perm = torch.randperm(len(rows), generator=self.generator).tolist()
            val.extend(rows[i] for i in perm[:k])
            train.extend(rows[i] for i in perm[k:])
        data = strategy.adapted_dataset
        self._val = data.subset(sorted(val))
        strategy.adapted_dataset = data.subset(sorted(train))

    def correct(self, strategy: Any, *, old: list[int], new: list[int]) -> dict[str, Any]:
        if self._val is None:
            return {"skipped": "too few images for a held-out set"}
        logits, y = dataset_outputs(strategy.model, self._val, device=strategy.device)
        alpha, beta = fit_bias_layer(logits, y, new=new, iterations=self.iterations)
        fold_affine(head_linear(strategy.model), new, alpha=alpha, beta=beta)
        return {"alpha": round(alpha, 4), "beta": round(beta, 4), "held_out": int(len(y))}


def fit_bias_layer(
    logits: Tensor, targets: Tensor, *, new: Sequence[int], iterations: int = 200
) -> tuple[float, float]:
    """BiC's two scalars: ``alpha, beta`` minimising CE(z with z[new] -> alpha * z[new] + beta, y)."""
    params = torch.tensor([1.0, 0.0], requires_grad=True)
    mask = torch.zeros(logits.shape[1], dtype=torch.bool)
    mask[list(new)] = True
    z, y = logits.detach().float(), targets.long()
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        out = torch.where(mask, z * params[0] + params[1], z)
        loss = F.cross_entropy(out, y)
        loss.backward()
        return loss

    opt.step(closure)
    alpha, beta = (float(v) for v in params.detach())
    if not (math.isfinite(alpha) and math.isfinite(beta)) or alpha <= 0:
        return 1.0, 0.0  # a degenerate fit (e.g. the held-out set separates perfectly): leave the logits as they are
    return alpha, beta


class BalancedFinetunePlugin(BiasCorrectionPlugin):
    """EEIL's balanced fine-tuning: after a step, the head's last Linear alone is trained for ``epochs``
    full-batch steps at ``lr`` on the same number of faces per class, drawn from the step's data (the
    memory's faces of each old class plus as many of the new class). Needs a step whose data holds the
    old classes (replay); a step without them is left as it is."""

    name = "balanced_finetune"

    def __init__(self, *, epochs: int = 30, lr: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        if epochs < 1 or lr <= 0:
            raise ConfigError(f"balanced_finetune: epochs must be >= 1 and lr > 0, got {epochs}, {lr}")
        self.epochs, self.lr = epochs, lr
        self.generator = torch.Generator().manual_seed(seed)

    def correct(self, strategy: Any, *, old: list[int], new: list[int]) -> dict[str, Any]:
        data = strategy.adapted_dataset
        groups = class_indices(data)
        if not set(old) & set(groups):
            return {"skipped": "the step's data holds no old class"}
        n = min(len(v) for v in groups.values())
        rows = [r[i] for r in groups.values() for i in torch.randperm(len(r), generator=self.generator)[:n].tolist()]
        feats, y = dataset_outputs(strategy.model, data.subset(sorted(rows)), device=strategy.device,
                                   fn=strategy.model.features)
        train_linear(head_linear(strategy.model), feats, y, epochs=self.epochs, lr=self.lr)
        return {"per_class": n, "classes": len(groups)}


def train_linear(layer: nn.Linear, feats: Tensor, targets: Tensor, *, epochs: int, lr: float) -> None:
    """Full-batch Adam on one Linear layer (the classes absent from ``targets`` keep their rows)."""
    seen = torch.unique(targets)
    w0, b0 = layer.weight.detach().clone(), None if layer.bias is None else layer.bias.detach().clone()
    flags = [p.requires_grad for p in layer.parameters()]
    for p in layer.parameters():
        p.requires_grad_(True)
    x, y = feats.to(layer.weight.device).float(), targets.to(layer.weight.device).long()
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(epochs):
            opt.zero_grad()
            F.cross_entropy(layer(x), y).backward()
            opt.step()
    with torch.no_grad():
        keep = torch.ones(layer.out_features, dtype=torch.bool)
        keep[seen.cpu()] = False
        layer.weight[keep] = w0[keep]
        if b0 is not None:
            layer.bias[keep] = b0[keep]
    for p, f in zip(layer.parameters(), flags):
        p.requires_grad_(f)


def bias_plugins(corrections: Sequence[str], *, tau: float = 1.0, margin: float | None = None, holdout: float = 0.2,
                 epochs: int = 30, lr: float = 1e-3, seed: int = 0) -> list[SupervisedPlugin]:
    """The plugins for ``corrections`` (names of :data:`CORRECTIONS`), in the order given."""
    make = {"weight_aligning": lambda: WeightAligningPlugin(),
            "bic": lambda: BiCPlugin(holdout=holdout, seed=seed),
            "balanced_finetune": lambda: BalancedFinetunePlugin(epochs=epochs, lr=lr, seed=seed),
            "logit_adjustment": lambda: LogitAdjustmentPlugin(tau=tau, margin=margin)}
    unknown = [c for c in corrections if c not in make]
    if unknown:
        raise ConfigError(f"bias_correction: unknown correction(s) {', '.join(unknown)}; valid: {', '.join(make)}")
    return [make[c]() for c in corrections]



def plugins_for(section: Any, *, seed: int = 0) -> list[SupervisedPlugin]:
    """The plugins of a ``BiasCorrection`` config section (``continual`` / ``fewshot.bias_correction``)."""
    if section is None or not section.methods:
        return []
    return bias_plugins(section.methods, tau=section.tau, margin=section.margin, holdout=section.holdout,
                        epochs=section.epochs, lr=section.lr, seed=seed)


def bias_history(strategy: Any) -> list[dict[str, Any]] | None:
    """What the strategy's bias-correction plugins did, step by step, for the results row (None without any)."""
    steps = [{"correction": p.name, **h} for p in getattr(strategy, "plugins", [])
             if isinstance(p, BiasCorrectionPlugin) for h in p.history]
    return steps or None
