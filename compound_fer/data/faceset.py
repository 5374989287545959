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


@dataclass(frozen=True)
class FaceSet:
    """Faces with their global labels, subject ids and optional ground truth.

    ``aus``: (N, len(ACTION_UNITS)) float intensities in [0, 1] when known (synthetic faces, CFEE FACS).
    ``region_masks``: (N, len(REGIONS), H, W) bool masks of every face region of each image (the
    generator's geometry for synthetic faces, landmarks for real ones); combine them with the AUs
    (``synthetic.active_region_masks``) for the regions an expression moves. Used to score Grad-CAM.
    ``sources``: one string per image (a file path, or ``synthetic:<seed>:<index>``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    subjects: torch.Tensor
    sources: tuple[str, ...] = ()
    aus: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"FaceSet.images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        for name in ("labels", "subjects"):
            t = getattr(self, name)
            if len(t) != n:
                raise ValueError(f"FaceSet.{name} has {len(t)} entries for {n} images")
        if self.sources and len(self.sources) != n:
            raise ValueError(f"FaceSet.sources has {len(self.sources)} entries for {n} images")
        for name in ("aus", "region_masks"):
            t = getattr(self, name)
            if t is not None and len(t) != n:
                raise ValueError(f"FaceSet.{name} has {len(t)} entries for {n} images")

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
        )

    def where(self, *, labels: Sequence[int] | None = None, subjects: Sequence[int] | None = None) -> "FaceSet":
        """The faces whose label and subject are in the given sets."""
        keep = torch.ones(len(self), dtype=torch.bool)
        if labels is not None:
            keep &= torch.isin(self.labels, torch.as_tensor(list(labels), dtype=self.labels.dtype))
        if subjects is not None:
            keep &= torch.isin(self.subjects, torch.as_tensor(list(subjects), dtype=self.subjects.dtype))
        return self.subset(torch.nonzero(keep).flatten())

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float().div_(255.0)

    @staticmethod
    def concat(sets: Sequence["FaceSet"]) -> "FaceSet":
        """Concatenate face sets of the same image size."""
        if not sets:
            raise ValueError("FaceSet.concat needs at least one set")
        cat = lambda name: (  # noqa: E731
            None if any(getattr(s, name) is None for s in sets) else torch.cat([getattr(s, name) for s in sets])
        )
        return FaceSet(
            images=torch.cat([s.images for s in sets]),
            labels=torch.cat([s.labels for s in sets]),
            subjects=torch.cat([s.subjects for s in sets]),
            sources=sum((tuple(s.sources) for s in sets), ()) if all(s.sources for s in sets) else (),
            aus=cat("aus"),
            region_masks=cat("region_masks"),
            meta=dict(sets[0].meta),
        )
