"""Seed x order statistics of the continual rows: a mean with its 95% t-interval, and paired comparisons.

Every method of a run is trained on the same seeds (same basic model, same split) and the same class
orders, so the fair comparison of two methods is *paired*: the difference ``method - reference`` on each
(seed, order) pair both ran, then a paired t-interval of the mean difference, a paired bootstrap interval
and the Wilcoxon signed-rank p. Pure functions over row objects or their JSON dicts; docs/benchmarks.md
("Confidence intervals and paired statistics") says how to read them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compound_fer.evaluation.metrics import mean_confidence_interval
from compound_fer.evaluation.rows import ContinualRow, Row, as_rows

__all__ = ["DEFAULT_REFERENCE", "PAIRED_METRICS", "mean_ci", "paired_comparison", "paired_block", "row_value"]

#: The reference method of the paired tables: the paper's KD + PSMR (training/strategies.py).
DEFAULT_REFERENCE = "kdpsmr"

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _steps(r: ContinualRow) -> list[float]:
    return [v for v in ((_finite(x)) for x in (r.step_accuracy or [])) if v is not None]


def _overall(r: ContinualRow) -> float | None:
    s = _steps(r)
    return float(np.mean(s)) if s else _finite(r.overall_accuracy)


def _overall_no_step0(r: ContinualRow) -> float | None:
    s = [v for v in ((_finite(x)) for x in (r.step_accuracy or [])[1:]) if v is not None]
    return float(np.mean(s)) if s else _finite(r.overall_accuracy_without_step0)


def _final(r: ContinualRow) -> float | None:
    return _finite(r.step_accuracy[-1]) if r.step_accuracy else None


#: Per-run value of each compared metric, under the key :func:`compound_fer.evaluation.report.summarize`
#: reports its mean (the mean over runs of these values is that summary number for equal-length runs).
PAIRED_METRICS: dict[str, Callable[[ContinualRow], float | None]] = {
    "overall_accuracy": _overall,
    "overall_accuracy_without_step0": _overall_no_step0,
    "final_accuracy": _final,
}


def row_value(row: ContinualRow | Mapping[str, Any], metric: str) -> float | None:
    """One run's value of ``metric`` (a key of :data:`PAIRED_METRICS`); None when the row lacks it."""
    (r,) = as_rows([row])
    return PAIRED_METRICS[metric](r)  # type: ignore[arg-type]


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean of ``values`` (non-finite ones dropped) with its 95% Student t-interval over the n values.

    ``ci`` is ``[low, high]``, or None with a ``reason`` when n < 2 (one run says nothing about spread).
    """
    v = [x for x in (_finite(x) for x in values) if x is not None]
    if not v:
        return {"n": 0, "mean": None, "half_width": None, "ci": None, "reason": "no values"}
    mean, half = mean_confidence_interval(v, kind="t")
    if len(v) < 2:
        return {"n": 1, "mean": mean, "half_width": None, "ci": None, "reason": "one value: no interval"}
    return {"n": len(v), "mean": mean, "half_width": half, "ci": [mean - half, mean + half]}


def _bootstrap_ci(d: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[float]:
    """Percentile 95% interval of the mean of ``d`` over pair resamples (fixed seed: reproducible)."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _wilcoxon(d: np.ndarray) -> tuple[float | None, str | None]:
    """Two-sided Wilcoxon signed-rank p of the differences (zeros dropped, scipy's default), or a reason."""
    if d.size < 2:
        return None, "fewer than 2 pairs"
    if not np.any(d != 0):
        return None, "all differences are zero"
    from scipy import stats

    try:
        return float(stats.wilcoxon(d).pvalue), None
    except ValueError as err:  # e.g. too few non-zero differences for scipy
        return None, str(err)


def _verdict(ci: list[float] | None) -> str:
    if ci is None:
        return "too few pairs"
    if ci[0] > 0:
        return "ahead"
    if ci[1] < 0:
        return "behind"
    return "not distinguishable"


