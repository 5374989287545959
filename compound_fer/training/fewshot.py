"""The reference's few-shot protocol, scored both ways.

For one compound class: copy the basic model, grow it to 7 outputs (6 basic + the new class), train on
``shots`` images of the new class ONLY, distilling from the frozen basic model (gamma = kd_gamma(0) = 0.1,
T = 3, no replay). The reference scores only the new class's test images (new-class recall), which is
why one shot can give 100%: a model that answers "new class" for everything is perfect on it. We also
report the accuracy over all 7 classes and on the basic classes (retention), which it never measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from compound_fer.evaluation.metrics import accuracy, balanced_accuracy, harmonic_mean, step_accuracy

__all__ = ["FewShotResult", "score_fewshot", "fewshot_table"]


@dataclass(frozen=True)
class FewShotResult:
    """One few-shot episode. Accuracies are over the test images of the episode's classes (model labels).

    ``shot_indices``: the ``train`` FaceSet rows used as shots. ``seven_way_accuracy``: accuracy over the
    basic + new classes' test images (8-way when neutral is included; ``n_way`` says which).
    ``basic_accuracy_before``: the basic model's accuracy on the same basic images, for retention.
    """

    compound: str
    shots: int
    seed: int
    shot_indices: list[int]
    new_class_recall: float
    seven_way_accuracy: float
    basic_accuracy: float
    harmonic_mean: float = float("nan")
    balanced_accuracy: float = float("nan")
    basic_accuracy_before: float = float("nan")
    n_way: int = 7
    n_test_new: int = 0
    n_test_basic: int = 0
    epochs: int = 0
    lr: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_fewshot(y_true: Any, y_pred: Any, *, new_class: int, basic_classes: Iterable[int]) -> dict[str, float]:
    """The three scores of an episode from predictions (any label space).

    ``new_class_recall``: correct among the new class's images (the reference's number);
    ``seven_way_accuracy``: correct among all images of the basic and new classes;
    ``basic_accuracy``: correct among the basic classes' images (with the new class a possible answer);
    ``harmonic_mean`` of the recall and the basic accuracy, and ``balanced_accuracy`` (mean per-class recall of
    the basic classes and the new one): the generalised few-shot scores.
    """
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    basic = [int(c) for c in basic_classes]
    keep = np.isin(t, basic + [int(new_class)])
    recall, basic_acc = step_accuracy(t, p, [int(new_class)]), step_accuracy(t, p, basic)
    return {
        "new_class_recall": recall,
        "seven_way_accuracy": accuracy(t[keep], p[keep]),
        "basic_accuracy": basic_acc,
        "harmonic_mean": harmonic_mean(recall, basic_acc),
        "balanced_accuracy": balanced_accuracy(t[keep], p[keep], basic + [int(new_class)]),
    }


_SCORES = ("harmonic_mean", "new_class_recall", "basic_accuracy", "balanced_accuracy", "seven_way_accuracy")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fewshot_table(results: Iterable[FewShotResult | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof=1; 0 for a single run) of the three scores per shot count (``compound``
    = "all", over every compound class and seed) and per (compound, shots); rows sorted by shots."""
    rows = [r.to_dict() if isinstance(r, FewShotResult) else dict(r) for r in results]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault(("all", int(r["shots"])), []).append(r)
        groups.setdefault((str(r["compound"]), int(r["shots"])), []).append(r)
    out = []
    for (compound, shots), members in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0] != "all", kv[0][0])):
        row: dict[str, Any] = {"compound": compound, "shots": shots, "n": len(members)}
        for key in _SCORES:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([m.get(key, float("nan")) for m in members])
        out.append(row)
    return out
