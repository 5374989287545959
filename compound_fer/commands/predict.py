"""``compound-fer predict``: label new photos with a saved model, one CSV row per image
(:func:`compound_fer.prediction.predict`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compound_fer.commands._progress import add_progress_argument, show_progress

NAME = "predict"
HELP = ("label new photos with a saved model: one CSV row per image (label, probability, top-k, or why no face "
        "was found); faces are found and aligned as in training")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a saved model (.pt with its .json beside it, e.g. runs/demo/models/"
                                            "kdpsmr_seed0.pt)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or folders (searched recursively); any size, colour or grey")
    p.add_argument("--out", type=Path, help="CSV file to write (default: print the CSV)")
    p.add_argument("--top-k", default="3", metavar="K",
                   help="labels listed per image, most likely first (default 3; at most the model's classes: a "
                        "larger K lists them all, with a warning)")
    p.add_argument("--gradcam", type=Path, metavar="DIR", help="also write a Grad-CAM overlay PNG per face into DIR")
    p.add_argument("--landmarks", type=Path, metavar="CSV",
                   help="a landmarks file for the photos (a folder's own landmarks.csv is used without it)")
    p.add_argument("--config", metavar="CONFIG",
                   help="only for a model file saved without its input recipe (an older version): the config it "
                        "was trained with (YAML or packaged name), which says how its faces were made")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from compound_fer.commands._common import check_out_dir, parse_int
    from compound_fer.errors import ConfigError

    top_k = parse_int(args.top_k, "--top-k", minimum=1)
    if args.out is not None and args.out.is_dir():
        raise ConfigError(f"--out {args.out}: is a folder; give the CSV file to write")
    if args.gradcam is not None:
        check_out_dir(args.gradcam, "--gradcam")
    if args.landmarks is not None and not args.landmarks.is_file():
        raise ConfigError(f"--landmarks {args.landmarks}: no such file")
    from compound_fer.prediction import predict, write_csv

    preds = predict(args.model, args.inputs, top_k=top_k, gradcam=args.gradcam, landmarks=args.landmarks,
                    progress=show_progress(args), config=args.config)
    missing = sum(not p.face_found for p in preds)
    summary = (f"{len(preds)} image(s): {len(preds) - missing} labelled, {missing} without a face or unreadable"
               + (" (see the reason column)" if missing else ""))
    if args.out is None:
        write_csv(preds, stream=sys.stdout)
        print(summary, file=sys.stderr)
    else:
        write_csv(preds, args.out)
        print(f"{summary}; wrote {args.out}")
    if args.gradcam is not None:
        print(f"Grad-CAM overlays: {args.gradcam}/ ({sum(p.gradcam is not None for p in preds)} PNG files)",
              file=sys.stderr if args.out is None else sys.stdout)
    return 0
