"""``compound-fer gradcam``: CAM figures and the basic-compound relationship report for a saved model,
or, with ``--synthetic``, for a small CNN trained on the built-in synthetic faces (regions known)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compound_fer.commands._common import resolve_config
from compound_fer.errors import ConfigError
from compound_fer.explain import SPLIT_CHOICES

NAME = "gradcam"
HELP = "Grad-CAM figures and basic-compound relationship measures (similarity, components, region attention)"

METHOD_CHOICES = ("guided", "gradcam", "gradcam++", "hirescam", "eigencam", "layercam")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true",
                     help="train small_cnn on synthetic faces (seconds) and explain it: regions are known")
    src.add_argument("--model", type=Path, help="a saved model (.pt with its .json metadata, from `compound-fer run`)")
    p.add_argument("--compound-model", action="append", default=[], type=Path, metavar="PATH",
                   help="few-shot model(s) to explain the compounds they learned, as the reference does (repeatable)")
    p.add_argument(
        "--data",
        type=Path,
        help="face folder for --model (a CFEE-style tree readable by compound_fer.data.load), its faces placed "
        "by the model's recipe exactly as `predict` places them; with --config it overrides the config's data path "
        "and the config's crops are used",
    )
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


def run(args: argparse.Namespace) -> int:
    import torch

    from compound_fer.explain import pipeline

    torch.set_num_threads(1)
    compound_models = None
    if args.synthetic:
        if args.config is not None or args.split != "all":
            raise ConfigError("--config and --split go with --model (--synthetic makes its own held-out faces)")
        classes = [s.strip() for s in args.classes.split(",")] if args.classes else None
        model, order, faces, extra = pipeline.synthetic_setup(classes=classes, subjects=args.subjects,
                                                              epochs=args.epochs, seed=args.seed)
    else:
        config = resolve_config(args.config) if args.config is not None else None
        model, order, faces, compound_models, extra = pipeline.saved_model_setup(
            args.model, compound_models=args.compound_model, data=args.data, config=config, split=args.split,
            seed=args.seed)
    report, written = pipeline.explain_and_report(
        model, faces, order, args.out, method=args.method, expected=args.expected, batch_size=args.batch_size,
        compound_models=compound_models, subject=args.subject, extra=extra, seed=args.seed)
    _print_summary(report)
    print(f"wrote {args.out / 'report.json'} and {len(written)} figure files in {args.out}")
    return 0


def _print_summary(report: dict) -> None:
    ra = report.get("region_attention", {}).get("overall")
    if ra:
        print(f"pointing game {ra['pointing']:.3f} (chance {ra['pointing_chance']:.3f}, class-blind prior "
              f"{ra['pointing_prior']:.3f})")
    rel = report.get("relationship")
    if rel:
        s = rel["pearson"]["components"]["summary"]
        print(f"compounds closest to a component (pearson): {s['top1_hits']}/{s['n_compounds']} "
              f"(chance {s['top1_chance']:.3f}, p = {s['top1_p_value']:.3g})")
