"""Continual-learning metrics as pure functions (numpy in, floats out), plus the glue that collects them.

Every number the benchmarks report comes from here: step accuracy, the accuracy matrix, Overall Accuracy
(with and without step 0), new/old-class accuracy, basic retention, forgetting, backward transfer,
per-class recall and the confusion matrix. Definitions and formulas: docs/metrics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "accuracy",
    "step_accuracy",
    "accuracy_matrix",
    "accuracy_matrix_row",
    "overall_accuracy",
    "new_old_accuracy",
    "basic_retention",
    "average_forgetting",
    "backward_transfer",
    "per_class_recall",
    "balanced_accuracy",
    "harmonic_mean",
    "mean_confidence_interval",
    "t_quantile",
    "confusion_matrix",
    "evaluate_predictions",
    "ContinualRecord",
    "summarize_orders",
]


def _labels(y: Any) -> np.ndarray:
    arr = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y).reshape(-1)
    return arr.astype(np.int64)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions; NaN when there are no samples."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else float("nan")


def step_accuracy(y_true: Any, y_pred: Any, seen_classes: Iterable[int]) -> float:
    """Accuracy on the test samples whose true class is in ``seen_classes`` (the classes learned so far).

    Predictions are not restricted: predicting a class that is not yet seen counts as an error.
    """
    t, p = _pair(y_true, y_pred)
    keep = np.isin(t, np.fromiter((int(c) for c in seen_classes), dtype=np.int64))
    return accuracy(t[keep], p[keep])


def accuracy_matrix_row(
    y_true: Any, y_pred: Any, experience_classes: Sequence[Iterable[int]]
) -> np.ndarray:
    """One row of the accuracy matrix: accuracy on the classes of each experience j (NaN if j has no samples)."""
    return np.array([step_accuracy(y_true, y_pred, cls) for cls in experience_classes], dtype=float)


def accuracy_matrix(
    y_true_per_step: Sequence[Any], y_pred_per_step: Sequence[Any], experience_classes: Sequence[Iterable[int]]
) -> np.ndarray:
    """R[i, j] = accuracy, after training step i, on the test samples of the classes of experience j."""
    if len(y_true_per_step) != len(y_pred_per_step):
        raise ValueError("y_true_per_step and y_pred_per_step must have one entry per step")
    exp = [list(c) for c in experience_classes]
    return (
        np.stack([accuracy_matrix_row(t, p, exp) for t, p in zip(y_true_per_step, y_pred_per_step)])
        if exp
        else np.zeros((0, 0))
    )


def overall_accuracy(step_accuracies: Any, *, include_step0: bool = True) -> float:
    """Mean step accuracy over orders and steps. ``step_accuracies``: (steps,) or (orders, steps).

    ``include_step0=True`` is the reference's Overall Accuracy (the basic model's accuracy counts as one of
    the 16 steps); ``False`` averages the continual steps only.
    """
    acc = np.atleast_2d(np.asarray(step_accuracies, dtype=float))
    if not include_step0:
        acc = acc[:, 1:]
    if acc.size == 0:
        return float("nan")
    return float(np.nanmean(acc))


def new_old_accuracy(
    y_true: Any, y_pred: Any, *, new_classes: Iterable[int], old_classes: Iterable[int]
) -> tuple[float, float]:
    """(accuracy on the new classes' samples, accuracy on the old classes' samples) at one step."""
    return step_accuracy(y_true, y_pred, new_classes), step_accuracy(y_true, y_pred, old_classes)


def basic_retention(basic_accuracies: Sequence[float]) -> np.ndarray:
    """Accuracy on the basic classes after each step divided by the same accuracy after step 0."""
    acc = np.asarray(basic_accuracies, dtype=float)
    if acc.size == 0:
        return acc
    if not acc[0] > 0:
        return np.full_like(acc, np.nan)
    return acc / acc[0]


def _square(matrix: Any) -> np.ndarray:
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] > r.shape[1]:
        raise ValueError(f"accuracy matrix must be (steps, experiences) with steps <= experiences, got {r.shape}")
    return r


def average_forgetting(matrix: Any) -> float:
    """Chaudhry et al. (2018): mean over old experiences j < T-1 of max_{l < T-1} R[l, j] - R[T-1, j].

    ``matrix`` is the accuracy matrix after T steps (rows: steps; entries j > i are ignored). NaN if T < 2.
    """
    r = _square(matrix)
    t = r.shape[0]
    if t < 2:
        return float("nan")
    f = [np.nanmax(r[j : t - 1, j]) - r[t - 1, j] for j in range(t - 1)]
    return float(np.mean(f))


def backward_transfer(matrix: Any) -> float:
    """Lopez-Paz & Ranzato (2017): BWT = mean over j < T-1 of R[T-1, j] - R[j, j] (negative = forgetting)."""
    r = _square(matrix)
    t = r.shape[0]
    if t < 2:
        return float("nan")
    return float(np.mean([r[t - 1, j] - r[j, j] for j in range(t - 1)]))


def per_class_recall(y_true: Any, y_pred: Any, classes: Iterable[int] | None = None) -> dict[int, float]:
    """Recall of each class (correct / samples of that class); NaN for a class without samples."""
    t, p = _pair(y_true, y_pred)
    cls = sorted(set(t.tolist())) if classes is None else [int(c) for c in classes]
    return {c: accuracy(t[t == c], p[t == c]) for c in cls}


def balanced_accuracy(y_true: Any, y_pred: Any, classes: Iterable[int] | None = None) -> float:
    """Mean per-class recall over ``classes`` (default: the classes present), classes without samples left out."""
    recalls = [r for r in per_class_recall(y_true, y_pred, classes).values() if not math.isnan(r)]
    return float(np.mean(recalls)) if recalls else float("nan")


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b): high only when both are (generalised few-shot: new-class recall and basic accuracy)."""
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def t_quantile(n: int, level: float = 0.95) -> float:
    """The two-sided Student t quantile for a ``level`` interval of a mean over ``n`` values (n - 1 d.f.)."""
    from scipy import stats  # lazy: only the seed x order statistics need scipy

    if n < 2:
        raise ValueError(f"a t quantile needs at least 2 values, got {n}")
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def mean_confidence_interval(values: Sequence[float], *, z: float = 1.96, kind: str = "normal") -> tuple[float, float]:
    """(mean, half-width of its 95% confidence interval); the half-width is 0.0 for a single value.

    ``kind="normal"`` (default): ``z * std / sqrt(n)``, as few-shot papers report over hundreds of episodes.
    ``kind="t"``: the Student t quantile with n - 1 degrees of freedom instead of ``z`` (95% only), the
    right interval for a few seed x order runs (n = 9: t = 2.306, not 1.96).
    """
    if kind not in ("normal", "t"):
        raise ValueError(f"kind must be 'normal' or 't', got {kind!r}")
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), 0.0
    q = t_quantile(v.size) if kind == "t" else z
    return float(v.mean()), float(q * v.std(ddof=1) / math.sqrt(v.size))


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[int]) -> np.ndarray:
    """Counts C[a, b] = samples of class classes[a] predicted as classes[b]; predictions outside ``classes``
    (e.g. a class not yet learned) fall in an extra last column, so rows always sum to the class counts."""
    t, p = _pair(y_true, y_pred)
    cls = [int(c) for c in classes]
    index = {c: k for k, c in enumerate(cls)}
    out = np.zeros((len(cls), len(cls) + 1), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist()):
        if a in index:
            out[index[a], index.get(b, len(cls))] += 1
    return out


