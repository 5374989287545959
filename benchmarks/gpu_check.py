"""One-command device check (issue 30): the cfee_reference protocol's stages at 224 px on ResNet-50, timed.

Runs the package's own stages (compound_fer.runner: load_dataset, make_splits, train_basic_phase, make_inputs,
run_continual with KD+PSMR, run_episode in kept mode; compound_fer.explain.compute_cams) with the config
compound_fer/configs/cfee_reference.yaml plus overrides, so what is timed is what a protocol run does:

* ``basic``: the basic phase (6 classes, every layer trainable, as cfee_reference);
* ``trunk_cache``: the frozen trunk's maps of every face (``continual.augment_views`` extra training views);
* ``continual``: ``--steps`` continual steps of KD+PSMR, one compound class each, the upper layers trainable
  (``continual.trainable: tail_head`` = last stage + head, the paper's choice, not head only);
* ``fewshot``: one kept few-shot episode (KD + PSMR memory of basic faces, ``--shots`` images of one compound);
* ``gradcam``: guided Grad-CAM of ``--cam-images`` test faces with the basic model;
* ``throughput``: the package has no AMP / DataLoader-worker / pinned-memory options, so this separate stage
  trains the same FERModel (compound_fer.runner.build_basic_model) forward + backward from a torch DataLoader
  over the loaded faces: AMP (bfloat16 autocast) off and on, ``--workers`` workers with pinned memory, and a
  0-worker unpinned baseline (on CPU: AMP off only).

Each stage records seconds, images, images/s, seconds per image and its peak GPU memory
(torch.cuda.max_memory_allocated; null on CPU). The ``estimate`` block extrapolates the whole paper protocol
(one fold, 10 class orders x 15 steps, few-shot 15 compounds x shots 1/3/5, the config's epochs) on this
device from the measured seconds per image. ImageNet weights come from the torch hub cache when present,
otherwise the backbone starts random (``weights`` says which); nothing is downloaded.

    python benchmarks/gpu_check.py                       # GPU: whole cfee-subset, resnet50 at 224 px
    python benchmarks/gpu_check.py --device cpu --threads 2 --subjects 20 --folds 4 --workers 0 \
        --throughput-batches 2 --out benchmarks/results/gpu_check_cpu.json     # paper size on 2 CPU cores
    python benchmarks/gpu_check.py --smoke               # seconds on CPU: tiny model, synthetic faces
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# torch and the package are imported after the arguments are parsed (so --help is instant)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cfee-subset"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
PAPER = {"orders": 10, "steps": 15, "fewshot_shots": (1, 3, 5), "fewshot_compounds": 15}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--smoke`` replaces the sizes with tiny ones (CPU, seconds)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Writes benchmarks/results/gpu_check.json (or --out) atomically.")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="cfee-subset folder; 'synthetic' (or a missing folder) uses the package's synthetic faces")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--subjects", type=int, default=0,
                    help="keep the N subjects with the most images (0: all); the estimate scales to all of them")
    ap.add_argument("--folds", type=int, default=None,
                    help="evaluation folds (default: the config's 10); fewer keeps every class in a small slice's "
                         "test fold")
    ap.add_argument("--steps", type=int, default=15, help="continual steps (compound classes) to run, <= 15")
    ap.add_argument("--basic-epochs", type=int, default=2, help="basic-phase epochs (the config's: 300)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of each continual step and the few-shot episode")
    ap.add_argument("--shots", type=int, default=5, help="images of the few-shot episode's compound")
    ap.add_argument("--cam-images", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers of the throughput stage")
    ap.add_argument("--throughput-batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: every usable core)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny run on CPU: small_cnn at 32 px, synthetic faces, 2 steps, 1 epoch")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    if args.smoke:
        args.device = args.device or "cpu"
        args.backbone, args.image_size, args.data = "small_cnn", 32, "synthetic"
        args.steps, args.basic_epochs, args.epochs, args.shots = 2, 1, 1, 1
        args.cam_images, args.workers, args.throughput_batches = 4, 0, 2
        args.folds = args.folds or 3
    if not 1 <= args.steps <= 15:
        ap.error("--steps must be 1..15")
    return args


@dataclass
class Counter:
    """Images through the model's head: ``train`` with gradients in training mode, ``other`` the rest
    (scoring, PSMR ranking, the KD teacher). A forward hook on the head, so deep copies of the model count too."""

    train: int = 0
    other: int = 0

    def attach(self, module: Any) -> None:
        """Count what passes through ``module`` and through its deep copies. The hook is a plain function
        (deepcopy shares functions, but would copy a bound method's Counter)."""
        import torch

        counter = self

        def hook(mod: Any, inputs: Any, output: Any) -> None:
            n = int(output.shape[0])
            if mod.training and torch.is_grad_enabled():
                counter.train += n
            else:
                counter.other += n

        module.register_forward_hook(hook)

    def reset(self) -> None:
        self.train = self.other = 0


class Stages:
    """Times named stages on one device: seconds (CUDA synchronised), peak GPU memory (null on CPU)."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch
        self.results: dict[str, dict[str, Any]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """``with stages.stage("basic") as rec: ...; rec["images"] = n``: fills seconds and rates on exit."""
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        rec: dict[str, Any] = {}
        t0 = time.perf_counter()
        yield rec
        if self.cuda:
            self.torch.cuda.synchronize()
        self.add(name, rec, time.perf_counter() - t0)

    def add(self, name: str, rec: dict[str, Any], seconds: float) -> None:
        """Record a stage of ``seconds`` that processed ``rec['images']`` images."""
        n = int(rec.get("images", 0))
        rec.update(seconds=round(seconds, 3), images_per_second=round(n / seconds, 2) if seconds > 0 else None,
                   seconds_per_image=seconds / n if n else None,
                   peak_gpu_memory_mib=round(self.torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None)
        self.results[name] = rec
        print(f"{name:>28}: {n:6d} images {seconds:8.2f} s {rec['images_per_second'] or 0:9.1f} images/s"
              + (f"  peak {rec['peak_gpu_memory_mib']} MiB" if self.cuda else ""), flush=True)


def weights_source(backbone: str) -> tuple[bool, str]:
    """Whether ImageNet weights of ``backbone`` load offline, and a sentence saying where from (or why not)."""
    from compound_fer import backbones
    from compound_fer.errors import WeightsError

    spec = backbones.spec_of(backbone)
    if not spec.has_weights:
        return False, f"random init ({backbone} has no ImageNet weights)"
    try:
        spec.build(True)
    except WeightsError as err:
        return False, f"random init (ImageNet weights not found offline: {err})"
    if backbone in ("resnet18", "resnet50"):
        from compound_fer.backbones._weights import hub_checkpoint
        from compound_fer.backbones.resnet import FILES

        return True, f"imagenet ({hub_checkpoint(FILES[backbone])})"
    return True, f"imagenet ({spec.weights})"


def build_config(args: argparse.Namespace, *, synthetic: bool, pretrained: bool) -> Any:
    """cfee_reference with this check's overrides: size, backbone, epochs, one method and order, kept few-shot."""
    import compound_fer
    from compound_fer.config import load_config

    cfg = load_config(Path(compound_fer.__file__).parent / "configs" / "cfee_reference.yaml")
    data: dict[str, Any] = {"image_size": args.image_size}
    if synthetic:
        data.update(source="synthetic", synthetic={"n_subjects": 6 if args.smoke else 24, "per_subject": 1})
    else:
        data.update(source="path", path=args.data)
    evaluation = {"folds": args.folds, "fold": 0} if args.folds else {}
    return cfg.with_overrides(
        data=data, evaluation=evaluation, model={"backbone": args.backbone, "pretrained": pretrained},
        basic={"epochs": args.basic_epochs},
        continual={"methods": ["kdpsmr"], "orders": 1, "epochs": args.epochs, "trainable": "tail_head"},
        fewshot={"enabled": True, "mode": "kept", "shots": [args.shots], "epochs": args.epochs, "save_models": False},
        seeds=[args.seed], device=args.device, threads=args.threads, loggers=[],
    )


def keep_subjects(faces: Any, n: int) -> Any:
    """The ``n`` subjects with the most images (ties: lower id), so a small slice still holds most classes."""
    import numpy as np

    ids, counts = np.unique(faces.subjects.numpy(), return_counts=True)
    order = np.lexsort((ids, -counts))
    return faces.where(subjects=[int(i) for i in ids[order[:n]]])


def throughput(stages: Stages, cfg: Any, faces: Any, args: argparse.Namespace) -> None:
    """Forward + backward of the basic FERModel from a DataLoader: AMP off/on, workers + pinned memory, baseline."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from compound_fer.runner import basic_labels, build_basic_model, seed_everything

    cuda = stages.cuda
    runs = [(False, 0, False)]  # (amp, workers, pin_memory): the unpinned 0-worker baseline
    if cuda:
        runs += [(False, args.workers, True), (True, args.workers, True)]
    elif args.workers > 0:
        runs += [(False, args.workers, False)]
    bs = cfg.basic.batch_size
    for amp, workers, pin in runs:
        seed_everything(args.seed)
        model = build_basic_model(cfg, len(basic_labels(cfg))).to(cfg.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.basic.lr)
        loader = DataLoader(TensorDataset(faces.images, faces.labels % 6), batch_size=bs, shuffle=True,
                            drop_last=len(faces) >= bs, num_workers=workers, pin_memory=pin,
                            persistent_workers=workers > 0)
        name = f"throughput_amp_{'on' if amp else 'off'}_workers{workers}_{'pinned' if pin else 'unpinned'}"

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                yield from loader

        it = batches()

        def step() -> int:
            x, y = next(it)
            x = x.to(cfg.device, non_blocking=pin).float().div_(255)
            y = y.to(cfg.device, non_blocking=pin)
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return len(x)

        for _ in range(1 if cfg.device == "cpu" else 3):  # warm-up: cuDNN autotuning, worker start
            step()
        with stages.stage(name) as rec:
            rec["images"] = sum(step() for _ in range(args.throughput_batches))
            rec.update(what="forward+backward+Adam of the basic FERModel, every layer trainable, from a DataLoader",
                       amp="bfloat16 autocast" if amp else "off", num_workers=workers, pin_memory=pin,
                       batch_size=bs, batches=args.throughput_batches)


def estimate(stages: Stages, *, cfg: Any, paper_cfg: Any, counts: dict[str, Any], device: str) -> dict[str, Any]:
    """The whole paper protocol on this device: measured seconds per image x the images each stage would process."""
    r = stages.results
    n_tr, n_va, n_te, m = (counts["full_train_images"], counts["full_val_images"], counts["full_test_images"],
                           counts["full_quota"])
    views = paper_cfg.continual.augment_views
    step_images = sum(m * (6 + i - 1) + m for i in range(1, PAPER["steps"] + 1))  # memory of old classes + m new
    images = {
        "basic": paper_cfg.basic.epochs * n_tr,
        "trunk_cache": n_tr * (1 + views) + n_va + (0 if counts["test_is_val"] else n_te),
        "continual": PAPER["orders"] * paper_cfg.continual.epochs * step_images,
        "fewshot": PAPER["fewshot_compounds"] * sum(paper_cfg.fewshot.epochs * (6 * m + k)
                                                    for k in PAPER["fewshot_shots"]),
        "gradcam": n_te,
    }
    seconds = {k: (r[k]["seconds_per_image"] or 0.0) * v for k, v in images.items()}
    c = r["continual"]  # the same count for this run's steps, against the images its head trained
    predicted = c["epochs"] * sum(c["memory_quota"] * (6 + i - 1) + c["memory_quota"] for i in range(1, c["steps"] + 1))
    total = sum(seconds.values())
    return {
        "device": device,
        "formula": ("seconds = sum over stages of seconds_per_image[stage] x paper_images[stage]; paper_images: "
                    "basic = basic.epochs x N_train; trunk_cache = N_train x (1 + augment_views) + N_val (+ N_test "
                    "when test is not val); continual = orders x continual.epochs x sum_{i=1..15} (m x (6+i-1) + m) "
                    "(PSMR: m per old class + m of the new one, m = the memory quota); fewshot (kept) = 15 compounds "
                    "x sum_{k in 1,3,5} fewshot.epochs x (6 m + k); gradcam = N_test. Basic epochs are the config's "
                    "upper bound (early stopping, patience 100, may end sooner); data loading is excluded"),
        "inputs": {"N_train": n_tr, "N_val": n_va, "N_test": n_te, "m": m, "augment_views": views,
                   "orders": PAPER["orders"], "steps": PAPER["steps"], "basic_epochs": paper_cfg.basic.epochs,
                   "continual_epochs": paper_cfg.continual.epochs, "fewshot_epochs": paper_cfg.fewshot.epochs},
        "paper_images": images,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "formula_check_this_run": {"continual_images_predicted": predicted, "continual_images_measured": c["images"],
                                   "note": "fewer when a class has under m training images"},
        "total_seconds": round(total, 1), "total_hours": round(total / 3600, 2),
        "note": ("per-image times of this run's stages (its epochs, steps and slice); a GPU estimate needs a GPU "
                 "run, a 2-core estimate a CPU run with --threads 2"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every stage, print images/s per stage, write the JSON; 0 on success."""
    args = parse_args(argv)
    import torch

    from compound_fer import taxonomy
    from compound_fer.config import load_config
    from compound_fer.explain.gradcam import compute_cams
    from compound_fer.io import provenance, write_json
    from compound_fer.runner import (
        OrderJob,
        basic_labels,
        build_basic_model,
        load_dataset,
        make_inputs,
        make_splits,
        resolve_plan,
        run_continual,
        seed_everything,
        train_basic_phase,
    )
    from compound_fer.runner.fewshot import Episode, EpisodeSettings, run_episode
    from compound_fer.threads import configure

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    synthetic = args.data == "synthetic" or not Path(args.data).is_dir()
    pretrained, weights = weights_source(args.backbone)
    cfg = build_config(args, synthetic=synthetic, pretrained=pretrained)
    threads = configure(cfg.threads)
    stages = Stages(args.device)
    print(f"device {args.device}, {args.backbone} at {args.image_size} px, weights: {weights}, threads {threads}",
          flush=True)

    t0 = time.perf_counter()
    all_faces = load_dataset(cfg, progress=False)
    faces = keep_subjects(all_faces, args.subjects) if args.subjects else all_faces
    load_seconds = time.perf_counter() - t0
    plan = resolve_plan(cfg)
    splits = make_splits(cfg, faces, seed=args.seed)
    # the whole data set under the paper's config (10 folds): the image counts the estimate scales to
    paper_cfg = load_config(Path(sys.modules["compound_fer"].__file__).parent / "configs" / "cfee_reference.yaml")
    n_subjects = len(set(all_faces.subjects.tolist()))  # a tiny synthetic set cannot fill 10 folds: its own
    full_folds = paper_cfg.evaluation.folds if n_subjects >= paper_cfg.evaluation.folds else cfg.evaluation.folds
    full = make_splits(cfg.with_overrides(evaluation={"folds": full_folds}), all_faces, seed=args.seed)
    counts = {"full_folds": full_folds, "full_train_images": len(full.train), "full_val_images": len(full.val),
              "full_test_images": len(full.test), "test_is_val": full.test is full.val,
              # KD+PSMR's per-class quota m over all 21 classes (memory_fraction as the paper's)
              "full_quota": plan.resolve(plan.method("kdpsmr"), n_train_images=len(full.train),
                                         n_classes_total=21).memory.quota}

    counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        seed_everything(args.seed)
        model = build_basic_model(cfg, len(basic_labels(cfg)))
        counter.attach(model.head)
        with stages.stage("basic") as rec:
            model, info = train_basic_phase(cfg, splits, seed=args.seed, out_dir=Path(tmp), progress=False,
                                            model=model)
            rec.update(images=counter.train, scored_images=counter.other, epochs=args.basic_epochs,
                       test_accuracy=info["test_accuracy"], what="basic phase, every layer trained (images trained)")
        counter.reset()
        with stages.stage("trunk_cache") as rec:
            inputs = make_inputs(cfg, model, splits, seed=args.seed, progress=False)
            rec.update(images=len(splits.train) * (1 + cfg.continual.augment_views) + len(splits.val)
                       + (0 if splits.test is splits.val else len(splits.test)),
                       what="trunk maps of every face (augment_views extra training views)")
        compounds = [c.name for c in taxonomy.categories("compound")]
        order = tuple(compounds[: args.steps])
        with stages.stage("continual") as rec:
            row = run_continual(plan, OrderJob(plan.method("kdpsmr"), 0, order, args.seed), basic_model=model,
                                splits=splits, inputs=inputs)
            rec.update(images=counter.train, scored_images=counter.other, steps=args.steps, epochs=args.epochs,
                       trainable=cfg.continual.trainable, memory_quota=row.memory_quota,
                       overall_accuracy=row.overall_accuracy, step_seconds=row.step_seconds,
                       what="KD+PSMR continual steps on cached trunk maps, last stage + head trained (images trained)")
        counter.reset()
        quota = plan.stream_memory(len(splits.train)).quota
        with stages.stage("fewshot") as rec:
            res = run_episode(Episode(order[0], args.shots, args.seed * 100, "kept"),
                              EpisodeSettings.from_config(cfg, mode="kept", quota=quota), basic_model=model,
                              train=splits.train, test=splits.test, inputs=inputs)
            rec.update(images=counter.train, scored_images=counter.other, compound=order[0], shots=args.shots,
                       epochs=args.epochs, harmonic_mean=res.harmonic_mean,
                       what="one kept few-shot episode: KD + PSMR memory of basic faces (images trained)")
        basic_test = splits.test.where(labels=basic_labels(cfg))
        n_cam = min(args.cam_images, len(basic_test))
        with stages.stage("gradcam") as rec:
            cams = compute_cams(model, basic_test.float_images()[:n_cam], basic_test.labels[:n_cam].tolist(),
                                method="guided", class_order=list(basic_labels(cfg)), progress=False)
            rec.update(images=len(cams), method="guided", what="guided Grad-CAM of basic test faces, basic model")
    del inputs
    throughput(stages, cfg, faces, args)

    out = {
        **provenance(command=" ".join(["python", *map(shlex.quote, sys.argv)]) if argv is None
                     else " ".join(["python", "benchmarks/gpu_check.py", *map(shlex.quote, argv)]), seed=args.seed),
        "what": "cfee_reference-like stages timed on one device (issue 30): basic, trunk maps, KD+PSMR continual "
                "steps, kept few-shot, Grad-CAM, and a separate DataLoader/AMP throughput stage",
        "device": args.device, "smoke": args.smoke, "backbone": args.backbone, "image_size": args.image_size,
        "weights": weights, "pretrained": pretrained, "threads": threads,
        "data": "synthetic" if synthetic else args.data, "subjects": args.subjects or "all",
        "images": len(faces), "split": splits.info, "load_seconds": round(load_seconds, 2),
        "config": {"base": "compound_fer/configs/cfee_reference.yaml", "continual.trainable": cfg.continual.trainable,
                   "evaluation.folds": cfg.evaluation.folds, "basic.epochs": cfg.basic.epochs,
                   "continual.epochs": cfg.continual.epochs, "fewshot": f"kept, {args.shots} shots"},
        "note": "protocol stages run the package's fp32 loops as they are (no AMP/worker options there); AMP, "
                "DataLoader workers and pinned memory are measured in the throughput stages only",
        "stages": stages.results,
        "peak_gpu_memory_mib": max(r["peak_gpu_memory_mib"] for r in stages.results.values()) if stages.cuda else None,
        "estimate": estimate(stages, cfg=cfg, paper_cfg=paper_cfg, counts=counts, device=args.device),
    }
    write_json(args.out, out)
    print(f"estimate of the paper protocol on {args.device}: {out['estimate']['total_hours']} h; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
