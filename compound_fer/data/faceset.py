"""FaceSet: the in-memory face collection every reader produces and every scenario consumes.

Images are uint8 (N, 3, H, W) so thousands of faces fit in memory; labels are global taxonomy labels
(``taxonomy.label_of``), so datasets from different readers share one label space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.data.schemes import flip_points, get_scheme


@dataclass(frozen=True)
class FaceSet:
    """Faces with their global labels, subject ids and optional ground truth.

    ``aus``: (N, len(ACTION_UNITS)) float intensities in [0, 1] when known (synthetic faces, CFEE FACS).
    ``region_masks``: (N, len(REGIONS), H, W) bool masks of every face region of each image (the
    generator's geometry for synthetic faces, landmarks for real ones); combine them with the AUs
    (``synthetic.active_region_masks``) for the regions an expression moves. Used to score Grad-CAM.
    ``sources``: one string per image (a file path, or ``synthetic:<seed>:<index>``).
    ``landmarks``: (N, K, 2) float32 points in crop pixels (pixel centres at integers), in the order of
    ``landmark_scheme`` (``"cfee78"``, ``"mediapipe468"``: :mod:`compound_fer.data.schemes`);
    ``landmarks_valid``: (N,) bool, False where a face has none (its rows are NaN).
    """

    images: torch.Tensor
    labels: torch.Tensor
    subjects: torch.Tensor
    sources: tuple[str, ...] = ()
    aus: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    landmarks: torch.Tensor | None = None
    landmark_scheme: str | None = None
    landmarks_valid: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"FaceSet.images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        for name in ("labels", "subjects"):
            t = getattr(self, name)
            if len(t) != n:
                raise ValueError(f"FaceSet.{name} has {len(t)} entries for {n} images")
        if self.sources and len(self.sources) != n:
            raise ValueError(f"FaceSet.sources has {len(self.sources)} entries for {n} images")
        for name in ("aus", "region_masks", "landmarks", "landmarks_valid"):
            t = getattr(self, name)
            if t is not None and len(t) != n:
                raise ValueError(f"FaceSet.{name} has {len(t)} entries for {n} images")
        self._check_landmarks()

    def _check_landmarks(self) -> None:
        if self.landmarks is None:
            if self.landmark_scheme is not None or self.landmarks_valid is not None:
                raise ValueError("FaceSet.landmark_scheme / landmarks_valid given without landmarks")
            return

        if self.landmark_scheme is None:
            raise ValueError("FaceSet.landmarks needs landmark_scheme (e.g. 'cfee78')")
        k = get_scheme(self.landmark_scheme).n_points
        if self.landmarks.dtype != torch.float32 or tuple(self.landmarks.shape[1:]) != (k, 2):
            raise ValueError(f"FaceSet.landmarks must be float32 (N, {k}, 2) for {self.landmark_scheme}, got "
                             f"{self.landmarks.dtype} {tuple(self.landmarks.shape)}")
        if self.landmarks_valid is None or self.landmarks_valid.dtype != torch.bool:
            raise ValueError("FaceSet.landmarks needs landmarks_valid, a bool (N,) tensor")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def class_labels(self) -> tuple[int, ...]:
        """Global labels present, ascending."""
        return tuple(int(x) for x in torch.unique(self.labels))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(taxonomy.name_of(x) for x in self.class_labels)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "FaceSet":
        """The faces at ``index`` (order kept)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            subjects=self.subjects[idx],
            sources=tuple(self.sources[i] for i in idx.tolist()) if self.sources else (),
            aus=pick(self.aus),
            region_masks=pick(self.region_masks),
            landmarks=pick(self.landmarks),
            landmarks_valid=pick(self.landmarks_valid),
        )

    def where(self, *, labels: Sequence[int] | None = None, subjects: Sequence[int] | None = None) -> "FaceSet":
        """The faces whose label and subject are in the given sets."""
        keep = torch.ones(len(self), dtype=torch.bool)
        if labels is not None:
            keep &= torch.isin(self.labels, torch.as_tensor(list(labels), dtype=self.labels.dtype))
        if subjects is not None:
            keep &= torch.isin(self.subjects, torch.as_tensor(list(subjects), dtype=self.subjects.dtype))
        return self.subset(torch.nonzero(keep).flatten())

    def mirrored(self) -> "FaceSet":
        """The faces flipped left-right: images and region masks mirrored, landmarks mirrored with their
        order permuted left <-> right (:func:`~compound_fer.data.schemes.flip_points`); AUs unchanged."""
        lm = self.landmarks
        if lm is not None:
            lm = torch.from_numpy(flip_points(lm.numpy(), self.landmark_scheme, self.image_size).astype(np.float32))
        return replace(self, images=self.images.flip(-1),
                       region_masks=None if self.region_masks is None else self.region_masks.flip(-1),
                       landmarks=lm)

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float().div_(255.0)

    @staticmethod
    def concat(sets: Sequence["FaceSet"]) -> "FaceSet":
        """Concatenate face sets of the same image size. Landmarks are kept when every set with landmarks
        uses one scheme (sets without get invalid NaN rows); with two schemes they are dropped, and
        ``meta['landmarks_dropped']`` says why."""
        if not sets:
            raise ValueError("FaceSet.concat needs at least one set")
        cat = lambda name: (  # noqa: E731
            None if any(getattr(s, name) is None for s in sets) else torch.cat([getattr(s, name) for s in sets])
        )
        lm, scheme, valid, meta = _concat_landmarks(sets), None, None, dict(sets[0].meta)
        if isinstance(lm, str):
            meta["landmarks_dropped"], lm = lm, None
        elif lm is not None:
            lm, scheme, valid = lm
        return FaceSet(
            images=torch.cat([s.images for s in sets]),
            labels=torch.cat([s.labels for s in sets]),
            subjects=torch.cat([s.subjects for s in sets]),
            sources=sum((tuple(s.sources) for s in sets), ()) if all(s.sources for s in sets) else (),
            aus=cat("aus"),
            region_masks=cat("region_masks"),
            meta=meta,
            landmarks=lm,
            landmark_scheme=scheme,
            landmarks_valid=valid,
        )


def _concat_landmarks(sets: Sequence[FaceSet]):
    """(landmarks, scheme, valid) for concat, None when no set has landmarks, or why they are dropped."""
    schemes = sorted({s.landmark_scheme for s in sets if s.landmarks is not None})
    if not schemes:
        return None
    if len(schemes) > 1:
        return f"landmark schemes differ ({', '.join(schemes)}); concatenated without landmarks"
    k = next(s.landmarks.shape[1] for s in sets if s.landmarks is not None)
    pts = [s.landmarks if s.landmarks is not None else torch.full((len(s), k, 2), float("nan")) for s in sets]
    ok = [s.landmarks_valid if s.landmarks is not None else torch.zeros(len(s), dtype=torch.bool) for s in sets]
    return torch.cat(pts), schemes[0], torch.cat(ok)
