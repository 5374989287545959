"""Report figures: 15 methods are told apart and KD+PSMR stands out, accuracy matrices leave classes not
yet learned blank, confusion matrices are square unless something was predicted outside the classes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from compound_fer.evaluation import figures

METHODS = ["agem", "cumulative", "ewc", "gdumb", "herding", "icarl", "joint", "kd", "kdpsmr", "lwf", "naive",
           "omni", "pathnet", "psmr", "replay"]


def test_fifteen_methods_look_different_and_the_paper_method_stands_out():
    styles = figures.method_styles(METHODS)
    looks = {(tuple(np.round(s["color"], 3)) if not isinstance(s["color"], str) else s["color"], s["linestyle"],
              s["marker"]) for s in styles.values()}
    assert len(looks) == 15
    colours = [s["color"] for k, s in styles.items() if k != "kdpsmr"]
    assert len({tuple(np.round(c, 3)) for c in colours}) == 14  # no colour used twice
    assert styles["kdpsmr"]["color"] == "black"
    assert styles["kdpsmr"]["linewidth"] > max(s["linewidth"] for k, s in styles.items() if k != "kdpsmr")
    assert styles["kdpsmr"]["zorder"] > max(s["zorder"] for k, s in styles.items() if k != "kdpsmr")


def test_accuracy_matrix_masks_classes_not_yet_learned():
    nan = float("nan")
    mats = [[[0.9, nan, nan], [0.8, 0.5, nan], [0.7, 0.4, 0.6]],
            [[0.7, nan, nan], [0.6, 0.3, nan], [0.5, 0.2, 0.0]]]  # a true 0% stays 0
    m = figures.mean_accuracy_matrix(mats)
    assert np.isnan(m[np.triu_indices(3, k=1)]).all()
    np.testing.assert_allclose(m[np.tril_indices(3)], [0.8, 0.7, 0.4, 0.6, 0.3, 0.3])


def test_figures_are_written_with_square_confusion(tmp_path):
    import matplotlib.pyplot as plt

    n = 4
    acc = np.full((n, n), np.nan)
    acc[np.tril_indices(n)] = 0.5
    rows = {k: [SimpleNamespace(step_accuracy=[0.9, 0.6, 0.5, 0.4], accuracy_matrix=acc.tolist(),
                                class_names={c: f"class {c}" for c in range(n)}, final_confusion_classes=list(range(n)),
                                final_confusion_matrix=np.hstack([np.eye(n) * 5, np.zeros((n, 1))]).tolist())]
            for k in METHODS}
    written = figures.plot_step_curves(rows, tmp_path) + figures.plot_matrices(rows, tmp_path)
    assert (tmp_path / "step_accuracy_methods.png").is_file() and len(written) == 2 * (15 + 1 + 15 * 2)
    seen = {}
    orig = plt.Figure.colorbar

    def spy(self, mappable, *a, **k):  # noqa: ANN001
        seen["shape"], seen["label"] = mappable.get_array().shape, k.get("label")
        return orig(self, mappable, *a, **k)

    plt.Figure.colorbar = spy
    try:
        figures.plot_confusion(np.hstack([np.eye(n) * 5, np.zeros((n, 1))]), [f"c{i}" for i in range(n)], "x", tmp_path)
        assert seen["shape"] == (n, n) and seen["label"]  # the empty 'outside' column is dropped; bar labelled
        cm = np.hstack([np.eye(n) * 5, np.ones((n, 1))])
        figures.plot_confusion(cm, [f"c{i}" for i in range(n)], "y", tmp_path)
        assert seen["shape"] == (n, n + 1)  # kept, and labelled, when something fell in it
    finally:
        plt.Figure.colorbar = orig
