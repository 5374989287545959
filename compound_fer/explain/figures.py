"""Grad-CAM figures: the reference's subject figure (basic beside compound CAMs, HOT overlay), mean-CAM
grids, the compound x basic similarity heatmap and region-attention bars. PNG and PDF, Agg, closed.

Colour order: images are RGB throughout; ``show_cam_on_image`` returns BGR unless ``use_rgb=True``,
so :func:`overlay` always passes ``use_rgb=True`` (a test checks that HOT's red half stays red).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from compound_fer import taxonomy

__all__ = ["overlay", "save_figure", "subject_figure", "panels_figure", "mean_cam_grid", "relationship_heatmap",
           "region_bars"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 (H, W, 3) of ``cam`` in [0, 1] over ``image`` (RGB, uint8 (H, W, 3) or (3, H, W), or float in
    [0, 1]), HOT colormap."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = np.transpose(img, (1, 2, 0))
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)
    if cam.shape != img.shape[:2]:
        cam = cv2.resize(cam, (img.shape[1], img.shape[0]))
    return show_cam_on_image(np.clip(img, 0, 1), cam, use_rgb=True, colormap=cv2.COLORMAP_HOT, image_weight=1 - alpha)


def save_figure(fig, path: str | Path, *, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (suffix of ``path`` ignored), then close it."""
    plt = _plt()
    base = Path(path)
    base = base.with_suffix("") if base.suffix in {".png", ".pdf", ".svg"} else base
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        for fmt in formats:
            p = base.with_suffix(f".{fmt}")
            fig.savefig(p, dpi=dpi, bbox_inches="tight")
            out.append(p)
    finally:
        plt.close(fig)
    return out


def _short(name: str) -> str:
    return name.replace("Disgustedly", "Disgust.").replace("Fearfully", "Fear.").replace("Happily", "Happ.")


def subject_figure(
    images: Mapping[int, np.ndarray],
    cams: Mapping[int, np.ndarray],
    path: str | Path,
    *,
    basic_labels: Sequence[int],
    compound_labels: Sequence[int],
    title: str | None = None,
    ncols: int = 8,
) -> list[Path]:
    """The reference's figure: one subject's basic CAMs (first row) beside its compound CAMs (rows below).

    ``images[label]`` is that subject's RGB face for the label and ``cams[label]`` its CAM; missing
    labels are left blank.
    """
    plt = _plt()
    basic = [int(b) for b in basic_labels]
    comp = [int(c) for c in compound_labels]
    ncols = max(ncols, len(basic))
    crows = -(-len(comp) // ncols) if comp else 0
    fig, axes = plt.subplots(1 + crows, ncols, figsize=(1.45 * ncols, 1.65 * (1 + crows)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    cells = [(0, j, lab) for j, lab in enumerate(basic)] + [
        (1 + k // ncols, k % ncols, lab) for k, lab in enumerate(comp)
    ]
    for r, c, lab in cells:
        ax = axes[r, c]
        if lab in images and lab in cams:
            ax.imshow(overlay(images[lab], cams[lab]))
        ax.set_title(_short(taxonomy.name_of(lab)), fontsize=7, color="tab:blue" if r == 0 else "black")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.text(0.005, 1 - 0.5 / (1 + crows), "basic", rotation=90, va="center", fontsize=8, color="tab:blue")
    if crows:
        fig.text(0.005, 0.5 * crows / (1 + crows), "compound", rotation=90, va="center", fontsize=8)
    return save_figure(fig, path)


def panels_figure(images: Sequence[np.ndarray], cams: Sequence[np.ndarray], path: str | Path, *,
                  titles: Sequence[str], title: str | None = None) -> list[Path]:
    """Faces side by side (top row) over their CAM overlays (bottom row), one column per face, e.g. a
    compound beside its two basic components."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.5), squeeze=False)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, top=0.8)  # square cells: the rows touch, titles fit above
    for j, (img, cam, name) in enumerate(zip(images, cams, titles)):
        face = np.asarray(img)
        face = np.transpose(face, (1, 2, 0)) if face.ndim == 3 and face.shape[0] == 3 and face.shape[-1] != 3 else face
        axes[0, j].imshow(face)
        axes[1, j].imshow(overlay(face, cam))
        axes[0, j].set_title(name, fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def mean_cam_grid(
    means: Mapping[int, np.ndarray],
    path: str | Path,
    *,
    background: np.ndarray | Mapping[int, np.ndarray] | None = None,
    ncols: int = 7,
    title: str | None = None,
) -> list[Path]:
    """Mean CAM of each class in a grid, over ``background`` (one RGB image, or one per class: e.g. the class's
    mean face)."""
    plt = _plt()
    labels = list(means)
    ncols = min(ncols, max(1, len(labels)))
    nrows = -(-len(labels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.7 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, lab in enumerate(labels):
        ax = axes[k // ncols, k % ncols]
        bg = background.get(lab) if isinstance(background, Mapping) else background
        cam = np.asarray(means[lab], dtype=np.float32)
        cam = (cam - cam.min()) / max(float(cam.max() - cam.min()), 1e-12)
        ax.imshow(overlay(bg, cam) if bg is not None else cam, cmap=None if bg is not None else "hot", vmin=0, vmax=1)
        ax.set_title(_short(taxonomy.name_of(int(lab))), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def relationship_heatmap(
    matrix: np.ndarray | Sequence[Sequence[float | None]],
    path: str | Path,
    *,
    compound_labels: Sequence[int],
    basic_labels: Sequence[int],
    measure: str = "pearson",
    title: str | None = None,
) -> list[Path]:
    """The compound x basic similarity matrix; each compound's own components are boxed, its best match dotted."""
    plt = _plt()
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(basic_labels), 0.8 + 0.36 * len(compound_labels)))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.05, label=measure)
    ax.set_xticks(range(len(basic_labels)), [taxonomy.name_of(int(b)) for b in basic_labels], rotation=35,
                  ha="right", fontsize=8)
    ax.set_yticks(range(len(compound_labels)), [taxonomy.name_of(int(c)) for c in compound_labels], fontsize=8)
    basic = [int(b) for b in basic_labels]
    for i, c in enumerate(compound_labels):
        for b in taxonomy.component_labels(taxonomy.name_of(int(c))):
            if b in basic:
                j = basic.index(b)
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.6))
        if np.isfinite(m[i]).any():
            ax.plot(int(np.nanargmax(m[i])) - 0.36, i - 0.28, marker="o", ms=3, color="red")
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5.5, color="black"
                        if m[i, j] > np.nanmean(m) else "white")
    ax.set_title(
        title or f"compound vs basic mean-CAM similarity ({measure}); boxes: components, dot: best", fontsize=8
    )
    return save_figure(fig, path)


