"""`compound-fer evaluate`: accuracy of a saved model on a data folder, per class."""

from __future__ import annotations

import argparse

from compound_fer.commands._progress import add_progress_argument, show_progress

NAME = "evaluate"
HELP = "evaluate a saved model (.pt state dict + .json metadata) on a CFEE or labelled folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a .pt file written by `compound-fer run` (its .json beside it)")
    p.add_argument("--data", required=True, help="CFEE release or labelled-folder root")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--config", metavar="CONFIG",
                   help="only for a model file saved without its input recipe (an older version): the config it "
                        "was trained with (YAML or packaged name), which says how its faces were made")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from compound_fer import taxonomy
    from compound_fer.evaluation.metrics import accuracy, per_class_recall
    from compound_fer.io import provenance, write_json
    from compound_fer.model_io import load_model
    from compound_fer.prediction.labelled import labelled_inputs
    from compound_fer.prediction.model import classify

    model, meta = load_model(args.model)
    classes = [taxonomy.label_of(c) for c in meta["classes"]]
    # the faces as `predict` places them: the model's recipe, through prediction.inputs.model_inputs
    data = labelled_inputs(model, meta, args.data, progress=show_progress(args), model_path=args.model,
                           config=args.config)
    lut = {g: i for i, g in enumerate(classes)}
    y = np.array([lut[int(g)] for g in data.labels])
    pred = classify(model, data.inputs.x, names=[str(c) for c in meta["classes"]]).argmax(1)
    if data.missing:
        first = next(iter(data.missing.items()))
        print(f"{len(data.missing)} image(s) without a face are left out (first: {first[0]}: {first[1]})")
    recall = per_class_recall(y, pred, range(len(classes)))
    print(f"{len(y)} images, accuracy {100 * accuracy(y, pred):.2f}%")
    counts = np.bincount(y, minlength=len(classes))
    for i, name in enumerate(meta["classes"]):
        if counts[i]:  # a class the data lacks has no recall: listed once below, not as nan%
            print(f"  {name:24s} {100 * recall[i]:6.2f}%  (n={counts[i]})")
    absent = [name for i, name in enumerate(meta["classes"]) if not counts[i]]
    if absent:
        print(f"  not in {args.data}: {', '.join(absent)}")
    if args.json:
        write_json(args.json, {**provenance(), "model": args.model, "data": args.data,
                               "accuracy": accuracy(y, pred),
                               "per_class_recall": {meta["classes"][k]: v for k, v in recall.items() if counts[k]},
                               "images_per_class": {name: int(counts[i]) for i, name in enumerate(meta["classes"])},
                               "absent_classes": absent, "faces_missing": len(data.missing),
                               "recipe": data.inputs.recipe.origin})
    return 0
