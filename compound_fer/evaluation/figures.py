"""The run report's figures (PNG + PDF): step-accuracy curves, accuracy matrices, confusion matrices.

Readable at 15 methods: every method has its own colour, line style and marker, and the paper's method
(KD+PSMR) is drawn thick and black on top. Accuracy matrices have integer ticks and leave classes not yet
learned blank (not 0%); confusion matrices are square, with a labelled colour bar.
"""

from __future__ import annotations

import warnings
from itertools import cycle
from pathlib import Path
from typing import Sequence

import numpy as np

#: the method the paper proposes: picked out in the all-methods figure
PAPER_METHOD = "kdpsmr"
_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")


def save(fig, path: Path) -> list[str]:
    """Write ``fig`` as PNG and PDF next to each other; returns both paths."""
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = path.with_suffix(f".{ext}")
        fig.savefig(p, dpi=130, bbox_inches="tight")
        paths.append(str(p))
    plt.close(fig)
    return paths


def method_styles(keys: Sequence[str]) -> dict[str, dict]:
    """Matplotlib line styles per method: 9 strong colours (tab10 without grey), 3 dark ones, then tab20's light
    shades, crossed with 4 line styles and 10 markers, so no two methods look alike; the paper's method black,
    thick, on top."""
    plt = _plt()
    tab = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (14, 15)]  # greys read as black
    dark = [(0.0, 0.0, 0.5), (0.72, 0.53, 0.04), (0.0, 0.5, 0.5)]  # navy, dark goldenrod, teal
    colours = [*tab[0::2], *dark, *tab[1::2]]  # the strong shades first
    others = [k for k in keys if k.split(" ")[0] != PAPER_METHOD]
    out = {}
    for i, (k, c, ls, mk) in enumerate(zip(others, cycle(colours), cycle(_STYLES), cycle(_MARKERS))):
        out[k] = {"color": c, "linestyle": ls, "marker": mk, "linewidth": 1.6, "markersize": 4, "zorder": 2}
    for k in keys:
        if k not in out:
            out[k] = {"color": "black", "linestyle": "-", "marker": "o", "linewidth": 3.0, "markersize": 5,
                      "zorder": 5}
    return out


def merge_identical(curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Curves equal to within 1e-9 drawn once, labelled ``"a = b = c"`` (methods that collapse to one result)."""
    merged: dict[str, np.ndarray] = {}
    for key, c in curves.items():
        same = next((k for k, m in merged.items() if m.shape == c.shape and np.allclose(m, c, atol=1e-9,
                                                                                       equal_nan=True)), None)
        if same is None:
            merged[key] = c
        else:
            merged[f"{same} = {key}"] = merged.pop(same)
    return merged


def _plot_methods(means: dict[str, np.ndarray], out: Path) -> list[str]:
    """All methods' mean curves on one axes, identical curves merged, the legend outside in end-of-curve order."""
    plt = _plt()
    curves = merge_identical(means)
    styles = method_styles(list(curves))
    with plt.rc_context({"font.size": 11}):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        for key, c in curves.items():
            label = f"{key} (paper)" if styles[key]["color"] == "black" else key
            ax.plot(np.arange(len(c)), 100 * c, label=label, **styles[key])
        ax.set(xlabel="step (0 = basic model)", ylabel="accuracy on classes seen (%)", ylim=(0, 100),
               title="mean step accuracy over class orders")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        last = [float(np.nan_to_num(c[-1], nan=-1.0)) for c in curves.values()]
        order = sorted(range(len(labels)), key=lambda i: -last[i])  # top of the legend = highest at the last step
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=10, loc="center left",
                  bbox_to_anchor=(1.01, 0.5), frameon=False, title="method (by accuracy at the last step)",
                  title_fontsize=10)
        return save(fig, out / "step_accuracy_methods")


