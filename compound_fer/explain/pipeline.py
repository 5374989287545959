"""Explaining a model end to end, as ``compound-fer gradcam`` does: the faces to explain (a saved model's
data or config split), a small CNN trained on synthetic faces (regions known), CAMs, the relationship
report and its figures. The command only parses arguments and prints; benchmarks and tests call these.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from compound_fer import runner, taxonomy
from compound_fer.config import ProtocolConfig, load_config
from compound_fer.data.synthetic import generate
from compound_fer.errors import ConfigError, DataError
from compound_fer.explain import SPLIT_CHOICES
from compound_fer.explain import figures as F
from compound_fer.explain.gradcam import predict
from compound_fer.explain.relationship import explain_classes, report_from_cams
from compound_fer.io import provenance, write_json
from compound_fer.labels import to_model_labels
from compound_fer.model_io import load_model
from compound_fer.models import build_model

log = logging.getLogger(__name__)


def train_synthetic_model(faces, *, epochs: int = 12, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                          pool: str = "max"):
    """small_cnn trained on ``faces`` (all classes at once): returns (model, class_order).

    Without BatchNorm the convs get He initialisation (PyTorch's default leaves such a net on a plateau
    for many epochs); horizontal flips augment. Seconds per epoch on one CPU thread for a few hundred 64 px faces.
    """
    torch.manual_seed(seed)
    order = [int(c) for c in faces.class_labels]
    y = to_model_labels(faces.labels, order)
    x = faces.float_images()
    model = build_model("small_cnn", num_classes=len(order), pretrained=False, pool=pool,
                        image_size=faces.image_size)
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        for m in model.modules():  # He init: PyTorch's default leaves a BN-free stack on a plateau
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch_size):
            b = perm[s:s + batch_size]
            xb = x[b]
            flip = torch.rand(len(b), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, order


def load_explained_faces(data: Path | None, *, config: Any = None, split: str = "all", seed: int = 0,
                         image_size: int = 112) -> tuple[Any, dict[str, Any]]:
    """The faces to explain for ``--model``: returns ``(faces, info)``.

    ``config``: a YAML path or a ProtocolConfig (the CLI resolves packaged names first).
    Without ``config``: every image ``data`` holds (``compound_fer.data.load.load_faces`` with its default
    crops), and ``split`` must be ``"all"``. With ``config`` (a YAML path or packaged name): the faces as
    the protocol runner loads them (``runner.load_dataset``: the config's crop method and margin, neutral
    excluded unless the config includes it; ``data`` overrides ``data.path``), and for ``split`` in
    train / val / test that part of ``runner.make_splits(cfg, faces, seed=seed)``, the same split
    the runner trained with for that seed (``"test"``: subjects no model of that run has seen).
    ``image_size`` (the model's input size) replaces the config's. ``info`` describes the selection
    (JSON-able, goes into the report).
    """
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"--split {split!r}: expected one of {', '.join(SPLIT_CHOICES)}")
    if config is None:
        if split != "all":
            raise ConfigError(f"--split {split} needs --config (the protocol config whose split to rebuild)")
        if data is None:
            raise DataError("--model needs --data (the face folder to explain) or --config")
        from compound_fer.data.load import load_faces

        faces = load_faces(data, image_size=image_size)
        return faces, {"data": str(data), "split": "all", "images": len(faces),
                       "subjects": int(len(faces.subjects.unique()))}

    cfg = config if isinstance(config, ProtocolConfig) else load_config(config)
    overrides: dict[str, Any] = {"data": {"image_size": int(image_size)}}
    if cfg.data.image_size != int(image_size):
        log.warning("config %s crops at %d px, the model takes %d px: using %d px", cfg.name, cfg.data.image_size,
                    image_size, image_size)
    if data is not None:
        overrides["data"].update(source="path", path=str(data))
    cfg = cfg.with_overrides(**overrides)
    faces = runner.load_dataset(cfg, progress=False)
    info: dict[str, Any] = {"data": str(data) if data is not None else str(cfg.data.path or "synthetic"),
                            "config": cfg.name, "split": split}
    if split != "all":
        splits = runner.make_splits(cfg, faces, seed=seed)
        faces = getattr(splits, split)
        if len(faces) == 0:
            raise DataError(f"--split {split}: the {cfg.name} split for seed {seed} has no image there")
        info.update(seed=int(seed), mode=cfg.evaluation.mode, split_info=splits.info)
    info.update(images=len(faces), subjects=int(len(faces.subjects.unique())))
    return faces, info


def recipe_faces(model: nn.Module, meta: dict[str, Any], data: Path, *,
                 model_path: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """``(faces, info)``: the images of ``data`` of the model's classes, each placed by the model's recipe
    exactly as ``predict`` places it (:func:`compound_fer.prediction.labelled.labelled_inputs`)."""
    from compound_fer.prediction.labelled import labelled_inputs

    found = labelled_inputs(model, meta, data, progress=False, model_path=model_path)
    faces = found.faceset()
    if found.missing:
        log.warning("gradcam: %d image(s) of %s without a face are left out", len(found.missing), data)
    return faces, {"data": str(data), "split": "all", "images": len(faces), "faces_missing": len(found.missing),
                   "recipe": found.inputs.recipe.origin, "subjects": int(len(faces.subjects.unique()))}


def accuracy(model: nn.Module, faces: Any, class_order: Sequence[int], batch_size: int = 64) -> float:
    """Share of ``faces`` whose predicted global label (through ``class_order``) is their label."""
    pred = predict(model, faces.images, batch_size=batch_size, class_order=class_order)
    return float((pred == faces.labels.numpy()).mean())


def _subject_faces(cc, faces, subject: int | None) -> tuple[dict, dict, str]:
    """(RGB face, CAM) per label for the subject figure, and whose they are: one subject's first image of each
    label; for data without subject ids (each file its own subject) and no ``subject``, one face per class."""
    unknown = subject is None and faces.meta.get("subjects_known", True) is False
    if unknown:
        sel, who = np.arange(len(cc.labels)), "one face per class (the data has no subject ids)"
        log.info("gradcam: the data has no subject ids: the subject figure shows the first face of each class")
    else:
        subject = int(cc.subjects[0]) if subject is None else int(subject)
        sel, who = np.flatnonzero(cc.subjects == subject), f"subject {subject}"
        if len(sel) == 0:
            raise DataError(f"--subject {subject}: no face of that subject among the explained images")
    images, cams = {}, {}
    for i in sel:  # the first image of each label
        lab = int(cc.labels[i])
        if lab not in images:
            images[lab] = faces.images[i].permute(1, 2, 0).numpy()
            cams[lab] = cc.cams[i]
    return images, cams, who


def make_figures(cc, faces, report: dict[str, Any], out: Path, *, basic_labels, compound_labels,
                 subject: int | None = None, prefix: str = "gradcam") -> list[Path]:
    """All figures of one report: subject figure, mean-CAM grid, relationship heatmaps, region bars."""
    written: list[Path] = []
    images, cams, who = _subject_faces(cc, faces, subject)
    written += F.subject_figure(images, cams, out / f"{prefix}_subject", basic_labels=basic_labels,
                                compound_labels=compound_labels,
                                title=f"{who}: basic (top) and compound CAMs ({cc.method})")
    means = cc.means()
    mean_faces = {c: faces.images[cc.labels == c].float().mean(0).permute(1, 2, 0).numpy() / 255.0 for c in means}
    written += F.mean_cam_grid(means, out / f"{prefix}_mean_cams", background=mean_faces,
                               title=f"mean {cc.method} CAM per class over the mean face")
    rel = report.get("relationship")
    if rel:
        b = [c for c in basic_labels if c in means]
        c = [x for x in compound_labels if x in means]
        for measure in ("pearson", "intersection"):
            written += F.relationship_heatmap(rel[measure]["matrix"], out / f"{prefix}_relationship_{measure}",
                                              compound_labels=c, basic_labels=b, measure=measure)
    if "region_attention" in report:
        written += F.region_bars(report["region_attention"], out / f"{prefix}_regions")
    return written


def synthetic_setup(*, classes: Sequence[str] | None = None, subjects: int = 20, epochs: int = 12,
                    seed: int = 0) -> tuple[nn.Module, list[int], Any, dict[str, Any]]:
    """small_cnn trained on synthetic faces (nuisance off) and held-out subjects to explain:
    ``(model, class_order, faces, info)``."""
    names = list(classes) if classes else [*taxonomy.basic_names(), *taxonomy.compound_names()]
    train = generate(categories=names, n_subjects=subjects, per_subject=2, image_size=64, seed=seed, nuisance=False)
    faces = generate(categories=names, n_subjects=6, per_subject=2, image_size=64, seed=seed, subject_offset=10_000,
                     nuisance=False)
    t0 = time.perf_counter()
    model, order = train_synthetic_model(train, epochs=epochs, seed=seed)
    info = {"train_seconds": round(time.perf_counter() - t0, 1), "train_images": len(train),
            "test_accuracy": accuracy(model, faces, order), "data": "synthetic (nuisance off), held-out subjects"}
    log.info("small_cnn trained in %.1f s, held-out accuracy %.3f", info["train_seconds"], info["test_accuracy"])
    return model, order, faces, info


def saved_model_setup(model_path: Path, *, compound_models: Sequence[Path] = (), data: Path | None = None,
                      config: Any = None, split: str = "all", seed: int = 0) -> tuple:
    """A saved model, the faces to explain (:func:`load_explained_faces`) and the few-shot models that
    explain their compounds: ``(model, class_order, faces, {compound label: (model, order)}, info)``."""
    model, meta = load_model(model_path)
    order = [taxonomy.label_of(n) for n in meta["classes"]]
    if config is None and data is not None and split == "all":  # placed as `predict` places them
        faces, faces_info = recipe_faces(model, meta, data, model_path=model_path)
    else:
        faces, faces_info = load_explained_faces(data, config=config, split=split, seed=seed,
                                                 image_size=int(meta.get("image_size", 112)))
    by_label = {}
    for path in compound_models:
        m, mm = load_model(path)
        corder = [taxonomy.label_of(n) for n in mm["classes"]]
        for lab in corder:
            if taxonomy.CATEGORIES[lab].kind == "compound":
                by_label[lab] = (m, corder)
    info = {"model": str(model_path), "compound_models": [str(p) for p in compound_models], "faces": faces_info}
    return model, order, faces, by_label, info


def explain_and_report(model: nn.Module, faces: Any, order: Sequence[int], out: Path, *, method: str = "guided",
                       expected: str = "class", batch_size: int = 32, compound_models: dict | None = None,
                       subject: int | None = None, extra: dict[str, Any] | None = None,
                       seed: int = 0) -> tuple[dict[str, Any], list[Path]]:
    """CAMs of the basic and compound classes present, the relationship report (``out/report.json``) and
    its figures in ``out``; returns ``(report, figure paths)``."""
    out.mkdir(parents=True, exist_ok=True)
    present = set(int(c) for c in faces.class_labels) & set(order)
    basic = [c for c in (taxonomy.label_of(n) for n in taxonomy.basic_names()) if c in present]
    compound = [c for c in (taxonomy.label_of(n) for n in taxonomy.compound_names())
                if c in present or (compound_models and c in compound_models)]
    cc = explain_classes(model, faces, labels=basic + compound, method=method, class_order=order,
                         label_models=compound_models, batch_size=batch_size)
    report = report_from_cams(cc, basic_labels=basic, compound_labels=compound, expected=expected)
    report.update(extra or {})
    written = make_figures(cc, faces.where(labels=basic + compound), report, out, basic_labels=basic,
                           compound_labels=compound, subject=subject)
    write_json(out / "report.json", {**provenance(seed=seed), **report})
    return report, written
