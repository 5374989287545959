"""Label new photos with a saved model: ``compound_fer.predict(model, photos)`` and ``compound-fer predict``.

Every image gets one :class:`Prediction`, in input order: its label, probability and top-k, or, for a
photo without a face or an unreadable file, why not (never an exception). Faces are found and aligned as
the model's training faces were, by the recipe its file carries (:mod:`compound_fer.prediction.recipe`),
through the one function that evaluate and gradcam use too (:func:`compound_fer.prediction.inputs.model_inputs`);
class probabilities and Grad-CAM overlays are :mod:`compound_fer.prediction.model`. Light on import: torch
loads when :func:`predict` runs.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from compound_fer import taxonomy
from compound_fer.errors import ConfigError
from compound_fer.io import atomic_write

log = logging.getLogger(__name__)
__all__ = ["CSV_COLUMNS", "Prediction", "predict", "write_csv"]

#: The columns of ``compound-fer predict``'s CSV, in order (the fields of :class:`Prediction`).
CSV_COLUMNS: tuple[str, ...] = ("file", "face_found", "label", "probability", "top_k", "face_method", "reason",
                                "gradcam")


@dataclass(frozen=True)
class Prediction:
    """One image: its ``label`` and ``probability``, the ``top_k`` (label, probability) pairs and how its
    face was placed (``face_method``); when ``face_found`` is False, ``reason`` says why there is no label.
    ``gradcam``: the overlay PNG written for it, if any."""

    file: str
    face_found: bool
    label: str | None = None
    probability: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    face_method: str | None = None
    reason: str | None = None
    gradcam: str | None = None

    def as_row(self) -> dict[str, str]:
        """The CSV row: probabilities with 4 decimals, ``top_k`` as ``label:p; label:p``."""
        return {"file": self.file, "face_found": "yes" if self.face_found else "no", "label": self.label or "",
                "probability": "" if self.probability is None else f"{self.probability:.4f}",
                "top_k": "; ".join(f"{n}:{p:.4f}" for n, p in self.top_k), "face_method": self.face_method or "",
                "reason": self.reason or "", "gradcam": self.gradcam or ""}


def _load(model_or_path: Any) -> tuple[Any, dict, Path | None]:
    """(model, metadata, path or None) from a path, a (model, meta) pair or a model with ``class_order``."""
    if isinstance(model_or_path, (str, os.PathLike)):
        from compound_fer.model_io import load_model

        model, meta = load_model(model_or_path)
        return model, meta, Path(model_or_path)
    if isinstance(model_or_path, tuple) and len(model_or_path) == 2:
        return model_or_path[0], dict(model_or_path[1]), None
    order = getattr(model_or_path, "class_order", None)
    if order is None:
        raise ConfigError("predict: give a saved model's path, a (model, meta) pair from model_io.load_model, or a "
                          "model with class_order (the global label of each output column)")

    meta = {"classes": [taxonomy.name_of(int(c)) for c in order],
            "image_size": int(getattr(model_or_path, "image_size", 0) or 0)}
    return model_or_path, meta, None


def predict(model_or_path: Any, images_or_paths: Any, *, top_k: int = 3, gradcam: str | os.PathLike | None = None,
            gradcam_method: str = "guided", landmarks: str | os.PathLike | None = None, progress: bool = True,
            batch_size: int = 64, config: str | os.PathLike | None = None) -> list[Prediction]:
    """One :class:`Prediction` per image (files, folders, arrays or PIL images), in input order.

    ``model_or_path``: a saved model's ``.pt`` (its ``.json`` beside it) or a ``(model, meta)`` pair from
    :func:`compound_fer.model_io.load_model`; its faces are made by the recipe in its metadata
    (:func:`compound_fer.prediction.inputs.model_inputs`), wherever the file lies. ``gradcam``: a folder
    that receives a Grad-CAM overlay PNG per face (``gradcam_method``: a :mod:`compound_fer.explain.gradcam`
    method). ``landmarks``: a landmarks file for the photos (a folder's own ``landmarks.csv`` is used
    without it). ``config``: only for a model saved without a recipe, the config it was trained with.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k {top_k!r}: must be a whole number, at least 1")
    model, meta, path = _load(model_or_path)
    names = [str(c) for c in meta["classes"]]
    if top_k > len(names):
        log.warning("top-k %d: the model has %d classes, so every image lists all %d", top_k, len(names), len(names))
    from compound_fer.prediction.inputs import model_inputs  # torch: imported when predicting
    from compound_fer.prediction.model import classify, write_overlays

    inputs = model_inputs(model, meta, images_or_paths, landmarks=landmarks, progress=progress, model_path=path,
                          config=config)
    faces, found, items, x = inputs.faces, inputs.found, inputs.items, inputs.x
    probs = classify(model, x, names=names, batch_size=batch_size)
    overlays = (write_overlays(model, x, probs, faces, found, items, names=names, out=Path(gradcam),
                               method=gradcam_method, progress=progress) if gradcam is not None and found else {})
    row_of = {i: r for r, i in enumerate(found)}
    out: list[Prediction] = []
    for i, item in enumerate(items):
        file = str(item) if isinstance(item, (str, os.PathLike)) else f"<image {i}>"
        if i not in row_of:
            out.append(Prediction(file=file, face_found=False, reason=faces.reason[i] or "no face found"))
            continue
        p = probs[row_of[i]]
        best = np.argsort(-p, kind="stable")[: int(top_k)]
        out.append(Prediction(file=file, face_found=True, label=names[best[0]], probability=float(p[best[0]]),
                              top_k=tuple((names[j], float(p[j])) for j in best), face_method=faces.how[i],
                              gradcam=overlays.get(i)))
    return out


def write_csv(predictions: Iterable[Prediction], path: str | os.PathLike | None = None, *,
              stream: Any = None) -> Path | None:
    """Write the rows (:data:`CSV_COLUMNS`) to ``path`` atomically, or to ``stream`` when no path is given."""
    rows = [p.as_row() for p in predictions]

    def write(f: Any) -> None:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)

    if path is None:
        write(stream)
        return None

    return atomic_write(path, write)
