"""Measures of the basic-compound relationship that the reference only showed: CAM similarity of each
compound to each basic class, whether a compound looks most like its own components, and which face
regions the CAMs attend (pointing game against the regions of the class's action units).

Everything but :func:`explain_classes` / :func:`relationship_report` is a pure function of arrays, so
the numbers can be recomputed from saved CAMs and tested against hand-computed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from compound_fer import taxonomy
from compound_fer.explain.gradcam import compute_cams
from compound_fer.explain.regions import (
    Expected,
    expected_region_masks,
    float_or_none,
    pointing_game,
    region_attention,
    region_shares,
    region_specificity,
)

__all__ = [
    "ClassCAMs",
    "pearson",
    "histogram_intersection",
    "similarity_matrix",
    "component_chance",
    "component_ranks",
    "poisson_binomial_tail",
    "region_shares",
    "expected_region_masks",
    "pointing_game",
    "region_attention",
    "region_specificity",
    "relationship_from_cams",
    "explain_classes",
    "report_from_cams",
    "relationship_report",
]

# --------------------------------------------------------------------------- similarities


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps over pixels; NaN when one of them is constant."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def histogram_intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two maps as spatial distributions: ``sum(min(a/sum a, b/sum b))`` in [0, 1] (1 = same map)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    sx, sy = x.sum(), y.sum()
    if sx <= 0 or sy <= 0:
        return float("nan")
    return float(np.minimum(x / sx, y / sy).sum())


MEASURES = {"pearson": pearson, "intersection": histogram_intersection}


def similarity_matrix(
    rows: Mapping[int, np.ndarray], cols: Mapping[int, np.ndarray], *, measure: str = "pearson"
) -> np.ndarray:
    """``M[i, j] = measure(rows[i], cols[j])`` in the mappings' order (e.g. 15 compounds x 6 basics)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown similarity {measure!r}; expected one of {sorted(MEASURES)}")
    f = MEASURES[measure]
    return np.array([[f(rows[r], cols[c]) for c in cols] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))


# --------------------------------------------------------------------------- components


def component_chance(n_basic: int, n_components: int) -> dict[str, float]:
    """Exact chance levels when the basic classes are ranked in a uniformly random order.

    ``top1``: P(the most similar basic class is a component) = k/n; ``all_top_k``: P(the k components
    fill the top k) = 1/C(n, k); ``best_rank``: E[rank of the best component] = (n+1)/(k+1);
    ``mean_rank``: E[mean rank of the components] = (n+1)/2 (ranks from 1).
    """
    n, k = int(n_basic), int(n_components)
    if not 0 < k <= n:
        raise ValueError(f"need 0 < components <= basic classes, got {k} of {n}")
    return {"top1": k / n, "all_top_k": 1 / math.comb(n, k), "best_rank": (n + 1) / (k + 1), "mean_rank": (n + 1) / 2}


def poisson_binomial_tail(probs: Sequence[float], hits: int) -> float:
    """P(at least ``hits`` successes) for independent trials with success probabilities ``probs`` (exact)."""
    dist = np.zeros(len(probs) + 1)
    dist[0] = 1.0
    for p in probs:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(dist[int(hits):].sum())


