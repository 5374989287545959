"""The geometry stage (``model.geometry: landmarks``): the faces' landmark geometry fused into the basic model.

After the basic phase, the model gets a :class:`~compound_fer.fusion.GeometryEncoder` (standardised on the
basic training faces) and a head over [CNN embedding, geometry], trained on the basic classes on cached
trunk maps; every split's inputs are then packed with their geometry, so every method, the few-shot phase
and the saved models see it. Faces without landmarks fall back to the mean geometry (their pixels decide).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from compound_fer.config import ProtocolConfig
from compound_fer.data.faceset import FaceSet
from compound_fer.data.geometry import geometry_features
from compound_fer.errors import ConfigError, DataError
from compound_fer.features import PickView
from compound_fer.fusion import GeometryEncoder, pack, standardiser
from compound_fer.inputs import Inputs
from compound_fer.labels import to_model_labels
from compound_fer.runner.basic import basic_labels
from compound_fer.runner.dataset import Splits
from compound_fer.seeding import seed_everything
from compound_fer.training.basic import BasicLoop, accuracy, train_basic

log = logging.getLogger(__name__)


def face_geometry(faces: FaceSet) -> torch.Tensor:
    """(N, F) geometry features of every face (NaN rows where a face has no landmarks)."""
    if faces.landmarks is None or faces.landmark_scheme is None:
        root = faces.meta.get("root", "the data")
        raise DataError(f"{root}: model.geometry: landmarks needs faces with landmarks (the CFEE release's "
                        "landmarks.csv, a folder's landmarks.csv, or the automatic detector); set model.geometry: none")
    g = torch.from_numpy(geometry_features(faces.landmarks, faces.landmark_scheme))
    if faces.landmarks_valid is not None:
        g[~faces.landmarks_valid.bool()] = float("nan")
    return g


def _test_geometry(splits: Splits) -> torch.Tensor:
    """The test faces' geometry; all missing (their pixels decide) when their landmarks are of another scheme
    than the training faces' (e.g. --test-data without a landmarks file: detected points), with a warning."""
    test, scheme = splits.test, splits.train.landmark_scheme
    if test.landmarks is not None and test.landmark_scheme == scheme:
        return face_geometry(test)
    log.warning("model.geometry: the test faces' landmarks (%s) are not of the training faces' scheme (%s); the "
                "test faces are classified from their pixels and the mean geometry", test.landmark_scheme or "none",
                scheme)
    return torch.full((len(test), face_geometry(splits.train.subset([0])).shape[1]),
                      float("nan"))


def fuse_geometry(cfg: ProtocolConfig, model: nn.Module, splits: Splits, inputs: Inputs, *, seed: int,
                  progress: bool = True) -> tuple[Inputs, dict]:
    """Attach geometry to ``model`` (in place), train its new head on the basic classes; returns the packed
    inputs and an info dict (validation and test accuracy of the fused basic model, missing landmarks)."""
    if not inputs.cached:
        raise ConfigError("model.geometry: landmarks needs cache_trunk: true (the fused head trains on cached maps)")
    geo = {name: face_geometry(getattr(splits, name)) for name in ("train", "val")}
    geo["test"] = _test_geometry(splits)
    labels = basic_labels(cfg)
    is_basic = {name: torch.isin(getattr(splits, name).labels, torch.as_tensor(labels)) for name in geo}
    mean, std = standardiser(geo["train"][is_basic["train"]])
    model.attach_geometry(GeometryEncoder(mean=mean, std=std, weight=cfg.model.geometry_weight))
    packed = Inputs(train=pack(inputs.train, geo["train"]), val=pack(inputs.val, geo["val"]),
                    test=pack(inputs.test, geo["test"]), cached=True, train_extra=geo["train"],
                    val_extra=geo["val"], test_extra=geo["test"])
    model.set_trainable(cfg.continual.trainable)
    seed_everything(seed)
    net = packed.wrap(model)
    y = {name: to_model_labels(getattr(splits, name).labels[is_basic[name]], labels) for name in geo}
    res = train_basic(net, train_x=packed.train[is_basic["train"]], train_y=y["train"],
                      val_x=packed.one_view(packed.val[is_basic["val"]]), val_y=y["val"], augment=PickView(random=True),
                      loop=BasicLoop.of_phase(cfg.basic, seed=seed, device=cfg.device, progress=progress,
                                              lr=cfg.continual.lr))
    test_acc = accuracy(net, packed.one_view(packed.test[is_basic["test"]]), y["test"], device=cfg.device)
    missing = {name: int((~torch.isfinite(g).all(1)).sum()) for name, g in geo.items()}
    info = {"features": int(mean.numel()), "scheme": splits.train.landmark_scheme, "weight": cfg.model.geometry_weight,
            "best_epoch": res.best_epoch, "val_accuracy": res.best_val_accuracy, "test_accuracy": test_acc,
            "faces_without_landmarks": missing, "seconds": round(res.seconds, 2)}
    log.info("geometry stage: %d features (%s), basic val %.3f, test %.3f", info["features"], info["scheme"],
             res.best_val_accuracy, test_acc)
    return packed, info
