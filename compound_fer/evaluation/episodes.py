"""N-way K-shot episodes, drawn and scored as few-shot papers do (Zou et al., ECCV 2022, CDNet).

An episode draws ``ways`` classes, ``shots`` support faces and up to ``queries`` query faces per class,
from one seed, so every learner is scored on the same episodes. A class with fewer than
``shots + queries`` faces gives all it has beyond its support as queries (the count is recorded).
Accuracy is over the episode's queries; the summary is the mean over episodes with the half-width of its
95% confidence interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from compound_fer.errors import ConfigError
from compound_fer.evaluation.metrics import mean_confidence_interval

__all__ = ["Episode", "episode_accuracy", "sample_episodes", "summarise_episodes"]


@dataclass(frozen=True)
class Episode:
    """Row indices (into the labels the episodes were drawn from) of the support and query faces, and
    their episode labels 0..ways-1 (``classes[i]`` is the original label of episode label ``i``)."""

    classes: tuple[int, ...]
    support: np.ndarray
    support_y: np.ndarray
    query: np.ndarray
    query_y: np.ndarray


def sample_episodes(labels: Sequence[int], classes: Sequence[int], *, ways: int, shots: int, queries: int,
                    count: int, seed: int) -> list[Episode]:
    """``count`` episodes over ``classes`` (those with at least ``shots + 1`` faces), from ``seed``."""
    y = np.asarray(labels).reshape(-1)
    rows_of = {int(c): np.flatnonzero(y == c) for c in classes}
    eligible = sorted(c for c, r in rows_of.items() if len(r) > shots)
    if len(eligible) < ways:
        raise ConfigError(f"episodes: {ways}-way {shots}-shot needs {ways} classes with more than {shots} faces; "
                          f"only {len(eligible)} have them ({', '.join(map(str, eligible)) or 'none'})")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        picked = tuple(int(c) for c in rng.choice(eligible, size=ways, replace=False))
        sup, sup_y, qry, qry_y = [], [], [], []
        for i, c in enumerate(picked):
            rows = rng.permutation(rows_of[c])
            sup.append(rows[:shots])
            q = rows[shots:shots + queries]
            qry.append(q)
            sup_y.append(np.full(shots, i))
            qry_y.append(np.full(len(q), i))
        out.append(Episode(picked, np.concatenate(sup), np.concatenate(sup_y), np.concatenate(qry),
                           np.concatenate(qry_y)))
    return out


def episode_accuracy(query_y: np.ndarray, pred: np.ndarray) -> float:
    """Share of an episode's queries predicted right."""
    return float(np.mean(np.asarray(pred) == np.asarray(query_y))) if len(query_y) else float("nan")


def summarise_episodes(accuracies: Sequence[float], episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean accuracy, 95% CI half-width, episode count and mean queries per class."""
    mean, ci = mean_confidence_interval(accuracies)
    per_class = [len(e.query) / len(e.classes) for e in episodes]
    return {"accuracy_mean": mean, "accuracy_ci95": ci, "episodes": len(accuracies),
            "queries_per_class_mean": float(np.mean(per_class)) if per_class else float("nan")}
