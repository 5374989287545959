"""A compound expression's Grad-CAM beside its two basic components', from a finished run folder: the
components explained by the basic model, the compound by the few-shot model that learned it (as the
reference explains them), on one test subject's faces (people no model of the run was trained on)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.config import load_config
from compound_fer.errors import DataError
from compound_fer.explain.figures import panels_figure
from compound_fer.explain.gradcam import compute_cams, predict
from compound_fer.explain.pipeline import load_explained_faces
from compound_fer.model_io import load_model

log = logging.getLogger(__name__)

__all__ = ["compound_components_figure", "fewshot_model_for"]


def fewshot_model_for(models: Path, *, seed: int, compounds: Sequence[str]) -> tuple[str, Path] | None:
    """(compound, path) of the first of ``compounds`` with a saved few-shot model in ``models`` (the kept
    mode's when both modes were run, then the most shots), or None."""
    for name in compounds:
        stem = f"fewshot_seed{seed}_{taxonomy.normalise_name(name)}_"
        found = {p: p.stem[len(stem):].split("shot")[0] for p in models.glob(f"{stem}*shot*.pt")}
        ranked = [(p.stem.endswith("_kept"), int(n), p) for p, n in found.items() if n.isdigit()]
        if ranked:
            return name, max(ranked)[2]
    return None


def _inputs(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Float images as ``model`` takes them: packed with missing geometry (the pixels decide) when it fuses
    landmarks."""
    x = images.float().div(255.0)
    if getattr(model, "geometry", None) is not None:
        from compound_fer.fusion import pack

        x = pack(x, torch.full((len(x), model.geometry.dim), float("nan")))
    return x


def _one_subject(faces: Any, labels: Sequence[int]) -> list[int]:
    """Indices of one image per label, of the first subject that has every label (DataError when none has)."""
    lab, subj = faces.labels.numpy(), faces.subjects.numpy()
    for s in np.unique(subj):
        idx = [np.flatnonzero((subj == s) & (lab == c)) for c in labels]
        if all(len(i) for i in idx):
            return [int(i[0]) for i in idx]
    raise DataError("no test subject has faces of " + ", ".join(taxonomy.name_of(c) for c in labels))


def _explain(model: torch.nn.Module, meta: dict, images: torch.Tensor, targets: Sequence[int], method: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """(CAMs for ``targets``, predicted global labels) of ``images`` under ``model``."""
    order = [taxonomy.label_of(n) for n in meta["classes"]]
    x = _inputs(model, images)
    return (compute_cams(model, x, list(targets), method=method, class_order=order, progress=False),
            predict(model, x, class_order=order))


def compound_components_figure(run_dir: str | Path, *, seed: int = 0, method: str = "guided",
                               out: str | Path | None = None) -> list[Path]:
    """The figure (PNG + PDF, default ``run_dir/figures/gradcam_compound_components``) of the first
    few-shot compound with a saved model; [] when the run saved none."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    compounds = cfg.fewshot.compounds or taxonomy.compound_names()
    picked = fewshot_model_for(run_dir / "models", seed=seed, compounds=compounds)
    basic_path = run_dir / "models" / f"basic_seed{seed}.pt"
    if picked is None or not basic_path.is_file():
        log.info("no few-shot or basic model saved in %s: no compound Grad-CAM figure", run_dir / "models")
        return []
    compound, few_path = picked
    basic, basic_meta = load_model(basic_path)
    few, few_meta = load_model(few_path)
    parts = taxonomy.component_labels(compound)
    faces, _ = load_explained_faces(None, config=cfg, split="test", seed=seed,
                                    image_size=int(basic_meta.get("image_size", cfg.data.image_size)))
    idx = _one_subject(faces, [*parts, taxonomy.label_of(compound)])
    images = faces.images[idx]
    cams, pred = _explain(basic, basic_meta, images[:2], parts, method)
    cam_c, pred_c = _explain(few, few_meta, images[2:], [taxonomy.label_of(compound)], method)
    mode = few_meta.get("method", "fewshot").removeprefix("fewshot-")
    kind = f"few-shot model, {mode}, {few_meta.get('shots')} shots"
    titles = [f"{taxonomy.name_of(c)}\nbasic model\npredicted {taxonomy.name_of(int(p))}" for c, p in zip(parts, pred)]
    titles.append(f"{compound}\n{kind}\npredicted {taxonomy.name_of(int(pred_c[0]))}")
    target = Path(out) if out is not None else run_dir / "figures" / "gradcam_compound_components"
    return panels_figure([*images[:2].numpy(), images[2].numpy()], [*cams, cam_c[0]], target, titles=titles,
                         title=f"{method} Grad-CAM, test subject {int(faces.subjects[idx[0]])}: {compound} beside "
                               f"its components")
