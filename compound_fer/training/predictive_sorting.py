"""Predictive Sorting Memory Replay (PSMR), as the reference code does it.

Each class's training images are ranked by the current model's logit of their true class (highest
first) and the top ``m`` are kept: the basic classes are scored with the basic model, every later class
with the model that has just learned it; a class's list is never rescored. A continual step trains on
the memory (``m`` per old class) plus ``m`` random images of the new class, shuffled together.

Three pieces, Avalanche-style: :class:`PredictiveSortingSelection` (an ``ExemplarsSelectionStrategy``:
how to rank), :class:`PSMRBuffer` (an ``ExemplarsBuffer``: per-class lists in ``grow`` or ``limit``
mode), and :class:`PSMRPlugin` (when to store and what a step trains on).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import torch
from avalanche.benchmarks.utils import concat_datasets
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.storage_policy import ExemplarsBuffer, ExemplarsSelectionStrategy
from torch import Tensor, nn
from torch.utils.data import DataLoader

from compound_fer.config import MemorySelection
from compound_fer.errors import ConfigError
from compound_fer.memory import resolve_memory

Score = Literal["logit", "probability"]
Mode = Literal["grow", "limit"]
#: Which ranks a class's memory keeps: ``top`` (the paper's: the most confident first), ``spread`` (ranks
#: evenly across the ranking, so any first m span easy to hard), ``random`` (a seeded shuffle: the ranking
#: ignored, as GDumb's memory). Lists are cut from the end, so the order is the choice.
Pick = MemorySelection


@torch.no_grad()
def true_class_scores(model: nn.Module, data, *, score: Score = "logit", batch_size: int = 128,
                      device: str | torch.device = "cpu") -> Tensor:
    """Score of each sample's own class (logit or softmax probability), batched under no_grad.

    Uses the dataset's eval transforms when it has them; restores the model's train/eval mode.
    """
    if score not in ("logit", "probability"):
        raise ConfigError(f"PSMR score must be 'logit' or 'probability', got {score!r}")
    if hasattr(data, "eval"):
        data = data.eval()
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    try:
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            x, y = batch[0].to(device), torch.as_tensor(batch[1]).long().to(device)
            z = model(x)
            if score == "probability":
                z = torch.softmax(z, dim=1)
            out.append(z.gather(1, y.view(-1, 1)).squeeze(1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def sort_by_score(scores: Tensor) -> list[int]:
    """Indices by decreasing score; ties keep dataset order (stable)."""
    return torch.sort(scores, descending=True, stable=True).indices.tolist()


def spread_order(n: int) -> list[int]:
    """Ranks 0..n-1 in an order whose every prefix spreads evenly over the ranking: the k-th pick is the
    rank at quantile vdc(k) (van der Corput: 0, 1/2, 1/4, 3/4, ...), repeats skipped.
    ``spread_order(4) == [0, 2, 1, 3]``."""
    def vdc(k: int) -> float:
        x, f = 0.0, 0.5
        while k:
            x, k, f = x + f * (k & 1), k >> 1, f / 2
        return x

    if n <= 0:
        return []
    seen: dict[int, None] = {}
    for k in range(1 << max(n - 1, 0).bit_length()):  # 2^b >= n quantiles reach every rank
        seen.setdefault(int(vdc(k) * n), None)
    return list(seen)


def pick_order(ranked: list[int], pick: Pick, *, generator: torch.Generator | None = None) -> list[int]:
    """``ranked`` (best first) reordered so that its first m are the memory ``pick`` asks for."""
    if pick == "top":
        return list(ranked)
    if pick == "spread":
        return [ranked[r] for r in spread_order(len(ranked))]
    if pick == "random":
        return [ranked[i] for i in torch.randperm(len(ranked), generator=generator).tolist()]
    raise ConfigError(f"PSMR selection must be 'top', 'spread' or 'random', got {pick!r}")


class PredictiveSortingSelection(ExemplarsSelectionStrategy):
    """Rank a class's images by the current model's score of their true class, most confident first
    (``pick="top"``, the paper's); ``spread`` and ``random`` keep other ranks (see :data:`Pick`)."""

    def __init__(self, *, score: Score = "logit", batch_size: int | None = None, pick: Pick = "top",
                 seed: int = 0) -> None:
        if score not in ("logit", "probability"):
            raise ConfigError(f"PSMR score must be 'logit' or 'probability', got {score!r}")
        pick_order([], pick)  # refuse an unknown pick now, not at the first store
        self.score: Score = score
        self.pick: Pick = pick
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size = batch_size
        self.last_scores: Tensor | None = None

    def make_sorted_indices(self, strategy, data) -> list[int]:  # noqa: ANN001 - Avalanche types
        """Avalanche hook: indices of ``data`` sorted by decreasing true-class score of ``strategy.model``."""
        bs = self.batch_size or getattr(strategy, "eval_mb_size", None) or 128
        scores = true_class_scores(strategy.model, data, score=self.score, batch_size=bs,
                                   device=getattr(strategy, "device", "cpu"))
        self.last_scores = scores
        return pick_order(sort_by_score(scores), self.pick, generator=self.generator)


def _class_indices(data) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(data.targets):
        groups[int(t)].append(i)
    return dict(groups)


class PSMRBuffer(ExemplarsBuffer):
    """Per-class memories: each class keeps the first images of its ranking (in the selection's order;
    best first for the paper's ``top``).

    ``grow``: each class keeps ``quota`` images, memory grows with the classes (``max_size`` follows).
    ``limit``: the total ``max_size`` is fixed; with ``n`` classes each keeps the top ``max_size // n``
    of its list, so older lists shrink from the bottom as classes arrive.
    A class is ranked once, when it is stored; later steps only cut its list.
    """

    def __init__(self, *, mode: Mode = "grow", quota: int | None = None, max_size: int | None = None,
                 selection_strategy: ExemplarsSelectionStrategy | None = None) -> None:
        if mode == "grow":
            if quota is None or quota < 1:
                raise ConfigError(f"PSMR mode 'grow' needs a per-class quota >= 1, got {quota}")
        elif mode == "limit":
            if max_size is None or max_size < 1:
                raise ConfigError(f"PSMR mode 'limit' needs a total memory max_size >= 1, got {max_size}")
        else:
            raise ConfigError(f"PSMR memory mode must be 'grow' or 'limit', got {mode!r}")
        super().__init__(max_size=0 if mode == "grow" else int(max_size))
        self.mode: Mode = mode
        self.quota = quota
        self.selection_strategy = selection_strategy or PredictiveSortingSelection()
        self.class_data: dict[int, object] = {}      # class -> the (full) dataset its list indexes
        self.class_order: dict[int, list[int]] = {}  # class -> kept indices, best first
        self.n_classes = 0
        # One pool: every stored class's dataset concatenated once, when it is stored; a step's memory is
        # one subset of it, rebuilt only when the kept indices change (O(memory), not O(classes) datasets).
        self._pool = None
        self._offset: dict[int, int] = {}  # class -> where its dataset starts in the pool
        self._kept: list[int] | None = None  # pool indices of the current buffer

    def per_class(self, n_classes: int | None = None) -> int:
        """The per-class quota m for ``n_classes`` classes (grow: fixed; limit: ``max_size // n``)."""
        if self.mode == "grow":
            return int(self.quota)
        n = max(1, n_classes if n_classes is not None else max(self.n_classes, 1))
        return max(1, self.max_size // n)

    @property
    def classes(self) -> list[int]:
        return list(self.class_order)

    def kept_indices(self, cls: int) -> list[int]:
        """Indices (into the class's stored dataset) currently in memory, best first."""
        return self.class_order[cls][: self.per_class(self.n_classes)]

    def store(self, strategy, data, cls: int) -> list[int]:  # noqa: ANN001
        """Rank ``data`` (one class) with ``strategy.model`` and keep the top m; returns the kept indices."""
        if len(data) == 0:
            return []
        n_after = len(set(self.class_order) | {cls})
        order = self.selection_strategy.make_sorted_indices(strategy, data)
        self._add_to_pool(cls, data)
        self.class_data[cls] = data
        self.class_order[cls] = list(order[: self.per_class(n_after)])
        self.set_num_classes(n_after)
        return self.kept_indices(cls)

    def set_num_classes(self, n_classes: int) -> None:
        """Limit mode: cut every list to ``max_size // n_classes``; grow mode: just update the size."""
        self.n_classes = max(n_classes, len(self.class_order))
        self._rebuild()

    def _add_to_pool(self, cls: int, data) -> None:  # noqa: ANN001 - an Avalanche dataset
        """Append a (re)stored class's dataset to the pool; a restored class is re-appended (its old slice
        is simply no longer indexed)."""
        self._offset[cls] = 0 if self._pool is None else len(self._pool)
        self._pool = data if self._pool is None else concat_datasets([self._pool, data])
        self._kept = None

    def _rebuild(self) -> None:
        if self.mode == "grow":
            self.max_size = self.per_class() * len(self.class_order)
        kept = [self._offset[c] + i for c in self.class_order for i in self.kept_indices(c)]
        if kept == self._kept:
            return  # nothing changed (grow mode, or limit mode while the quota stays put)
        self._kept = kept
        self.buffer = self._pool.subset(kept) if self._pool is not None else concat_datasets([])

    def post_adapt(self, agent_state, exp) -> None:  # noqa: ANN001
        """Avalanche hook: rank and store every class of ``exp`` with the agent's current model."""
        groups = _class_indices(exp.dataset)
        for cls, idx in sorted(groups.items()):
            self.store(agent_state, exp.dataset.subset(idx), cls)

    def resize(self, strategy, new_size: int) -> None:  # noqa: ANN001
        """Limit mode: change the total budget and re-cut the lists."""
        if self.mode != "limit":
            raise ConfigError("PSMRBuffer.resize only applies to mode 'limit'; in 'grow' mode change quota")
        self.max_size = int(new_size)
        self._rebuild()


#: the per-class memory as a share of the training images when no quota is given
DEFAULT_MEMORY_FRACTION = 0.3


class PSMRPlugin(SupervisedPlugin):
    """Reproduces the reference's replay: after each experience, rank and store its classes with the model
    that has just learned them; from the second experience on, replace the step's data by the memory plus
    ``m`` random images of each new class (the dataloader shuffles them together).

    ``quota`` is m; without it, m is :func:`compound_fer.memory.memory_budget` of ``memory_fraction``
    over ``total_train_images`` and ``num_classes_total`` when both are given, else over the first
    experience's images and classes. ``mode="limit"`` fixes the total ``max_size`` (default:
    ``m * num_classes_total``) and shrinks m as classes arrive.
    """

    def __init__(self, *, quota: int | None = None, memory_fraction: float = DEFAULT_MEMORY_FRACTION,
                 num_classes_total: int | None = None, total_train_images: int | None = None,
                 mode: Mode = "grow", max_size: int | None = None, score: Score = "logit",
                 selection: Pick = "top", new_class_samples: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if mode not in ("grow", "limit"):
            raise ConfigError(f"PSMR memory mode must be 'grow' or 'limit', got {mode!r}")
        if quota is not None and quota < 1:
            raise ConfigError(f"PSMR quota must be >= 1, got {quota}")
        if not 0 <= memory_fraction <= 1:  # the bound of continual.memory_fraction in a config
            raise ConfigError(f"memory_fraction must be between 0 and 1 (a share of the training images), "
                              f"got {memory_fraction}")
        budget = resolve_memory(quota=quota, memory_fraction=memory_fraction, n_train_images=total_train_images,
                                n_classes_total=num_classes_total)
        self.quota = budget.quota if budget is not None else None  # None: decided on the first experience
        self.memory_fraction = memory_fraction
        self.num_classes_total = num_classes_total
        self.mode: Mode = mode
        self.max_size = max_size
        self.selection = PredictiveSortingSelection(score=score, pick=selection, seed=seed)
        self.new_class_samples = new_class_samples
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer: PSMRBuffer | None = None
        self.step_sizes: list[dict[str, int]] = []

    def _make_buffer(self, data) -> PSMRBuffer:  # noqa: ANN001
        if self.quota is None:
            sizes = [len(v) for v in _class_indices(data).values()]
            self.quota = resolve_memory(quota=None, memory_fraction=self.memory_fraction, n_train_images=sum(sizes),
                                        n_classes_total=len(sizes)).quota
        max_size = self.max_size
        if self.mode == "limit" and max_size is None:
            if self.num_classes_total is None:
                raise ConfigError("PSMR mode 'limit' needs max_size or num_classes_total")
            max_size = self.quota * self.num_classes_total
        return PSMRBuffer(mode=self.mode, quota=self.quota, max_size=max_size, selection_strategy=self.selection)

    def after_train_dataset_adaptation(self, strategy, **kwargs):  # noqa: ANN001
        data = strategy.adapted_dataset
        if self.buffer is None:
            self.buffer = self._make_buffer(data)
        if not self.buffer.classes:
            return  # the basic step trains on all its data
        groups = _class_indices(data)
        new = {c: idx for c, idx in groups.items() if c not in self.buffer.class_order}
        self.buffer.set_num_classes(len(self.buffer.classes) + len(new))
        m = self.new_class_samples or self.buffer.per_class()
        picked: list[int] = []
        for _, idx in sorted(new.items()):
            perm = torch.randperm(len(idx), generator=self.generator)[:m].tolist()
            picked.extend(idx[i] for i in perm)
        parts = [self.buffer.buffer]
        if picked:
            parts.append(data.subset(sorted(picked)))
        strategy.adapted_dataset = concat_datasets(parts)
        self.step_sizes.append({"memory": len(self.buffer.buffer), "new": len(picked)})

    def after_training_exp(self, strategy, **kwargs):  # noqa: ANN001
        if self.buffer is None:
            self.buffer = self._make_buffer(strategy.experience.dataset)
        self.buffer.post_adapt(strategy, strategy.experience)


__all__ = ["DEFAULT_MEMORY_FRACTION", "PSMRBuffer", "PSMRPlugin", "PredictiveSortingSelection", "sort_by_score",
           "true_class_scores"]
