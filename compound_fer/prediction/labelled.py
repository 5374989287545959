"""A labelled data folder as a saved model's inputs, for ``compound-fer evaluate`` and ``gradcam --data``.

The folder is listed by its reader (:func:`compound_fer.data.load.scan`: files, categories, subjects,
its landmarks file), and its images of the model's classes go through
:func:`~compound_fer.prediction.inputs.model_inputs`, the road ``predict`` takes, so each face is placed
exactly as ``predict`` places it. Images without a face are left out, counted in ``missing``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.errors import DataError
from compound_fer.prediction.inputs import ModelInputs, model_inputs

__all__ = ["LabelledInputs", "labelled_inputs"]


@dataclass(frozen=True)
class LabelledInputs:
    """A data folder's faces of a model's classes: ``inputs`` (:class:`ModelInputs`), the global ``labels``
    and ``subjects`` of the found faces, and {file: why} of the images that gave none (``missing``)."""

    inputs: ModelInputs
    labels: np.ndarray
    subjects: np.ndarray
    missing: dict[str, str]
    index: Any

    def faceset(self) -> Any:
        """The found faces as a FaceSet (crops, labels, subjects, region masks, landmarks, AUs when the
        folder codes them), for the explain pipeline."""
        from compound_fer.data.faceset import FaceSet

        inp = self.inputs
        files = [str(inp.items[i]) for i in inp.found]
        return FaceSet(images=torch.from_numpy(inp.crops()), labels=torch.from_numpy(self.labels),
                       subjects=torch.from_numpy(self.subjects), sources=tuple(files), aus=_aus(self.index, files),
                       region_masks=torch.from_numpy(np.stack([inp.faces.masks[i] for i in inp.found])),
                       meta={"source": self.index.layout, "root": str(self.index.root),
                             "image_size": inp.recipe.image_size, "recipe": inp.recipe.origin,
                             "subjects_known": self.index.subjects_known, "faces_missing": len(self.missing)},
                       **_landmarks(inp))


def _landmarks(inp: ModelInputs) -> dict[str, Any]:
    """FaceSet landmark keywords of the found faces: the most common scheme, other faces marked invalid."""
    schemes = [inp.faces.scheme[i] for i in inp.found]
    counts = {s: schemes.count(s) for s in schemes if s}
    if not counts:
        return {}
    from compound_fer.data.schemes import get_scheme

    scheme = max(counts, key=lambda s: counts[s])
    points = np.full((len(inp.found), get_scheme(scheme).n_points, 2), np.nan, np.float32)
    valid = np.array([s == scheme for s in schemes], dtype=bool)
    for r in np.flatnonzero(valid):
        points[r] = inp.faces.points[inp.found[r]]
    return {"landmarks": torch.from_numpy(points), "landmark_scheme": scheme,
            "landmarks_valid": torch.from_numpy(valid)}


def _aus(index: Any, files: list[str]) -> torch.Tensor | None:
    """(N, len(ACTION_UNITS)) AU intensities of ``files``: a folder's ``aus.csv`` or CFEE's FACS workbook
    (NaN where not coded, 0 for Neutral), else None."""
    from compound_fer.data.annotations import au_rows

    if getattr(index, "xls", None) is not None:
        from compound_fer.data.cfee import read_aus

        table, pos = read_aus(index.xls), {f: i for i, f in enumerate(index.files)}
        out = np.full((len(files), len(taxonomy.ACTION_UNITS)), np.nan, np.float32)
        for j, f in enumerate(files):
            cat, sid = index.categories[pos[f]], index.subjects[pos[f]]
            out[j] = 0.0 if cat == "Neutral" else table.get((sid, cat), out[j])
        return torch.from_numpy(out)
    aus_csv = index.root / "aus.csv"
    rows = au_rows(aus_csv if aus_csv.is_file() else None, files, index.root)
    return None if rows is None else torch.from_numpy(np.asarray(rows, np.float32))


def labelled_inputs(model: torch.nn.Module, meta: dict[str, Any], data: str | os.PathLike, *, progress: bool = True,
                    model_path: str | os.PathLike | None = None,
                    config: str | os.PathLike | None = None) -> LabelledInputs:
    """The images of ``data`` (a CFEE release or labelled folder) of the model's classes as its inputs,
    with their labels. DataError naming ``data`` when it has no image of those classes, or no face."""
    from compound_fer.data.load import scan

    index = scan(data)
    classes = {taxonomy.by_name(str(c)).name for c in meta["classes"]}
    pick = [i for i in index.usable() if index.categories[i] in classes]
    if not pick:
        raise DataError(f"{data} has no image of the model's classes ({', '.join(map(str, meta['classes']))})")
    files = [index.files[i] for i in pick]
    inputs = model_inputs(model, meta, files, roots=[index.root] * len(files), landmarks=index.landmarks,
                          progress=progress, model_path=model_path, config=config)
    found = set(inputs.found)
    missing = {files[j]: inputs.faces.reason[j] or "no face found" for j in range(len(files)) if j not in found}
    if not inputs.found:
        first = next(iter(missing.items()))
        raise DataError(f"{data}: no face in {len(files)} image(s) of the model's classes (first: {first[0]}: "
                        f"{first[1]})")
    kept = [pick[j] for j in inputs.found]
    return LabelledInputs(inputs=inputs, labels=np.array([taxonomy.label_of(index.categories[i]) for i in kept]),
                          subjects=np.array([int(index.subjects[i]) for i in kept]), missing=missing, index=index)
