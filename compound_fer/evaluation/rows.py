"""The results rows of a run as dataclasses: one per basic model, continual run, few-shot episode.

On disk a row is a JSON object with the same keys as always (``kind`` first), so rows written by older
versions still load: :func:`row_from_dict` keeps keys it does not know in ``extra`` and writes them back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, Mapping, Union

__all__ = ["BasicRow", "ContinualRow", "EpisodeRow", "FewShotRow", "Row", "as_row", "as_rows", "row_from_dict"]


class _RowBase:
    """JSON <-> dataclass for rows; None-valued optional keys are left out of the JSON."""

    kind: ClassVar[str]
    #: keys written even when None (None is a value there, not an absent key)
    _keep_none: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The row as written to disk: ``kind``, then the fields in order, then unknown keys kept from a file."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is not None or f.name in self._keep_none:
                out[f.name] = v
        out.update(getattr(self, "extra"))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "_RowBase":
        """A row from its JSON object; keys that are not fields go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k != "kind"}
        return cls(**known, extra=extra)


@dataclass(kw_only=True)
class BasicRow(_RowBase):
    """The basic model of one seed: its split, test accuracy and training summary."""

    kind: ClassVar[str] = "basic"
    seed: int
    split: dict | None = None
    trunk_cache_seconds: float | None = None
    classes: list[str] | None = None
    backbone: str | None = None
    head: str | None = None
    image_size: int | None = None
    input: str | None = None
    best_epoch: int | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None
    ranks_in_sync: bool | None = None
    auxiliary: dict | None = None  # basic.aux_geometry / aux_aus: the auxiliary heads' weights
    geometry: dict | None = None  # the geometry stage (model.geometry: landmarks): features, accuracies
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ContinualRow(_RowBase):
    """One method over one class order: budget, timing and every metric of the run's steps."""

    kind: ClassVar[str] = "continual"
    _keep_none: ClassVar[frozenset[str]] = frozenset({"new_class_cap"})
    method: str
    order_index: int
    order: list[str]
    seed: int
    memory_total: int | None = None
    memory_quota: int | None = None
    new_class_cap: int | None = None
    seconds: float | None = None
    step_seconds: list[float] | None = None
    step_samples: list[int] | None = None  # training samples (minibatch rows, replayed ones included) per step
    train_seconds_after_basic: float | None = None
    class_names: list[str] | None = None
    steps: int | None = None
    experience_classes: list[list[int]] | None = None
    step_accuracy: list[float] | None = None
    overall_accuracy: float | None = None
    overall_accuracy_without_step0: float | None = None
    accuracy_matrix: list[list[float]] | None = None
    new_class_accuracy: list[float] | None = None
    old_class_accuracy: list[float] | None = None
    basic_accuracy: list[float] | None = None
    basic_retention: list[float] | None = None
    average_forgetting: float | None = None
    backward_transfer: float | None = None
    final_per_class_recall: dict[str, float] | None = None
    final_confusion_classes: list[int] | None = None
    final_confusion_matrix: list[list[int]] | None = None
    ranks_in_sync: bool | None = None
    trunk_cache_seconds: float | None = None
    mode: str | None = None
    world_size: int | None = None
    zero_shot: list[dict] | None = None  # continual.component_init: new-class recall before training, per step
    bias_correction: str | None = None  # continual.bias_correction: "none" or the corrections joined by "+"
    bias_steps: list[dict] | None = None  # what each correction did at each step (scales, shifts, held-out faces)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """The report's group: the method, with the evaluation mode when it is not strict."""
        mode = self.mode or "strict"
        return self.method if mode == "strict" else f"{self.method} ({mode})"


@dataclass(kw_only=True)
class FewShotRow(_RowBase):
    """One few-shot episode. ``seed`` is the episode's seed (run seed x 100 + repeat), as always written."""

    kind: ClassVar[str] = "fewshot"
    seed: int
    repeat: int | None = None
    compound: str
    shots: int
    shot_indices: list[int] | None = None
    new_class_recall: float = math.nan
    seven_way_accuracy: float = math.nan
    basic_accuracy: float | None = None
    harmonic_mean: float | None = None  # of new_class_recall and basic_accuracy: the generalised few-shot score
    balanced_accuracy: float | None = None  # mean per-class recall over the basic classes and the new one
    basic_accuracy_before: float | None = None
    n_way: int | None = None
    n_test_new: int | None = None
    n_test_basic: int | None = None
    epochs: int | None = None
    lr: float | None = None
    settings: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class EpisodeRow(_RowBase):
    """One learner over N-way K-shot episodes (compound classes, scored subjects): mean accuracy and the
    half-width of its 95% confidence interval."""

    kind: ClassVar[str] = "episodes"
    seed: int
    learner: str
    ways: int
    shots: int
    queries: int
    accuracy_mean: float = math.nan
    accuracy_ci95: float = math.nan
    episodes: int = 0
    queries_per_class_mean: float | None = None
    seconds: float | None = None
    settings: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Row = Union[BasicRow, ContinualRow, FewShotRow, EpisodeRow]
_KINDS: dict[str, type] = {c.kind: c for c in (BasicRow, ContinualRow, FewShotRow, EpisodeRow)}


def row_from_dict(d: Mapping[str, Any]) -> Row:
    """The dataclass for a row's JSON object (by its ``kind``); ValueError for an unknown kind."""
    cls = _KINDS.get(str(d.get("kind")))
    if cls is None:
        raise ValueError(f"not a results row: kind {d.get('kind')!r} (expected one of {', '.join(_KINDS)})")
    return cls.from_dict(d)


def as_row(r: Row | Mapping[str, Any]) -> Row:
    """A row object from a row object or its JSON dict."""
    return r if isinstance(r, _RowBase) else row_from_dict(r)  # type: ignore[return-value]


def as_rows(rows: Iterable[Row | Mapping[str, Any]]) -> list[Row]:
    return [as_row(r) for r in rows]
