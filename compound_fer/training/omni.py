"""Omni-supervised FER with distilled data: mine confident faces from an unlabelled pool, distil, replay.

After "Omni-supervised facial expression recognition via distilled data" (arXiv 2005.08551; only the
abstract was available). **Follows the paper:** a *primitive model* trained on the labelled set mines
confident faces from a large unlabelled pool *by feature similarity*; the labelled plus mined set is
compressed by *dataset distillation* into a few synthetic images per class, which *boost training* at
negligible cost.

**Our design:**

- *Mining* (:func:`mine_by_similarity`): L2-normalised features of the primitive model; one prototype
  per class (mean of its labelled features, renormalised); a pool face gets the label of its most
  similar prototype, with confidence = cosine margin between the best and second-best prototype;
  optionally it must also agree with the primitive classifier's prediction; the ``per_class`` most
  confident faces of each class are kept (class-balanced, so the pool's majority class does not flood
  the mined set).
- *Distillation*: distribution matching (:mod:`compound_fer.training.distill_data`; why: CPU cost).
- *Continual use* (:class:`DistilledReplayPlugin`): after each experience, that experience's new
  classes (plus mined faces of those classes, when a pool is given) are distilled into ``ipc`` images
  per class and stored; in later experiences every minibatch is extended with ``replay_mb_size``
  distilled images of the old classes. The memory costs ``ipc`` images per class, within
  ``StrategyArgs.mem_size`` (default ``ipc``: ``StrategyArgs.quota``).
- *FER2013 pool* (:func:`read_fer_pool`): 48x48 grey JPEGs read with PIL, grey copied to 3 channels,
  resized; it is UNLABELLED (labels -1). Its ``labels.csv`` is read only by :func:`fer_pool_truth`
  to measure mining precision, with an explicit map to our taxonomy (angry -> Angry, disgust ->
  Disgusted, fear -> Fearful, happy -> Happy, neutral -> Neutral, sad -> Sad, surprise -> Surprised).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from PIL import Image
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.errors import DataError
from compound_fer.training.distill_data import distribution_matching
from compound_fer.training.entry import MethodOptions, StrategyArgs, register
from compound_fer.training.template import template_kwargs

#: FER2013 label names -> taxonomy names (explicit; FER2013 uses nouns/short forms).
FER2013_TO_TAXONOMY = {
    "angry": "Angry", "disgust": "Disgusted", "fear": "Fearful", "happy": "Happy",
    "neutral": "Neutral", "sad": "Sad", "surprise": "Surprised",
}


# ------------------------------------------------------------------------------------------ FER pool
def _pool_files(root: Path) -> list[Path]:
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"FER pool: no images/ folder under {root}; point --pool at the fer2013-pool folder")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise DataError(f"FER pool: no .jpg/.png files in {images}")
    return files


def read_fer_pool(root: str | Path, *, image_size: int = 48, limit: int | None = None, seed: int = 0) -> FaceSet:
    """Read the unlabelled FER2013 pool as a FaceSet (grey -> 3 channels, resized; labels = subjects = -1).

    ``limit`` draws that many files at random (``seed``) instead of all of them.
    """

    root = Path(root)
    files = _pool_files(root)
    if limit is not None and limit < len(files):
        pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(pick)]
    out = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    for i, f in enumerate(tqdm(files, desc="reading FER pool", leave=False, disable=len(files) < 2000)):
        with Image.open(f) as im:
            g = im.convert("L")
            if g.size != (image_size, image_size):
                g = g.resize((image_size, image_size), Image.BILINEAR)
            out[i] = np.asarray(g, dtype=np.uint8)[None]
    n = len(files)
    return FaceSet(
        images=torch.from_numpy(out), labels=torch.full((n,), -1, dtype=torch.long),
        subjects=torch.full((n,), -1, dtype=torch.long), sources=tuple(str(f) for f in files),
        meta={"dataset": "fer2013-pool", "unlabelled": True},
    )


def fer_pool_truth(root: str | Path, sources: Sequence[str]) -> torch.Tensor:
    """Global taxonomy labels of pool images, ONLY for measuring mining precision (never train on them)."""
    path = Path(root) / "labels.csv"
    if not path.is_file():
        raise DataError(f"FER pool: {path} not found; mining precision needs it")
    with open(path, newline="", encoding="utf-8") as f:
        table = {row["file"]: row["label"].strip().lower() for row in csv.DictReader(f)}
    out = []
    for s in sources:
        name = Path(s).name
        if name not in table:
            raise DataError(f"FER pool: {name} has no row in {path}")
        if table[name] not in FER2013_TO_TAXONOMY:
            raise DataError(f"FER pool: unknown label {table[name]!r} for {name} in {path}")
        out.append(taxonomy.label_of(FER2013_TO_TAXONOMY[table[name]]))
    return torch.tensor(out, dtype=torch.long)


# ------------------------------------------------------------------------------------------ mining
@dataclass(frozen=True)
class Mined:
    """Mined pool faces: their ``index`` into the pool, pseudo-``labels`` and ``confidence`` (margin)."""

    index: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor

    def precision(self, truth: torch.Tensor) -> float:
        """Share of mined faces whose pseudo-label equals ``truth`` (true labels of the whole pool)."""
        if len(self.index) == 0:
            return float("nan")
        return float((truth[self.index] == self.labels).float().mean())

    def chance(self, truth: torch.Tensor) -> float:
        """Precision of random pool faces with the same pseudo-labels (the pool's class prior)."""
        prior = {int(c): float((truth == c).float().mean()) for c in torch.unique(truth)}
        return float(np.mean([prior.get(int(c), 0.0) for c in self.labels])) if len(self.labels) else float("nan")


@torch.no_grad()
def embed(
    extract: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, batch_size: int = 256
) -> torch.Tensor:
    """L2-normalised features of ``images`` by ``extract``, in batches."""
    out = [F.normalize(extract(images[i:i + batch_size]).flatten(1).float(), dim=1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def mine_by_similarity(
    extract: Callable[[torch.Tensor], torch.Tensor],
    labelled: torch.Tensor,
    labels: torch.Tensor,
    pool: torch.Tensor,
    *,
    per_class: int = 50,
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> Mined:
    """Mine the ``per_class`` pool faces most confidently closest to each class prototype.

    ``extract`` maps an image batch to features; ``classify`` (optional) maps it to logits indexed by
    global label, and then a face is kept only when the classifier agrees with the nearest prototype.
    """
    labels = torch.as_tensor(labels).long()
    classes = torch.unique(labels)
    feats = embed(extract, labelled, batch_size=batch_size)
    protos = F.normalize(torch.stack([feats[labels == c].mean(0) for c in classes]), dim=1)
    pf = embed(extract, pool, batch_size=batch_size)
    sims = pf @ protos.t()
    top = sims.topk(min(2, len(classes)), dim=1)
    best = top.indices[:, 0]
    margin = top.values[:, 0] - (top.values[:, 1] if len(classes) > 1 else 0.0)
    pseudo = classes[best]
    keep = torch.ones(len(pool), dtype=torch.bool)
    if classify is not None:
        pred = torch.cat([classify(pool[i:i + batch_size]).argmax(1) for i in range(0, len(pool), batch_size)])
        keep &= pred.cpu() == pseudo
    chosen = []
    for c in classes:
        idx = torch.nonzero(keep & (pseudo == c)).flatten()
        chosen.append(idx[margin[idx].argsort(descending=True)[:per_class]])
    index = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
    return Mined(index=index, labels=pseudo[index], confidence=margin[index])


# ------------------------------------------------------------------------------------------ plugin
def _features_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if hasattr(model, "features") and callable(model.features):
        return model.features
    raise DataError("omni mining needs a model with .features(x); wrap your model or pass extract=")


class DistilledReplayPlugin(SupervisedPlugin):
    """Replay a few distilled images per old class (and optionally mine + distil an unlabelled pool).

    ``pool``: float images in the model's input format to mine from after the first experience
    (None: no mining). ``mine_per_class``: faces mined per class. ``iterations``/``dm_lr``: distribution
    matching settings. ``replay_mb_size``: distilled images appended to each training minibatch.
    """

    def __init__(self, *, ipc: int = 10, iterations: int = 200, dm_lr: float = 0.05, replay_mb_size: int = 16,
                 pool: torch.Tensor | None = None, mine_per_class: int = 50, mine_experiences: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        self.ipc, self.iterations, self.dm_lr = int(ipc), int(iterations), float(dm_lr)
        self.replay_mb_size, self.seed = int(replay_mb_size), int(seed)
        self.pool, self.mine_per_class, self.mine_experiences = pool, int(mine_per_class), int(mine_experiences)
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.mined: list[Mined] = []
        self._exp = 0
        self._g = torch.Generator().manual_seed(seed)

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        if self.images is None or self.replay_mb_size == 0:
            return
        pick = torch.randint(len(self.images), (self.replay_mb_size,), generator=self._g)
        dev = strategy.mb_x.device
        x, y = self.images[pick].to(dev), self.labels[pick].to(dev)
        mb = list(strategy.mbatch)
        mb[0] = torch.cat([mb[0], x.to(mb[0].dtype)])
        mb[1] = torch.cat([mb[1], y.to(mb[1].dtype)])
        mb[-1] = torch.cat([mb[-1], mb[-1].new_zeros(len(x))])
        strategy.mbatch = mb

    @torch.no_grad()
    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        data = strategy.experience.dataset.eval()
        loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=False)
        xs, ys = [], []
        for mb in loader:
            xs.append(mb[0])
            ys.append(torch.as_tensor(mb[1]))
        x, y = torch.cat(xs).float(), torch.cat(ys).long()
        new = [int(c) for c in strategy.experience.classes_in_this_experience]
        sel = torch.isin(y, torch.tensor(new))
        x, y = x[sel], y[sel]
        if self.pool is not None and self._exp < self.mine_experiences:
            model = strategy.model.eval()
            dev = next(model.parameters()).device
            extract = lambda b: _features_fn(model)(b.to(dev)).cpu()  # noqa: E731
            classify = lambda b: model(b.to(dev)).cpu()  # noqa: E731
            mined = mine_by_similarity(extract, x, y, self.pool, per_class=self.mine_per_class, classify=classify)
            self.mined.append(mined)
            x = torch.cat([x, self.pool[mined.index].float()])
            y = torch.cat([y, mined.labels])
        self._exp += 1
        with torch.enable_grad():
            sx, sy = distribution_matching(x, y, ipc=self.ipc, iterations=self.iterations, lr=self.dm_lr,
                                           seed=self.seed + self._exp)
        self.images = sx if self.images is None else torch.cat([self.images, sx])
        self.labels = sy if self.labels is None else torch.cat([self.labels, sy])


class OmniOptions(MethodOptions):
    """Distilled replay (and optional pool mining)."""

    ipc: int | None = Field(None, ge=1, description="distilled images per class (default mem_size // classes)")
    dm_iterations: int = Field(200, ge=1, description="distribution-matching iterations (200)")
    dm_lr: float = Field(0.05, gt=0.0, description="their learning rate (0.05)")
    replay_mb_size: int | None = Field(None, ge=1, description="replay minibatch size (default train_mb_size)")
    pool: Any = Field(None, description="unlabelled pool to mine (API only: a float tensor)")
    mine_per_class: int = Field(50, ge=1, description="pool images mined per class (50)")


@register("omni", summary="fine-tuning + distilled replay (optionally pool mining): omni-supervised distilled data",
          uses_memory=True, options=OmniOptions, needs_maps=True)  # distils images (N, C, H, W)
def build_omni(*, model: Any, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> Any:
    """Fine-tuning with :class:`DistilledReplayPlugin` (:class:`OmniOptions`; ``pool``: a float tensor in the
    model's input format)."""
    o = args.options_as(OmniOptions)
    plugin = DistilledReplayPlugin(
        ipc=o.ipc or args.quota, iterations=o.dm_iterations, dm_lr=o.dm_lr,
        replay_mb_size=o.replay_mb_size or args.train_mb_size, pool=o.pool,
        mine_per_class=o.mine_per_class, seed=args.seed,
    )
    return SupervisedTemplate(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator,
                                                             plugins=[*plugins, plugin]))
