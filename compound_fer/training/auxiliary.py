"""Auxiliary supervision in the basic phase: the image branch learns what landmarks and FACS coding know.

Two linear heads on the pooled CNN embedding predict each basic training face's standardised landmark
geometry (regression) and its action-unit intensities (the FACS sheet, in [0, 1]; where a data set has
no per-face AUs, its class's prototypical AUs, Du et al. 2014's table). Only the basic phase
sees them, on basic faces only; at test time the model takes pixels alone (the image-only setting), but
its embedding was shaped by geometry and AUs, which compound expressions share with their components.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.data.geometry import geometry_features
from compound_fer.data.schemes import flip_points
from compound_fer.data.synthetic import prototype_aus
from compound_fer.errors import ConfigError
from compound_fer.fusion import standardiser


def class_prototype_aus(labels: Tensor) -> Tensor:
    """(N, len(ACTION_UNITS)) targets: 1 for each prototypical AU of the face's class, else 0."""
    rows = {c: prototype_aus(taxonomy.CATEGORIES[c].name, intensity=1.0) for c in set(labels.tolist())}
    return torch.from_numpy(np.stack([rows[c] for c in labels.tolist()])).float()


def _geometry_targets(faces: FaceSet) -> tuple[Tensor, Tensor]:
    """Standardised geometry of each face as is and mirrored (N, F) x 2 (NaN where landmarks are missing)."""
    lm = faces.landmarks.numpy()
    g = torch.from_numpy(geometry_features(lm, faces.landmark_scheme))
    gf = torch.from_numpy(geometry_features(flip_points(lm, faces.landmark_scheme, faces.image_size),
                                            faces.landmark_scheme))
    if faces.landmarks_valid is not None:
        g[~faces.landmarks_valid.bool()] = float("nan")
        gf[~faces.landmarks_valid.bool()] = float("nan")
    mean, std = standardiser(g)
    return (g - mean) / std.clamp_min(1e-6), (gf - mean) / std.clamp_min(1e-6)


class AuxiliaryTargets(nn.Module):
    """Geometry and AU heads over ``in_features``-wide embeddings, with the targets of ``faces`` (the
    training rows the basic loop indexes). A weight of 0 (or no landmarks / no AUs) drops that head."""

    def __init__(
        self, *, in_features: int, faces: FaceSet, geometry_weight: float = 0.0, au_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.geometry_weight = float(geometry_weight) if faces.landmarks is not None else 0.0
        self.au_weight = float(au_weight)
        self.au_source = "per face" if faces.aus is not None else "class prototypes"
        if self.geometry_weight <= 0 and self.au_weight <= 0:
            raise ConfigError("basic.aux_geometry needs faces with landmarks (the CFEE release, a folder's "
                              "landmarks.csv or data.landmark_detector); set basic.aux_aus instead or as well")
        if self.geometry_weight > 0:
            g, gf = _geometry_targets(faces)
            self.register_buffer("geo", g)
            self.register_buffer("geo_flipped", gf)
            self.geometry_head = nn.Linear(in_features, g.shape[1])
        if self.au_weight > 0:
            aus = faces.aus.float() if faces.aus is not None else class_prototype_aus(faces.labels)
            self.register_buffer("aus", aus)
            self.au_head = nn.Linear(in_features, aus.shape[1])

    def loss(self, features: Tensor, idx: Tensor, flips: Tensor | None = None) -> Tensor:
        """Weighted auxiliary loss of the batch ``idx`` (rows of ``faces``); ``flips``: rows shown mirrored."""
        total = features.new_zeros(())
        if self.geometry_weight > 0:
            target = self.geo[idx]
            if flips is not None and bool(flips.any()):
                target = torch.where(flips[:, None].to(target.device), self.geo_flipped[idx], target)
            known = torch.isfinite(target)
            if bool(known.any()):
                pred = self.geometry_head(features)
                total = total + self.geometry_weight * F.mse_loss(pred[known], target[known])
        if self.au_weight > 0:
            target = self.aus[idx]
            known = torch.isfinite(target)
            if bool(known.any()):
                pred = self.au_head(features)
                total = total + self.au_weight * F.binary_cross_entropy_with_logits(pred[known], target[known])
        return total


def describe(aux: AuxiliaryTargets | None) -> dict | None:
    """What the basic row records about the auxiliary heads."""
    if aux is None:
        return None
    out = {"geometry_weight": aux.geometry_weight, "au_weight": aux.au_weight}
    if aux.au_weight > 0:
        out["au_targets"] = aux.au_source
        out["faces_with_aus"] = int(np.isfinite(aux.aus.numpy()).all(1).sum())
    return out