def paired_comparison(method_values: Mapping[tuple, float | None],
                      reference_values: Mapping[tuple, float | None]) -> dict[str, Any]:
    """``method - reference`` on the keys (e.g. (seed, order)) both have a finite value for.

    Returns n, the pairs used, ``skipped`` (keys of either side without a partner or a value), mean_diff,
    its paired 95% t-interval ``ci``, a paired bootstrap ``bootstrap_ci`` (percentile, fixed seed),
    ``wilcoxon_p`` (two-sided signed-rank; None with ``wilcoxon_reason`` when n < 2 or all differences are
    zero) and ``verdict``: "ahead" / "behind" when the t-interval excludes 0, "not distinguishable"
    otherwise, "too few pairs" when n < 2.
    """
    keys = sorted(set(method_values) | set(reference_values))
    pairs, skipped = [], []
    for k in keys:
        a, b = _finite(method_values.get(k)), _finite(reference_values.get(k))
        (pairs if a is not None and b is not None else skipped).append((k, a, b))
    d = np.array([a - b for _, a, b in pairs], dtype=float)
    out: dict[str, Any] = {"n": int(d.size), "pairs": [list(k) if isinstance(k, tuple) else k for k, _, _ in pairs],
                           "skipped": len(skipped)}
    stats = mean_ci(d)
    out["mean_diff"] = stats["mean"]
    out["ci"] = stats["ci"]
    out["bootstrap_ci"] = _bootstrap_ci(d) if d.size >= 2 else None
    out["wilcoxon_p"], reason = _wilcoxon(d)
    if reason:
        out["wilcoxon_reason"] = reason
    out["verdict"] = _verdict(stats["ci"])
    return out


def _by_group(rows: Sequence[Row | Mapping[str, Any]]) -> dict[str, list[ContinualRow]]:
    groups: dict[str, list[ContinualRow]] = defaultdict(list)
    for r in as_rows(rows):
        if isinstance(r, ContinualRow):
            groups[r.group].append(r)
    return dict(groups)


def _values(rs: Sequence[ContinualRow], metric: str) -> dict[tuple[int, int], float | None]:
    """(seed, order_index) -> value; a pair written twice keeps its last row."""
    return {(int(r.seed), int(r.order_index)): PAIRED_METRICS[metric](r) for r in rs}


def paired_block(rows: Sequence[Row | Mapping[str, Any]], *, reference: str = DEFAULT_REFERENCE,
                 metrics: Sequence[str] = tuple(PAIRED_METRICS)) -> dict[str, Any]:
    """The ``paired`` block of results.json: per metric, each other report group against ``reference``.

    Groups are the summary's (the method, with its mode when not strict). When the reference is absent,
    or every group has a single run, the block has ``available: False`` and a ``reason`` instead.
    """
    groups = _by_group(rows)
    block: dict[str, Any] = {"reference": reference, "pairing": "(seed, order_index)",
                             "ci": "95% paired Student t", "test": "Wilcoxon signed-rank, two-sided"}
    if not groups:
        return {**block, "available": False, "reason": "no continual rows"}
    if reference not in groups:
        return {**block, "available": False,
                "reason": f"reference method {reference!r} not in this run (methods: {', '.join(groups)})"}
    others = [g for g in groups if g != reference]
    if not others:
        return {**block, "available": False, "reason": f"only the reference method {reference!r} ran"}
    if all(len(rs) < 2 for rs in groups.values()):
        return {**block, "available": False,
                "reason": "one run per method (one seed x one order): nothing to pair statistically"}
    block["available"] = True
    block["metrics"] = {}
    for metric in metrics:
        ref = _values(groups[reference], metric)
        per: dict[str, Any] = {}
        for g in others:
            cmp = paired_comparison(_values(groups[g], metric), ref)
            cmp["seeds"] = sorted({p[0] for p in cmp["pairs"]})
            cmp["orders"] = sorted({p[1] for p in cmp["pairs"]})
            per[g] = cmp
        block["metrics"][metric] = per
    return block