def region_bars(attention: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> list[Path]:
    """Per class (one row each, so 21 classes read at page width): share of CAM mass on each face region
    (expected regions hatched), and the pointing game beside its class-blind prior and its chance level."""
    plt = _plt()
    per = attention["per_class"]
    names = list(per)
    regions = taxonomy.REGIONS
    height = max(4.5, 0.4 * len(names) + 2.2)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(7.5, height), sharey=True,
                                  gridspec_kw={"width_ratios": [3, 2], "wspace": 0.12})
    y = np.arange(len(names))
    h = 0.84 / len(regions)
    colours = plt.get_cmap("tab10").colors
    for k, r in enumerate(regions):
        vals = [per[n]["region_shares"][r] or 0.0 for n in names]
        bars = ax.barh(y + (k - (len(regions) - 1) / 2) * h, vals, h, label=r, color=colours[k])
        for bar, n in zip(bars, names):
            if r in per[n]["expected_regions"]:
                bar.set_hatch("////")
                bar.set_edgecolor("black")
    ax.set_yticks(y, [_short(n) for n in names], fontsize=11)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first class on top, no empty band
    ax.set_xlabel("share of CAM mass", fontsize=11)
    ax.legend(fontsize=10, ncol=3, loc="lower left", bbox_to_anchor=(0.0, 1.01), borderaxespad=0.0,
              title="region (hatched: expected from the class's AUs)", title_fontsize=10,
              handlelength=1.5, columnspacing=1.0)
    # black and greys: no colour of the region panel means something else here
    for label, key, off, colour in (("pointing game", "pointing", -0.27, "black"),
                                    ("class-blind prior", "pointing_prior", 0.0, "0.5"),
                                    ("area chance", "pointing_chance", 0.27, "0.8")):
        ax2.barh(y + off, [per[n][key] or 0.0 for n in names], 0.27, label=label, color=colour)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("rate of CAM maxima\nin an expected region", fontsize=11)
    ax2.legend(fontsize=10, loc="lower left", bbox_to_anchor=(0.0, 1.01), borderaxespad=0.0, handlelength=1.5)
    for a in (ax, ax2):
        a.grid(axis="x", alpha=0.3)
        a.tick_params(axis="x", labelsize=10)
        a.xaxis.set_major_locator(plt.MaxNLocator(5))
    ov = attention["overall"]
    fig.suptitle(title or f"region attention: pointing {ov['pointing']:.2f}, class-blind prior "
                 f"{ov['pointing_prior']:.2f}, area chance {ov['pointing_chance']:.2f}", fontsize=12,
                 y=1.0 - 0.08 / height)
    fig.subplots_adjust(top=1.0 - 1.2 / height)  # room for the legends above the panels and the title
    return save_figure(fig, path)
