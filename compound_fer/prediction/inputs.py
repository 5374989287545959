"""The one road from a saved model and images to that model's inputs: :func:`model_inputs`.

``compound-fer predict`` / :func:`compound_fer.predict`, ``compound-fer evaluate``, ``compound-fer gradcam
--data`` and the explain pipeline all call it, so a face is placed the same way by each: the model's
:class:`~compound_fer.prediction.recipe.Recipe` (from its metadata, wherever the file lies) crops it
(:func:`~compound_fer.prediction.faces.find_faces`), and a landmark-fused model gets each face's geometry
packed beside its pixels, as in training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from compound_fer.prediction.faces import FoundFaces, collect_images, find_faces
from compound_fer.prediction.recipe import Recipe, recipe_of, scheme_of_features

log = logging.getLogger(__name__)

__all__ = ["ModelInputs", "face_geometry", "model_inputs"]


@dataclass(frozen=True)
class ModelInputs:
    """Images turned into a model's inputs: the ``recipe`` used, the ``items`` (files or arrays, in input
    order), their ``faces`` (crops, or why none), the positions ``found`` that have one and ``x``, those
    faces as the model takes them (float in [0, 1], packed with the geometry for a fused model)."""

    recipe: Recipe
    items: list[Any]
    faces: FoundFaces
    found: list[int]
    x: torch.Tensor

    def crops(self) -> np.ndarray:
        """(K, 3, S, S) uint8: the found faces' crops, in input order."""
        size = self.recipe.image_size
        return (np.stack([self.faces.crop[i] for i in self.found]) if self.found
                else np.zeros((0, 3, size, size), np.uint8))


def face_geometry(model: torch.nn.Module, faces: FoundFaces, found: Sequence[int],
                  scheme: str | None = None) -> torch.Tensor:
    """(K, F) geometry of the found faces for a landmark-fused model; NaN rows (the training mean: the
    pixels decide, as for test faces in training) where a face has no landmarks of the model's ``scheme``
    (default: the scheme of the model's feature count)."""
    from compound_fer.data.geometry import geometry_features

    n = model.geometry.dim
    scheme = scheme or scheme_of_features(n)
    out = torch.full((len(found), n), float("nan"))
    for r, i in enumerate(found):
        if scheme is not None and faces.points[i] is not None and faces.scheme[i] == scheme:
            out[r] = torch.from_numpy(geometry_features(faces.points[i], scheme)[0])
    missing = int((~torch.isfinite(out).all(1)).sum())
    if missing:
        log.warning("%d of %d face(s) have no %s landmarks, the model's geometry scheme: they are classified from "
                    "their pixels and the mean geometry", missing, len(found), scheme or "known")
    return out


def _tensor(model: torch.nn.Module, faces: FoundFaces, found: list[int], recipe: Recipe) -> torch.Tensor:
    """The found faces as ``model`` takes them: float in [0, 1], with the geometry planes when it fuses it."""
    size = recipe.image_size
    x = (torch.from_numpy(np.stack([faces.crop[i] for i in found])).float().div_(255.0) if found
         else torch.zeros(0, 3, size, size))
    if getattr(model, "geometry", None) is not None and found:
        from compound_fer.fusion import pack

        x = pack(x, face_geometry(model, faces, found, recipe.geometry_scheme))
    return x


def model_inputs(model: torch.nn.Module, meta: dict[str, Any], images: Any, *,
                 landmarks: str | os.PathLike | None = None, roots: Sequence[Path | None] | None = None,
                 progress: bool = True, model_path: str | os.PathLike | None = None,
                 config: str | os.PathLike | None = None) -> ModelInputs:
    """``images`` (files, folders, arrays or PIL images) as the inputs of ``model`` (``meta``: its metadata).

    ``landmarks``: a landmarks file for the photos (else a given folder's own ``landmarks.csv``);
    ``roots``: with a list of items, the folder each was given by (skips the folder walk). ``model_path``
    and ``config`` only serve a file saved without a recipe (:func:`~compound_fer.prediction.recipe.recipe_of`)."""
    recipe = recipe_of(meta, model_path, config=config)
    if roots is None:
        items, roots = collect_images(images)
    else:
        items = list(images)
    faces = find_faces(items, recipe, roots=roots, progress=progress, landmarks=landmarks)
    found = faces.found()
    return ModelInputs(recipe=recipe, items=items, faces=faces, found=found,
                       x=_tensor(model, faces, found, recipe))