def plot_step_curves(groups: dict[str, Sequence], out: Path) -> list[str]:
    """Per method: best, average and worst class order (as the reference plots), and all methods' means.

    ``groups``: report group -> rows with ``step_accuracy``."""
    plt = _plt()
    written: list[str] = []
    means: dict[str, np.ndarray] = {}
    for key in sorted(groups):
        curves = np.array([r.step_accuracy for r in groups[key]], dtype=float)
        order_means = np.nanmean(curves, axis=1)
        means[key] = np.nanmean(curves, axis=0)
        x = np.arange(curves.shape[1])
        with plt.rc_context({"font.size": 11}):
            fig, ax = plt.subplots(figsize=(6, 3.6))
            for label, c, style in (("best order", curves[np.argmax(order_means)], "--"),
                                    ("average", means[key], "-"),
                                    ("worst order", curves[np.argmin(order_means)], ":")):
                ax.plot(x, 100 * c, style, marker="o", ms=3, label=label)
            ax.set(xlabel="step (0 = basic model)", ylabel="accuracy on classes seen (%)", title=key,
                   ylim=(0, 100))
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend()
            written += save(fig, out / f"step_accuracy_{_slug(key)}")
    return written + _plot_methods(means, out)


def mean_accuracy_matrix(mats: Sequence) -> np.ndarray:
    """Mean over orders of accuracy matrices R[i, j]; NaN where class group j is not learned by step i."""
    m = np.asarray(mats, dtype=float)
    with warnings.catch_warnings():  # entries above the diagonal are NaN by definition
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(m, axis=0)
    mean[np.triu_indices(mean.shape[0], k=1)] = np.nan
    return mean


def _step_ticks(ax, n: int) -> None:
    every = max(1, int(np.ceil(n / 16)))
    ticks = list(range(0, n, every))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)


def plot_accuracy_matrix(mats: Sequence, key: str, out: Path) -> list[str]:
    """Mean accuracy matrix of one method; classes not yet learned stay blank (hatched), not 0%."""
    plt = _plt()
    m = mean_accuracy_matrix(mats)
    n = m.shape[0]
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    cmap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))  # transparent: the hatching shows through
    ax.add_patch(plt.Rectangle((-0.5, -0.5), n, n, fill=False, hatch="//", edgecolor="0.8", lw=0, zorder=0))
    im = ax.imshow(np.ma.masked_invalid(100 * m), vmin=0, vmax=100, cmap=cmap, zorder=1)
    _step_ticks(ax, n)
    ax.set(xlabel="experience j (class group learned at step j)", ylabel="after step i",
           title=f"accuracy matrix: {key}\n(blank: not learned yet)")
    fig.colorbar(im, ax=ax, label="test accuracy on experience j (%)")
    return save(fig, out / f"accuracy_matrix_{_slug(key)}")


def plot_confusion(cm: Sequence, names: Sequence[str], key: str, out: Path) -> list[str]:
    """Row-normalised final confusion matrix. The metrics' extra last column (predictions outside the classes
    seen) is drawn, labelled, only when something fell in it: after the last step it is empty."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    cols = list(names)
    if cm.shape[1] == len(names) + 1:
        if cm[:, -1].sum() == 0:
            cm = cm[:, :-1]
        else:
            cols.append("other (not learned)")
    cmn = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.8, 6.8))
    im = ax.imshow(cmn, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set(xlabel="predicted", ylabel="true", title=f"final confusion (order 0): {key}")
    fig.colorbar(im, ax=ax, label="fraction of the true class's test images", fraction=0.046, pad=0.04)
    return save(fig, out / f"confusion_{_slug(key)}")


def plot_matrices(groups: dict[str, Sequence], out: Path) -> list[str]:
    """Mean accuracy matrix per method, and the final confusion matrix of its first order."""
    written: list[str] = []
    for key, rs in sorted(groups.items()):
        written += plot_accuracy_matrix([r.accuracy_matrix for r in rs], key, out)
        r0 = rs[0]
        names = [r0.class_names[c] for c in r0.final_confusion_classes]
        written += plot_confusion(r0.final_confusion_matrix, names, key, out)
    return written


__all__ = [
    "PAPER_METHOD",
    "mean_accuracy_matrix",
    "merge_identical",
    "method_styles",
    "plot_accuracy_matrix",
    "plot_confusion",
    "plot_matrices",
    "plot_step_curves",
    "save",
]