def component_ranks(
    matrix: np.ndarray, compound_labels: Sequence[int], basic_labels: Sequence[int]
) -> dict[str, Any]:
    """Is each compound most similar to its own basic components? Hits, ranks and exact chance.

    ``matrix``: compounds x basics, higher = more similar (NaN ranks last). Per compound: the basic
    classes by similarity, the 1-based rank of each component, ``top1`` (the most similar basic is a
    component) and ``all_top_k`` (its k components are the k most similar). The summary gives the hit
    rate against its exact chance, mean ranks against their expectations, and the exact one-sided
    p-value of the number of top-1 hits (independent uniform rankings; a Poisson binomial tail).
    """
    basic_labels = [int(b) for b in basic_labels]
    per = {}
    hits, all_hits, best, mean_r, chances, chance_all, exp_best, exp_mean = [], [], [], [], [], [], [], []
    for i, c in enumerate(compound_labels):
        name = taxonomy.name_of(int(c))
        comps = [b for b in taxonomy.component_labels(name) if b in basic_labels]
        if not comps:
            continue
        row = np.where(np.isnan(matrix[i]), -np.inf, matrix[i])
        order = [basic_labels[j] for j in np.argsort(-row, kind="stable")]
        ranks = [order.index(b) + 1 for b in comps]
        k = len(comps)
        ch = component_chance(len(basic_labels), k)
        top1 = order[0] in comps
        all_k = set(order[:k]) == set(comps)
        per[name] = {
            "components": [taxonomy.name_of(b) for b in comps],
            "ranking": [taxonomy.name_of(b) for b in order],
            "component_ranks": ranks,
            "top1": bool(top1),
            "all_top_k": bool(all_k),
        }
        hits.append(top1)
        all_hits.append(all_k)
        best.append(min(ranks))
        mean_r.append(float(np.mean(ranks)))
        chances.append(ch["top1"])
        chance_all.append(ch["all_top_k"])
        exp_best.append(ch["best_rank"])
        exp_mean.append(ch["mean_rank"])
    n = len(hits)
    summary = {
        "n_compounds": n,
        "top1_hits": int(sum(hits)),
        "top1_rate": float(np.mean(hits)) if n else float("nan"),
        "top1_chance": float(np.mean(chances)) if n else float("nan"),
        "top1_p_value": poisson_binomial_tail(chances, int(sum(hits))) if n else float("nan"),
        "all_top_k_rate": float(np.mean(all_hits)) if n else float("nan"),
        "all_top_k_chance": float(np.mean(chance_all)) if n else float("nan"),
        "all_top_k_p_value": poisson_binomial_tail(chance_all, int(sum(all_hits))) if n else float("nan"),
        "mean_best_rank": float(np.mean(best)) if n else float("nan"),
        "mean_best_rank_chance": float(np.mean(exp_best)) if n else float("nan"),
        "mean_component_rank": float(np.mean(mean_r)) if n else float("nan"),
        "mean_component_rank_chance": float(np.mean(exp_mean)) if n else float("nan"),
    }
    return {"summary": summary, "per_compound": per}


def relationship_from_cams(
    basic_cams: Mapping[int, np.ndarray], compound_cams: Mapping[int, np.ndarray]
) -> dict[str, Any]:
    """(a) + (b) from per-class mean CAMs of ANY models (e.g. basic model for the basics, each few-shot
    model for its compound, as the reference does): both similarity matrices and the component test."""
    basics = sorted(int(b) for b in basic_cams)
    compounds = sorted(int(c) for c in compound_cams)
    b = {k: basic_cams[k] for k in basics}
    c = {k: compound_cams[k] for k in compounds}
    out: dict[str, Any] = {
        "basic_classes": [taxonomy.name_of(k) for k in basics],
        "compound_classes": [taxonomy.name_of(k) for k in compounds],
    }
    for measure in MEASURES:
        m = similarity_matrix(c, b, measure=measure)
        out[measure] = {"matrix": _nan_to_none(m), "components": component_ranks(m, compounds, basics)}
    return out


# --------------------------------------------------------------------------- with models


@dataclass
class ClassCAMs:
    """Per-image CAMs with what is needed to score them: labels, subjects, masks, AUs (all aligned)."""

    cams: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    region_masks: np.ndarray | None = None
    aus: np.ndarray | None = None
    method: str = "gradcam"
    meta: dict = field(default_factory=dict)

    def means(self, labels: Sequence[int] | None = None) -> dict[int, np.ndarray]:
        """Mean CAM per class (the crops are aligned, so the pixel-wise mean is the class map)."""
        keep = np.unique(self.labels) if labels is None else labels
        return {int(c): self.cams[self.labels == c].mean(axis=0) for c in keep if np.any(self.labels == c)}


