"""PurifiedLearning: suppress subject identity (a task-irrelevant label) in the expression features.

After PurifiedLearning (arXiv 2102.10955) and its predecessor TIRTL (arXiv 2011.08470), of which only
the abstracts were available. **Follows the papers:** features learned from *task-irrelevant labels*
(for faces: who the subject is) are used to *purify* the task features, i.e. to remove what they
express of that nuisance; the method is model-agnostic (a loss term, no architecture change).

**Our design** (not in the abstracts):

- *Identity branch*: a linear probe ``W_id`` on the shared features (the input of the expression
  head), trained with cross-entropy on subject ids using **detached** features, so it learns the
  identity subspace without shaping the network.
- *Purification term*, added to the strategy loss with weight ``weight`` (``mode``):
    - ``"confusion"`` (default): the network is pushed to make the identity probe maximally unsure,
      cross-entropy of the probe's prediction against the uniform distribution over subjects
      (a domain-confusion loss; more stable than gradient reversal, whose target is unbounded);
    - ``"orthogonal"``: the squared share of the feature vector that lies in the span of the probe's
      weight rows (orthonormalised by QR), i.e. features are pushed orthogonal to the identity
      subspace.
- *Where subject ids come from*: Avalanche minibatches are ``(x, y, t)``. The training dataset carries a
  ``subjects`` data attribute (see :func:`with_subjects`; a FaceSet's ``subjects``), or the plugin is given
  ``subjects=`` one id tensor per training experience (:func:`benchmark_subjects` for a
  ``basic_to_compound`` benchmark; ``StrategyArgs.subjects`` through the registry) and attaches them to the
  experience's dataset in ``before_train_dataset_adaptation``. In
  ``after_train_dataset_adaptation`` the plugin turns that attribute on in ``__getitem__`` of the
  adapted dataset only, so training batches arrive as ``(x, y, t, s)``; ``before_training_iteration``
  strips ``s`` off again before anyone reads ``mb_task_id`` (which is ``mbatch[-1]``). Evaluation
  datasets are untouched. Batches without subject ids (e.g. replay buffers built without the
  attribute) are trained without the purification term.
- *Features*: captured by a forward pre-hook on the expression head (``model.head`` by default, any
  module via ``feature_module``), so any model whose classifier is a submodule works, and it stacks
  with other plugins (e.g. KD + PSMR: ``kdpsmr+purified``).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils.data_attribute import DataAttribute
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn

from compound_fer.errors import ConfigError, DataError
from compound_fer.training.entry import MethodOptions, StrategyArgs, register
from compound_fer.training.strategies import KDPSMROptions, build_kdpsmr
from compound_fer.training.template import template_kwargs

MODES = ("confusion", "orthogonal")


def with_subjects(dataset: Any, subjects: Sequence[int] | torch.Tensor) -> Any:
    """Return ``dataset`` (an AvalancheDataset) carrying a ``subjects`` data attribute, one id per sample."""
    values = torch.as_tensor(subjects, dtype=torch.long)
    if len(values) != len(dataset):
        raise DataError(f"with_subjects: {len(values)} subject ids for a dataset of {len(dataset)} samples")
    return dataset.update_data_attribute("subjects", DataAttribute(values, "subjects", use_in_getitem=False))


def benchmark_subjects(cb: Any, train: Any) -> list[torch.Tensor]:
    """Subject ids of each training experience of a ``scenarios.ContinualBenchmark``, in dataset order.

    ``train`` is the FaceSet the benchmark was built from. ``cb.train_index[j]`` holds experience ``j``'s
    FaceSet rows *sorted*, but Avalanche's ``nc_benchmark`` orders an experience's samples class by class
    (in class order; rows ascending within a class), so the rows are stably re-sorted by model label.
    """
    out = []
    for idx in cb.train_index:
        rows = torch.as_tensor(idx, dtype=torch.long)
        model_labels = cb.to_model_labels(train.labels[rows])
        order = torch.as_tensor(np.argsort(model_labels.numpy(), kind="stable"))
        out.append(train.subjects[rows[order]])
    return out


class PurifiedLearning(SupervisedPlugin):
    """Avalanche plugin: learn an identity probe on the features and purify them of identity.

    ``weight`` scales the purification term; ``probe_lr`` is the identity probe's Adam learning rate;
    ``probe_steps`` probe updates per minibatch; ``warmup`` iterations before purification starts.
    """

    def __init__(
        self,
        *,
        weight: float = 1.0,
        mode: str = "confusion",
        probe_lr: float = 1e-2,
        probe_steps: int = 1,
        warmup: int = 0,
        feature_module: nn.Module | None = None,
        attribute: str = "subjects",
        subjects: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"PurifiedLearning mode must be one of {MODES}, got {mode!r}")
        if weight < 0:
            raise ConfigError(f"PurifiedLearning weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.mode = mode
        self.probe_lr = float(probe_lr)
        self.probe_steps = int(probe_steps)
        self.warmup = int(warmup)
        self.attribute = attribute
        self.subjects = subjects
        self._feature_module = feature_module
        self._hooked: nn.Module | None = None
        self._handle: Any = None
        self._features: torch.Tensor | None = None
        self._subjects: torch.Tensor | None = None
        self._subject_index: dict[int, int] = {}
        self.probe: nn.Linear | None = None
        self._probe_opt: torch.optim.Optimizer | None = None
        self._iteration = 0
        #: Last values, for logging and tests: probe CE, probe accuracy on the batch, purification term.
        self.last: dict[str, float] = {}

    # ---------------------------------------------------------------- feature capture
    def _attach(self, model: nn.Module) -> None:
        module = self._feature_module
        if module is None:
            module = getattr(model, "head", None)
            if not isinstance(module, nn.Module):
                raise ConfigError(
                    "PurifiedLearning needs the expression head: the model has no `.head` module; "
                    "pass feature_module=<the classifier module whose input are the features>"
                )
        if self._hooked is module:
            return
        if self._handle is not None:
            self._handle.remove()
        self._handle = module.register_forward_pre_hook(self._capture)
        self._hooked = module

    def _capture(self, _module: nn.Module, inputs: tuple) -> None:
        self._features = inputs[0]

    def detach_hook(self) -> None:
        """Remove the forward hook (the plugin is done with this model)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._hooked = None, None

    # ---------------------------------------------------------------- subject ids
    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        exp = strategy.experience
        if self.subjects is None or self.attribute in getattr(exp.dataset, "_data_attributes", {}):
            return
        j = exp.current_experience
        if j >= len(self.subjects):
            raise DataError(f"PurifiedLearning: subject ids given for {len(self.subjects)} experiences, "
                            f"training experience {j}")
        exp.dataset = with_subjects(exp.dataset, self.subjects[j])

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        data = strategy.adapted_dataset
        attrs = getattr(data, "_data_attributes", {})
        if self.attribute not in attrs:
            raise DataError(
                f"PurifiedLearning needs subject ids: the training dataset has no {self.attribute!r} data "
                "attribute; build it with compound_fer.training.purified.with_subjects(dataset, subjects), or pass "
                "subjects=benchmark_subjects(continual_benchmark, train_faces) (StrategyArgs.subjects for the registry)"
            )
        values = torch.as_tensor(list(attrs[self.attribute]), dtype=torch.long)
        for s in torch.unique(values).tolist():
            self._subject_index.setdefault(int(s), len(self._subject_index))
        # Put the ids into __getitem__ of this copy only; they come after the task label, stripped below.
        others = {k: v for k, v in attrs.items() if k != self.attribute}
        data = data.update_data_attribute(self.attribute, DataAttribute(values, self.attribute, use_in_getitem=True))
        # Re-order so the subject id precedes nothing that readers index from the end: we strip it first.
        data._data_attributes = {**others, self.attribute: data._data_attributes[self.attribute]}
        strategy.adapted_dataset = data

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        mb = strategy.mbatch
        self._subjects = None
        if isinstance(mb, (list, tuple)) and len(mb) >= 4:
            self._subjects = torch.as_tensor(mb[-1]).long()
            strategy.mbatch = list(mb[:-1])

    # ---------------------------------------------------------------- probe + loss
    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._attach(strategy.model)

    def _ensure_probe(self, dim: int, device: torch.device) -> nn.Linear:
        n = max(2, len(self._subject_index))
        old = self.probe
        if old is None or old.in_features != dim or old.out_features < n:
            probe = nn.Linear(dim, n).to(device)
            if old is not None and old.in_features == dim:
                with torch.no_grad():
                    probe.weight[: old.out_features].copy_(old.weight)
                    probe.bias[: old.out_features].copy_(old.bias)
            self.probe = probe
            self._probe_opt = torch.optim.Adam(probe.parameters(), lr=self.probe_lr)
        return self.probe.to(device)

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        self._iteration += 1
        feats, subj = self._features, self._subjects
        if feats is None or subj is None or feats.ndim != 2:
            return
        target = torch.as_tensor([self._subject_index[int(s)] for s in subj.tolist()], device=feats.device)
        probe = self._ensure_probe(feats.shape[1], feats.device)
        with torch.enable_grad():
            for _ in range(self.probe_steps):
                self._probe_opt.zero_grad()
                logits = probe(feats.detach())
                ce = F.cross_entropy(logits, target)
                ce.backward()
                self._probe_opt.step()
        self.last = {"probe_ce": float(ce.detach()), "probe_acc": float((logits.argmax(1) == target).float().mean())}
        if self.weight == 0 or self._iteration <= self.warmup:
            return
        term = self.purification_term(feats, probe)
        strategy.loss = strategy.loss + self.weight * term
        self.last["purification"] = float(term.detach())

    def purification_term(self, feats: torch.Tensor, probe: nn.Linear) -> torch.Tensor:
        """The loss that removes identity from ``feats`` given the current identity probe (probe frozen)."""
        w, b = probe.weight.detach(), probe.bias.detach()
        if self.mode == "confusion":
            logp = F.log_softmax(feats @ w.t() + b, dim=1)
            return -logp.mean(dim=1).mean() - torch.log(torch.tensor(float(w.shape[0]), device=feats.device))
        q, _ = torch.linalg.qr(w.t())  # (dim, k) orthonormal basis of the identity subspace
        centred = feats - feats.mean(dim=0, keepdim=True)
        inside = (centred @ q).pow(2).sum(dim=1)
        return (inside / centred.pow(2).sum(dim=1).clamp_min(1e-8)).mean()

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        self._features, self._subjects = None, None
        if self.probe is not None:
            self.probe.zero_grad(set_to_none=True)