# --------------------------------------------------------------------------------------------------
# Collecting predictions and per-step results


def _iter_datasets(data: Any) -> list[Any]:
    """Datasets inside a stream, a slice of a stream, an experience, or a dataset."""
    if hasattr(data, "dataset") and hasattr(data, "current_experience"):  # an experience
        return [data.dataset]
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(x, "shape") for x in data):
        import torch

        return [torch.utils.data.TensorDataset(data[0], data[1])]
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not _is_stream(data):
        return [data]
    return [exp.dataset for exp in data]


def _is_stream(data: Any) -> bool:
    try:
        first = data[0]
    except Exception:  # noqa: BLE001 - anything not indexable like a stream
        return False
    return hasattr(first, "dataset") and hasattr(first, "current_experience")


def evaluate_predictions(
    model: Any, data: Any, *, batch_size: int = 128, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a stream (or stream slice), an experience, a dataset or an ``(x, y)`` tensor pair.

    Returns ``(y_true, y_pred)`` as int64 arrays (argmax of the outputs). Avalanche datasets are switched to
    their eval transforms; task labels, when present, are passed to multi-task models. The model's
    train/eval mode is restored. Evaluate ``strategy.model``, not the model you built: GDumb and iCaRL
    replace or wrap it.
    """
    import torch
    from avalanche.models.utils import avalanche_forward
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    trues, preds = [], []
    try:
        with torch.no_grad():
            for ds in _iter_datasets(data):
                if hasattr(ds, "eval") and callable(ds.eval) and not isinstance(ds, torch.nn.Module):
                    ds = ds.eval()
                collate = getattr(ds, "collate_fn", None)
                for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
                    x, y = batch[0].to(device), batch[1]
                    if len(batch) > 2:
                        out = avalanche_forward(model, x, batch[2].to(device))
                    else:
                        out = model(x)
                    trues.append(_labels(y))
                    preds.append(_labels(out.argmax(dim=1)))
    finally:
        model.train(was_training)
    if not trues:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(trues), np.concatenate(preds)


@dataclass
class ContinualRecord:
    """Per-step predictions of one continual run (one class order), turned into every metric at once.

    Call ``add_step(y_true, y_pred, new_classes=...)`` after each training step with the predictions on the
    test data of (at least) all classes seen so far; ``experience_classes`` grows as steps are added.
    ``basic_classes`` defaults to the classes of step 0.
    """

    experience_classes: list[list[int]] = field(default_factory=list)
    y_true: list[np.ndarray] = field(default_factory=list)
    y_pred: list[np.ndarray] = field(default_factory=list)
    basic_classes: list[int] | None = None

    def add_step(self, y_true: Any, y_pred: Any, *, new_classes: Iterable[int]) -> None:
        """Record the predictions after training on the experience that introduced ``new_classes``."""
        self.experience_classes.append(sorted(int(c) for c in new_classes))
        t, p = _pair(y_true, y_pred)
        self.y_true.append(t)
        self.y_pred.append(p)

    def set_step(self, step: int, y_true: Any, y_pred: Any, *, new_classes: Iterable[int]) -> None:
        """Record (or overwrite, when evaluated again) the predictions after step ``step``."""
        if step < len(self.y_true):
            t, p = _pair(y_true, y_pred)
            self.experience_classes[step] = sorted(int(c) for c in new_classes)
            self.y_true[step], self.y_pred[step] = t, p
        elif step == len(self.y_true):
            self.add_step(y_true, y_pred, new_classes=new_classes)
        else:
            raise ValueError(
                f"step {step} recorded before step {len(self.y_true)}: evaluate the test stream after every "
                "training experience (StepPredictionsPlugin / ContinualRecord need one row per step)"
            )

    @property
    def steps(self) -> int:
        return len(self.y_true)

    def seen_classes(self, step: int) -> list[int]:
        return sorted({c for cls in self.experience_classes[: step + 1] for c in cls})

    def step_accuracies(self) -> list[float]:
        return [step_accuracy(t, p, self.seen_classes(i)) for i, (t, p) in enumerate(zip(self.y_true, self.y_pred))]

    def matrix(self) -> np.ndarray:
        """Accuracy matrix (steps x steps): rows after step i, columns the classes of experience j."""
        return accuracy_matrix(self.y_true, self.y_pred, self.experience_classes)

    def to_dict(self) -> dict[str, Any]:
        """All metrics of the run as plain JSON-ready values (lists, floats; NaN kept as float('nan'))."""
        n = self.steps
        if n == 0:
            return {"steps": 0}
        basic = list(self.basic_classes) if self.basic_classes is not None else self.experience_classes[0]
        steps_acc = self.step_accuracies()
        new_acc, old_acc, basic_acc = [], [], []
        for i, (t, p) in enumerate(zip(self.y_true, self.y_pred)):
            old = self.seen_classes(i - 1) if i else []
            na, oa = new_old_accuracy(t, p, new_classes=self.experience_classes[i], old_classes=old)
            new_acc.append(na)
            old_acc.append(oa)
            basic_acc.append(step_accuracy(t, p, basic))
        r = self.matrix()
        seen = self.seen_classes(n - 1)
        return {
            "steps": n,
            "experience_classes": [list(c) for c in self.experience_classes],
            "step_accuracy": steps_acc,
            "overall_accuracy": overall_accuracy(steps_acc),
            "overall_accuracy_without_step0": overall_accuracy(steps_acc, include_step0=False),
            "accuracy_matrix": r.tolist(),
            "new_class_accuracy": new_acc,
            "old_class_accuracy": old_acc,
            "basic_accuracy": basic_acc,
            "basic_retention": basic_retention(basic_acc).tolist(),
            "average_forgetting": average_forgetting(r),
            "backward_transfer": backward_transfer(r),
            "final_per_class_recall": {
                str(k): v for k, v in per_class_recall(self.y_true[-1], self.y_pred[-1], seen).items()
            },
            "final_confusion_classes": seen,
            "final_confusion_matrix": confusion_matrix(self.y_true[-1], self.y_pred[-1], seen).tolist(),
        }


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined values; NaN (without numpy's empty-slice warning) when none is defined."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def summarize_orders(records: Sequence[ContinualRecord | Mapping[str, Any]]) -> dict[str, Any]:
    """Overall Accuracy (with/without step 0) and mean step curves over several class orders."""
    dicts = [r.to_dict() if isinstance(r, ContinualRecord) else dict(r) for r in records]
    if not dicts:
        raise ValueError("summarize_orders needs at least one record")
    steps = np.array([d["step_accuracy"] for d in dicts], dtype=float)
    forgetting = np.array([d["average_forgetting"] for d in dicts], dtype=float)
    bwt = np.array([d["backward_transfer"] for d in dicts], dtype=float)
    final_ret = np.array([d["basic_retention"][-1] for d in dicts], dtype=float)
    return {
        "orders": len(dicts),
        "overall_accuracy": overall_accuracy(steps),
        "overall_accuracy_without_step0": overall_accuracy(steps, include_step0=False),
        "overall_accuracy_std_over_orders": float(np.std(np.nanmean(steps, axis=1))),
        "mean_step_accuracy": np.nanmean(steps, axis=0).tolist(),
        "final_accuracy": float(np.nanmean(steps[:, -1])),
        "average_forgetting": float(np.nanmean(forgetting)),
        "backward_transfer": float(np.nanmean(bwt)),
        "final_basic_retention": _nanmean(final_ret),
    }
