"""A saved model's input recipe: how a photo becomes what the model was trained on, written into every
model file a run saves (basic, continual, few-shot) so that a model copied anywhere predicts as in place.

``recipe`` in a model's JSON holds the crop (source, size, method, margin, detector, no-face rule), the
landmark geometry a fused model takes (scheme, feature count, weight, normalisation), the input
convention and the whole config the run came from; the JSON's ``classes``, ``backbone`` and ``head`` sit
beside it. :func:`recipe_of` reads it back; an older file without one needs the config it was trained
with (``--config`` / ``config=``), else the ``config.yaml`` of the run folder it still lies in is used with
a warning saying so, else it is refused with what to pass.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compound_fer.data.crop_options import CropOptions
from compound_fer.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["CROP_KEYS", "RECIPE_VERSION", "Recipe", "build_recipe", "recipe_of"]

RECIPE_VERSION = 1
#: The config's ``data`` keys that say how faces are cropped (with ``image_size``).
CROP_KEYS: tuple[str, ...] = ("source", "face_method", "face_margin", "landmark_detector", "no_face")
INPUT = "float RGB in [0,1], (N,3,H,W); normalisation inside the model"
GEOMETRY_NORMALISATION = ("z-score with the basic training faces' mean and std (buffers geometry.mean/std in the "
                          "weights); a face without landmarks of the scheme gets the mean (its pixels decide)")


@dataclass(frozen=True)
class Recipe:
    """How a model's faces are made: the crop (``image_size`` and the config's ``data`` crop keys) and the
    landmark scheme of its fused geometry (None: pixels only); ``origin`` says where it was read."""

    image_size: int
    source: str = "path"
    face_method: str = "auto"
    face_margin: float = 0.15
    landmark_detector: str | None = "mediapipe"
    no_face: str = "skip"
    geometry_scheme: str | None = None
    origin: str = "model metadata"

    def crop(self, detector: str | None) -> CropOptions:
        """The crop these settings name, faces without landmarks placed by ``detector`` (None: Haar)."""
        return CropOptions(image_size=self.image_size, method=self.face_method, margin=self.face_margin,
                           detector=detector, no_face=self.no_face)


def scheme_of_features(n: int) -> str | None:
    """The landmark scheme whose geometry vector has ``n`` features (None when none has)."""
    from compound_fer.data.geometry import feature_count
    from compound_fer.data.schemes import SCHEMES

    return next((name for name in SCHEMES if feature_count(name) == n), None)


def build_recipe(cfg: Any, model: Any) -> dict[str, Any]:
    """The ``recipe`` entry of a model file: ``cfg`` (the run's ProtocolConfig) made its faces, ``model``
    says whether it fuses geometry (its scheme follows from the feature count)."""
    geo = getattr(model, "geometry", None)
    geometry = None if geo is None else {"scheme": scheme_of_features(geo.dim), "features": geo.dim,
                                         "weight": geo.weight, "normalisation": GEOMETRY_NORMALISATION}
    return {"version": RECIPE_VERSION,
            "crop": {"image_size": cfg.data.image_size, **cfg.data.model_dump(include=set(CROP_KEYS))},
            "geometry": geometry, "input": INPUT, "config": cfg.model_dump(mode="json")}


def _from_config(data: dict, origin: str, size: int, scheme: str | None) -> Recipe:
    """A Recipe of a config's ``data`` section (or a legacy ``preprocess`` entry)."""
    values = {k: data[k] for k in CROP_KEYS if k in data}
    return Recipe(image_size=size, geometry_scheme=scheme, origin=origin, **values)


def _config_data(path: Path) -> dict:
    """The ``data`` section of the config ``path`` (a YAML file or a packaged name), ConfigError naming it."""
    from compound_fer.config import load_config

    p = Path(path)
    if not p.is_file():
        packaged = Path(__file__).resolve().parents[1] / "configs" / f"{p.stem}.yaml"
        if len(p.parts) == 1 and packaged.is_file():
            p = packaged
        else:
            raise ConfigError(f"--config {path}: no such file (give the YAML the model was trained with, e.g. "
                              "the config.yaml of its run folder)")
    return load_config(p).data.model_dump()


def _run_config(model_path: Path | None) -> Path | None:
    """The config.yaml of the run folder ``model_path`` was saved in (``<run>/models/<file>.pt``)."""
    if model_path is None:
        return None
    path = Path(model_path).resolve().parent.parent / "config.yaml"
    return path if path.is_file() else None


def recipe_of(meta: dict[str, Any], model_path: str | os.PathLike | None = None, *,
              config: str | os.PathLike | None = None) -> Recipe:
    """The input recipe of a model from its metadata ``meta`` (:func:`compound_fer.model_io.load_model`).

    A file without one (saved by an older version) takes ``config`` (the config it was trained with),
    else its run folder's config.yaml (with a warning: copied elsewhere it would need ``config``), else
    a ConfigError that says what to pass."""
    size = int(meta.get("image_size") or 0)
    name = str(model_path) if model_path is not None else "the model"
    if size < 16:
        raise ConfigError(f"{name}: its metadata gives no usable image_size ({size}); it cannot say how large its "
                          "faces were")
    geo = meta.get("geometry")
    scheme = scheme_of_features(int(geo["features"])) if isinstance(geo, dict) and "features" in geo else None
    recipe = meta.get("recipe")
    if isinstance(recipe, dict) and isinstance(recipe.get("crop"), dict):
        scheme = (recipe.get("geometry") or {}).get("scheme", scheme)
        return _from_config(recipe["crop"], "model metadata", size, scheme)
    if isinstance(meta.get("preprocess"), dict):  # basic models of the previous version: crop keys only
        return _from_config(meta["preprocess"], "model metadata (preprocess)", size, scheme)
    if config is not None:
        return _from_config(_config_data(Path(config)), str(config), size, scheme)
    run = _run_config(Path(model_path) if model_path is not None else None)
    if run is not None:
        log.warning("%s has no input recipe (saved by an older version): its faces are made as %s says; copied "
                    "out of that folder it needs --config %s (Python: config=...)", name, run, run)
        return _from_config(_config_data(run), str(run), size, scheme)
    raise ConfigError(f"{name} has no input recipe in its metadata (saved by an older version) and no run folder "
                      "config.yaml beside it: pass the config it was trained with, --config CONFIG (a YAML file or "
                      "packaged name; Python: config=...), or train it again to save one")
