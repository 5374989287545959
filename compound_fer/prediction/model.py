"""The model's side of prediction: class probabilities of the model inputs
(:func:`compound_fer.prediction.inputs.model_inputs`) and one Grad-CAM overlay per face
(:mod:`compound_fer.explain`)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from compound_fer import taxonomy
from compound_fer.errors import WeightsError
from compound_fer.explain.figures import overlay
from compound_fer.explain.gradcam import compute_cams
from compound_fer.io import atomic_write
from compound_fer.prediction.faces import FoundFaces

log = logging.getLogger(__name__)

__all__ = ["classify", "write_overlays"]


def classify(model: nn.Module, x: torch.Tensor, *, names: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(K, C) class probabilities (softmax, output columns in ``names`` order) of the model inputs ``x``
    (:attr:`compound_fer.prediction.inputs.ModelInputs.x`), in batches, the model's mode left as it was."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [torch.softmax(model(x[s:s + batch_size].to(device)).float(), dim=1).cpu()
                   for s in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    probs = torch.cat(out).numpy() if out else np.zeros((0, len(names)), np.float32)
    if probs.shape[1] != len(names):
        raise WeightsError(f"the model has {probs.shape[1]} outputs but its metadata names {len(names)} classes")
    return probs


def _names(items: Sequence[Any], found: Sequence[int]) -> dict[int, str]:
    """A distinct file name per found face: the image's stem (``image_<i>`` for arrays), numbered on clashes."""
    out, used = {}, set()
    for i in found:
        item = items[i]
        stem = Path(item).stem if isinstance(item, (str, os.PathLike)) else f"image_{i}"
        name, k = stem, 2
        while name in used:
            name, k = f"{stem}_{k}", k + 1
        used.add(name)
        out[i] = f"{name}.png"
    return out


def _panel(face: np.ndarray, cam: np.ndarray, caption: str) -> np.ndarray:
    """The face beside its CAM overlay, enlarged to at least 160 px high, with a caption below (RGB uint8)."""
    import cv2

    rgb = np.ascontiguousarray(face.transpose(1, 2, 0))
    pair = np.concatenate([rgb, overlay(rgb, cam)], axis=1)
    k = max(1, math.ceil(160 / rgb.shape[0]))
    pair = cv2.resize(pair, (pair.shape[1] * k, pair.shape[0] * k), interpolation=cv2.INTER_CUBIC)
    strip = np.full((22, pair.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([pair, strip], axis=0)


def write_overlays(model: nn.Module, x: torch.Tensor, probs: np.ndarray, faces: FoundFaces, found: Sequence[int],
                   items: Sequence[Any], *, names: Sequence[str], out: Path, method: str = "guided",
                   progress: bool = True) -> dict[int, str]:
    """One PNG per found face in ``out`` (the face and its CAM for the predicted class); {position: path}."""
    import cv2

    order = [taxonomy.label_of(n) for n in names]
    best = probs.argmax(1)
    cams = compute_cams(model, x, [order[j] for j in best], method=method, class_order=order,
                        progress=progress and len(found) >= 20)
    written = {}
    for r, (i, name) in enumerate(_names(items, found).items()):
        panel = _panel(faces.crop[i], cams[r], f"{names[best[r]]} {probs[r, best[r]]:.0%}")
        ok, png = cv2.imencode(".png", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - PNG encoding of a uint8 array does not fail
            raise OSError(f"could not encode {out / name}")
        written[i] = str(atomic_write(out / name, lambda f, b=png: f.write(b.tobytes()), binary=True))
    return written