class PurifiedOptions(MethodOptions):
    """The purification term and its identity probe (the runner passes the subjects, not an option)."""

    purify_weight: float = Field(1.0, ge=0.0, description="weight of the purification term (1.0)")
    purify_mode: Literal["confusion", "orthogonal"] = Field("confusion", description="confusion (default) or "
                                                            "orthogonal")
    probe_lr: float = Field(1e-2, gt=0.0, description="identity probe learning rate (0.01)")
    purify_warmup: int = Field(0, ge=0, description="iterations before purification starts (0)")


class KDPSMRPurifiedOptions(KDPSMROptions, PurifiedOptions):
    """The paper's options and PurifiedLearning's."""


def plugin_from_args(args: StrategyArgs) -> PurifiedLearning:
    """A PurifiedLearning plugin configured from the args' :class:`PurifiedOptions` and ``subjects``."""
    o = args.options_as(PurifiedOptions)
    return PurifiedLearning(weight=o.purify_weight, mode=o.purify_mode, probe_lr=o.probe_lr,
                            warmup=o.purify_warmup, subjects=args.subjects)


@register("purified", summary="fine-tuning + PurifiedLearning (identity probe, purification of expression features)",
          needs_subjects=True, options=PurifiedOptions)
def build_purified(*, model: Any, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> Any:
    """Plain fine-tuning with the PurifiedLearning plugin; the dataset must carry ``subjects``."""
    return SupervisedTemplate(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator,
                                                             plugins=[*plugins, plugin_from_args(args)]))


@register("kdpsmr+purified", summary="KD + PSMR (the paper's method) with PurifiedLearning added", uses_memory=True,
          caps_new_class=True, needs_subjects=True, options=KDPSMRPurifiedOptions)
def build_kdpsmr_purified(*, model: Any, args: StrategyArgs, evaluator: Any = None,
                          plugins: Sequence[Any] = ()) -> Any:
    """The paper's KD + PSMR strategy, with PurifiedLearning appended to its plugins."""
    return build_kdpsmr(model=model, args=args, evaluator=evaluator, plugins=[*plugins, plugin_from_args(args)])
