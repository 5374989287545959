"""``compound-fer gradcam``: CAM figures and the basic-compound relationship report for a saved model,
or, with ``--synthetic``, for a small CNN trained on the built-in synthetic faces (regions known)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Sequence

NAME = "gradcam"
HELP = "Grad-CAM figures and basic-compound relationship measures (similarity, components, region attention)"

log = logging.getLogger(__name__)

METHOD_CHOICES = ("guided", "gradcam", "gradcam++", "hirescam", "eigencam", "layercam")
SPLIT_CHOICES = ("all", "train", "val", "test")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true",
                     help="train small_cnn on synthetic faces (seconds) and explain it: regions are known")
    src.add_argument("--model", type=Path, help="a saved model (.pt with its .json metadata, from `compound-fer run`)")
    p.add_argument("--compound-model", action="append", default=[], type=Path, metavar="PATH",
                   help="few-shot model(s) to explain the compounds they learned, as the reference does (repeatable)")
    p.add_argument("--data", type=Path, help="face folder for --model (a CFEE-style tree readable by compound_fer.data.load); "
                   "with --config it overrides the config's data path")
    p.add_argument("--config", default=None,
                   help="--model: the protocol config (YAML or packaged name, e.g. cfee_cpu) the model was trained "
                        "with: its face crops, and its split for --split")
    p.add_argument("--split", default="all", choices=SPLIT_CHOICES,
                   help="--model: explain only this part of the config's split for --seed (needs --config; "
                        "test = subjects never seen in training). Default: all images")
    p.add_argument("--method", default="guided", choices=METHOD_CHOICES,
                   help="CAM method (default: guided, the reference's guided Grad-CAM)")
    p.add_argument("--expected", default="class", choices=("class", "aus"),
                   help="expected regions: of the class's prototypical AUs, or of each image's coded AUs")
    p.add_argument("--subject", type=int, default=None, help="subject of the per-subject figure (default: first)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=12, help="--synthetic: training epochs")
    p.add_argument("--classes", default=None,
                   help="--synthetic: comma-separated categories (default: the 6 basic and 15 compound)")
    p.add_argument("--subjects", type=int, default=20, help="--synthetic: training subjects")
    p.add_argument("--seed", type=int, default=0,
                   help="--synthetic: data and training seed; --model with --split: the split's seed")
    p.add_argument("--out", type=Path, default=Path("runs/gradcam"), help="output folder (figures + report.json)")


def train_synthetic_model(faces, *, epochs: int = 12, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                          pool: str = "max"):
    """small_cnn trained on ``faces`` (all classes at once): returns (model, class_order).

    Without BatchNorm the convs get He initialisation (PyTorch's default leaves such a net on a plateau
    for many epochs); horizontal flips augment. Seconds per epoch on one CPU thread for a few hundred 64 px faces.
    """
    import torch

    from compound_fer.models import build_model

    torch.manual_seed(seed)
    order = [int(c) for c in faces.class_labels]
    lut = torch.full((max(order) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(order)] = torch.arange(len(order))
    y = lut[faces.labels]
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


def load_explained_faces(data: Path | None, *, config: str | None = None, split: str = "all", seed: int = 0,
                         image_size: int = 112):
    """The faces to explain for ``--model``: returns ``(faces, info)``.

    Without ``config``: every image ``data`` holds (``compound_fer.data.load.load_faces`` with its default
    crops), and ``split`` must be ``"all"``. With ``config`` (a YAML path or packaged name): the faces as
    the protocol runner loads them (``runner.load_dataset``: the config's crop method and margin, neutral
    excluded unless the config includes it; ``data`` overrides ``data.path``), and for ``split`` in
    train / val / test that part of ``runner.make_splits(cfg, faces, seed=seed)``, the same split
    the runner trained with for that seed (``"test"``: subjects no model of that run has seen).
    ``image_size`` (the model's input size) replaces the config's. ``info`` describes the selection
    (JSON-able, goes into the report).
    """
    from compound_fer.errors import ConfigError, DataError

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
    from compound_fer import runner
    from compound_fer.commands._common import resolve_config
    from compound_fer.config import load_config

    cfg = load_config(resolve_config(config))
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


def accuracy(model, faces, class_order: Sequence[int], batch_size: int = 64) -> float:
    from compound_fer.explain.gradcam import predict

    pred = predict(model, faces.images, batch_size=batch_size, class_order=class_order)
    return float((pred == faces.labels.numpy()).mean())


def make_figures(cc, faces, report: dict[str, Any], out: Path, *, basic_labels, compound_labels,
                 subject: int | None = None, prefix: str = "gradcam") -> list[Path]:
    """All figures of one report: subject figure, mean-CAM grid, relationship heatmaps, region bars."""
    import numpy as np

    from compound_fer.explain import figures as F

    written: list[Path] = []
    subjects = cc.subjects
    subject = int(subjects[0]) if subject is None else int(subject)
    sel = np.flatnonzero(subjects == subject)
    if len(sel) == 0:
        from compound_fer.errors import DataError

        raise DataError(f"--subject {subject}: no face of that subject among the explained images")
    images, cams = {}, {}
    for i in sel:  # the subject's first image of each label
        lab = int(cc.labels[i])
        if lab not in images:
            images[lab] = faces.images[i].permute(1, 2, 0).numpy()
            cams[lab] = cc.cams[i]
    written += F.subject_figure(images, cams, out / f"{prefix}_subject", basic_labels=basic_labels,
                                compound_labels=compound_labels,
                                title=f"subject {subject}: basic (top) and compound CAMs ({cc.method})")
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


def run(args: argparse.Namespace) -> int:
    import torch

    from compound_fer import taxonomy
    from compound_fer.explain.relationship import explain_classes, report_from_cams
    from compound_fer.io import provenance, write_json

    torch.set_num_threads(1)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    compound_models = None
    if args.synthetic and (args.config is not None or args.split != "all"):
        from compound_fer.errors import ConfigError

        raise ConfigError("--config and --split go with --model (--synthetic makes its own held-out faces)")
    if args.synthetic:
        from compound_fer.data.synthetic import generate

        names = [s.strip() for s in args.classes.split(",")] if args.classes else [
            *taxonomy.basic_names(), *taxonomy.compound_names()]
        train = generate(categories=names, n_subjects=args.subjects, per_subject=2, image_size=64, seed=args.seed,
                         nuisance=False)
        faces = generate(categories=names, n_subjects=6, per_subject=2, image_size=64, seed=args.seed,
                         subject_offset=10_000, nuisance=False)
        t0 = time.perf_counter()
        model, order = train_synthetic_model(train, epochs=args.epochs, seed=args.seed)
        extra = {"train_seconds": round(time.perf_counter() - t0, 1), "train_images": len(train),
                 "test_accuracy": accuracy(model, faces, order), "data": "synthetic (nuisance off), held-out subjects"}
        log.info("small_cnn trained in %.1f s, held-out accuracy %.3f", extra["train_seconds"], extra["test_accuracy"])
    else:
        from compound_fer.model_io import load_model

        model, meta = load_model(args.model)
        order = [taxonomy.label_of(n) for n in meta["classes"]]
        faces, faces_info = load_explained_faces(args.data, config=args.config, split=args.split, seed=args.seed,
                                                 image_size=int(meta.get("image_size", 112)))
        compound_models = {}
        for path in args.compound_model:
            m, mm = load_model(path)
            corder = [taxonomy.label_of(n) for n in mm["classes"]]
            for lab in corder:
                if taxonomy.CATEGORIES[lab].kind == "compound":
                    compound_models[lab] = (m, corder)
        extra = {"model": str(args.model), "compound_models": [str(p) for p in args.compound_model],
                 "faces": faces_info}
    present = set(int(c) for c in faces.class_labels) & set(order)
    basic = [c for c in (taxonomy.label_of(n) for n in taxonomy.basic_names()) if c in present]
    compound = [c for c in (taxonomy.label_of(n) for n in taxonomy.compound_names())
                if c in present or (compound_models and c in compound_models)]
    cc = explain_classes(model, faces, labels=basic + compound, method=args.method, class_order=order,
                         label_models=compound_models, batch_size=args.batch_size)
    report = report_from_cams(cc, basic_labels=basic, compound_labels=compound, expected=args.expected)
    report.update(extra)
    written = make_figures(cc, faces.where(labels=basic + compound), report, out, basic_labels=basic,
                           compound_labels=compound, subject=args.subject)
    write_json(out / "report.json", {**provenance(seed=args.seed), **report})
    ra = report.get("region_attention", {}).get("overall")
    if ra:
        print(f"pointing game {ra['pointing']:.3f} (chance {ra['pointing_chance']:.3f}, class-blind prior "
              f"{ra['pointing_prior']:.3f})")
    rel = report.get("relationship")
    if rel:
        s = rel["pearson"]["components"]["summary"]
        print(f"compounds closest to a component (pearson): {s['top1_hits']}/{s['n_compounds']} "
              f"(chance {s['top1_chance']:.3f}, p = {s['top1_p_value']:.3g})")
    print(f"wrote {out / 'report.json'} and {len(written)} figure files in {out}")
    return 0