def explain_classes(
    model,
    faceset,
    *,
    labels: Sequence[int] | None = None,
    method: str = "guided",
    class_order: Sequence[int] | None = None,
    label_models: Mapping[int, Any] | None = None,
    batch_size: int = 32,
) -> ClassCAMs:
    """CAMs of every face of ``labels`` for its own label, by ``model`` or, per label, ``label_models[label]``.

    ``label_models`` values are a model or ``(model, class_order)``: the reference explains each compound
    with the few-shot model that learned it. Images are explained in batches; models are left unchanged.
    """
    fs = faceset if labels is None else faceset.where(labels=list(labels))
    if len(fs) == 0:
        raise ValueError(f"no faces of labels {list(labels or [])} in the face set")
    y = fs.labels.numpy().astype(np.int64)
    images = fs.float_images()
    cams = np.empty((len(fs), *images.shape[-2:]), dtype=np.float32)
    label_models = dict(label_models or {})
    groups: dict[int, list[int]] = {}
    for c in np.unique(y):
        key = id(label_models[int(c)]) if int(c) in label_models else 0
        groups.setdefault(key, []).append(int(c))
    for key, cls in groups.items():
        m, order = (model, class_order) if key == 0 else _model_and_order(label_models[cls[0]])
        idx = np.flatnonzero(np.isin(y, cls))
        cams[idx] = compute_cams(m, images[idx], y[idx].tolist(), method=method, batch_size=batch_size,
                                 class_order=order)
    return ClassCAMs(
        cams=cams, labels=y, subjects=fs.subjects.numpy(),
        region_masks=None if fs.region_masks is None else fs.region_masks.numpy(),
        aus=None if fs.aus is None else fs.aus.numpy(), method=method,
    )


def _model_and_order(entry):
    if isinstance(entry, tuple):
        return entry[0], entry[1]
    return entry, None


def report_from_cams(
    cc: ClassCAMs,
    *,
    basic_labels: Sequence[int],
    compound_labels: Sequence[int],
    expected: Expected = "class",
) -> dict[str, Any]:
    """The JSON-able report: similarities and component test on class means, region attention per image."""
    means = cc.means()
    basic = {int(b): means[int(b)] for b in basic_labels if int(b) in means}
    compound = {int(c): means[int(c)] for c in compound_labels if int(c) in means}
    report: dict[str, Any] = {
        "method": cc.method,
        "n_images": int(len(cc.labels)),
        "images_per_class": {taxonomy.name_of(int(c)): int((cc.labels == c).sum()) for c in np.unique(cc.labels)},
        "alignment": "mean over aligned crops of one size (no further registration)",
    }
    if basic and compound:
        report["relationship"] = relationship_from_cams(basic, compound)
    if cc.region_masks is not None:
        if expected == "aus" and cc.aus is None:
            expected = "class"
        report["region_attention"] = region_attention(cc.cams, cc.labels, cc.region_masks, expected=expected,
                                                      aus=cc.aus)
    return report


def relationship_report(
    model,
    faceset,
    *,
    basic_labels: Sequence[int],
    compound_labels: Sequence[int],
    method: str = "guided",
    class_order: Sequence[int] | None = None,
    compound_models: Mapping[int, Any] | None = None,
    expected: Expected = "class",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Everything in one JSON-able dict: (a) 15 x 6 similarity matrices, (b) component hits with exact
    chance, (c) region attention and pointing game, (d) with ``compound_models`` = {label: few-shot model
    or (model, class_order)} the compounds are explained by their own few-shot models, as the reference does."""
    labels = [int(x) for x in (*basic_labels, *compound_labels)]
    cc = explain_classes(model, faceset, labels=labels, method=method, class_order=class_order,
                         label_models=compound_models, batch_size=batch_size)
    out = report_from_cams(cc, basic_labels=basic_labels, compound_labels=compound_labels, expected=expected)
    out["compound_cams_from"] = "few-shot models" if compound_models else "the same model"
    return out


def _nan_to_none(m: np.ndarray) -> list[list[float | None]]:
    return [[float_or_none(v) for v in row] for row in m]
