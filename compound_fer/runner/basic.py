"""The basic phase of the runner: the 6-class (7 with neutral) model every method starts from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from compound_fer import distributed as dist
from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.data.augment import make_augment
from compound_fer.data.faceset import FaceSet
from compound_fer.errors import ConfigError, WeightsError, brief_load_error
from compound_fer.features import PickView
from compound_fer.inputs import Inputs
from compound_fer.labels import to_model_labels
from compound_fer.model_io import load_state_dict, save_model
from compound_fer.models import build_model
from compound_fer.prediction.recipe import build_recipe
from compound_fer.runner.checks import check_basic_parts
from compound_fer.runner.dataset import Splits
from compound_fer.seeding import seed_everything
from compound_fer.training.auxiliary import AuxiliaryTargets, describe
from compound_fer.training.basic import BasicLoop, accuracy, train_basic

log = logging.getLogger(__name__)


def basic_labels(cfg: ProtocolConfig) -> tuple[int, ...]:
    """Global labels of the basic classes, in taxonomy order (neutral first when included)."""
    return tuple(taxonomy.label_of(n) for n in taxonomy.basic_names(include_neutral=cfg.data.include_neutral))


def build_basic_model(cfg: ProtocolConfig, num_classes: int) -> nn.Module:
    """The config's model with ``num_classes`` outputs (not trained)."""
    return build_model(cfg.model.backbone, num_classes=num_classes, pretrained=cfg.model.pretrained,
                       head=cfg.model.head, dropout=cfg.model.dropout, image_size=cfg.data.image_size)


def _load_saved(model: nn.Module, weights: Path, expected: dict) -> dict | None:
    """The saved basic model's info (weights loaded into ``model``), or None when absent or unusable.
    A model made with other ``expected`` settings (image size, backbone, head) is refused, naming them:
    its weights would load, and silently score another input size."""
    meta_path = weights.with_suffix(".json")
    if not (weights.is_file() and meta_path.is_file()):
        return None
    try:
        info = json.loads(meta_path.read_text())
        differ = [f"{k}: {info[k]} there, {v} in the config" for k, v in expected.items() if info.get(k, v) != v]
        if differ:  # a ConfigError is not caught below: the user must choose, not silently retrain
            raise ConfigError(f"resume: {weights} was made with other settings ({'; '.join(differ)}); "
                              "use another --out, or --overwrite to train it again")
        model.load_state_dict(load_state_dict(weights))
    except (WeightsError, ValueError, RuntimeError) as err:  # half-written or foreign files: train again
        log.warning("resume: %s cannot be reloaded (%s); training the basic phase again", weights,
                    brief_load_error(err))
        return None
    for key in ("format", "sha256", "preprocess", "recipe"):  # file metadata, not results: the row equals a fresh run's
        info.pop(key, None)
    log.info("basic phase: loaded %s (resume)", weights)
    return info


def _training_views(cfg: ProtocolConfig, splits: Splits, parts: tuple, model: nn.Module, inputs: Inputs | None):
    """(network, train x, val x, test x, augment) of the basic classes (``parts``: their FaceSets):
    cached maps or images."""
    labels = torch.as_tensor(basic_labels(cfg))
    if inputs is not None and inputs.cached:
        if cfg.basic.trainable == "all":
            raise ConfigError("basic.trainable: all changes the trunk, so the basic phase cannot use cached maps")
        pick = lambda fs, x: x[torch.isin(fs.labels, labels)]  # noqa: E731
        return (inputs.wrap(model), pick(splits.train, inputs.train),
                inputs.one_view(pick(splits.val, inputs.val)), inputs.one_view(pick(splits.test, inputs.test)),
                PickView(random=True))
    tr, va, te = parts
    return model, tr.images, va.images, te.float_images(), make_augment(cfg.augment) if cfg.basic.augment else None


def _auxiliary(cfg: ProtocolConfig, model: nn.Module, train: FaceSet, *, cached: bool):
    """The auxiliary geometry/AU heads of the basic phase (basic.aux_geometry, basic.aux_aus), or None."""
    if not (cfg.basic.aux_geometry > 0 or cfg.basic.aux_aus > 0):
        return None
    if cached:
        raise ConfigError("basic.aux_geometry / aux_aus train the image branch: they need basic.trainable: all")

    return AuxiliaryTargets(in_features=model.tail_dim, faces=train, geometry_weight=cfg.basic.aux_geometry,
                            au_weight=cfg.basic.aux_aus)


def train_basic_phase(cfg: ProtocolConfig, splits: Splits, *, seed: int, out_dir: Path, resume: bool = False,
                      progress: bool = True, model: nn.Module | None = None,
                      inputs: Inputs | None = None) -> tuple[nn.Module, dict]:
    """Train (or, on resume, load) the basic model; returns (model, info dict).

    With cached ``inputs`` (maps of the pretrained trunk; only valid when the trunk stays frozen,
    ``basic.trainable`` = tail_head or head) the basic phase trains on the maps too: ~10x faster on CPU.
    """
    labels = basic_labels(cfg)
    seed_everything(seed)  # before building: the head's (and an unpretrained trunk's) init is seeded too
    model = model if model is not None else build_basic_model(cfg, len(labels))
    weights = out_dir / "models" / f"basic_seed{seed}.pt"
    expected = {"image_size": cfg.data.image_size, "backbone": cfg.model.backbone, "head": cfg.model.head}
    info = _load_saved(model, weights, expected) if resume else None
    if info is not None:
        return model, info
    tr, va, te = (s.where(labels=labels) for s in (splits.train, splits.val, splits.test))
    check_basic_parts({"train": tr, "validation": va, "test": te})
    model.set_trainable(cfg.basic.trainable)
    seed_everything(seed)
    net, train_x, val_x, test_x, augment = _training_views(cfg, splits, (tr, va, te), model, inputs)
    aux = _auxiliary(cfg, model, tr, cached=inputs is not None and inputs.cached)
    res = train_basic(
        net, train_x=train_x, train_y=to_model_labels(tr.labels, labels), val_x=val_x,
        val_y=to_model_labels(va.labels, labels), augment=augment, auxiliary=aux,
        loop=BasicLoop.of_phase(cfg.basic, seed=seed, device=cfg.device, progress=progress),
    )
    test_acc = accuracy(net, test_x, to_model_labels(te.labels, labels), device=cfg.device)
    info = {
        "classes": [taxonomy.name_of(x) for x in labels], "backbone": cfg.model.backbone, "head": cfg.model.head,
        "image_size": cfg.data.image_size, "input": "float RGB in [0,1], (N,3,H,W); normalisation inside the model",
        "best_epoch": res.best_epoch, "val_accuracy": res.best_val_accuracy, "test_accuracy": test_acc,
        "seconds": round(res.seconds, 2), "seed": seed,
        **({"auxiliary": describe(aux)} if aux is not None else {}),
    }
    if dist.is_distributed():  # every rank must hold the same basic model (a collective: all ranks call it)
        info["ranks_in_sync"] = dist.same_on_all_ranks(model)
    if dist.is_main():  # with its input recipe, so that predict / evaluate / gradcam make new faces the same way
        save_model(model, weights, meta={**info, "recipe": build_recipe(cfg, model)})
    log.info("basic phase: val %.3f, test %.3f (%.0f s)", res.best_val_accuracy, test_acc, res.seconds)
    return model, info
