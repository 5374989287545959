"""Batched Grad-CAM throughput on CPU against a per-image loop, in the same run; and the pointing game
of small_cnn trained on synthetic faces over a few seeds (``--pointing-seeds``; ``--no-speed`` skips speed).

MobileNetV2 with ImageNet weights (``models.build_model``, offline), 112 px faces, one torch thread, CAMs
for explicit targets at the model's ``target_layer``. Writes benchmarks/results/gradcam.json.

    python benchmarks/gradcam_speed.py [--images 64] [--size 112] [--methods gradcam guided] [--pointing-seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

# torch and the package are imported after the arguments are parsed (so --help is instant)


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--loop-images", type=int, default=16, help="images for the per-image loop (slower)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=["gradcam", "guided", "gradcam++", "eigencam"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pointing-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gradcam.json")
    args = ap.parse_args()
    import torch

    from compound_fer.io import provenance, write_json

    torch.set_num_threads(args.threads)
    result = {**provenance(seed=args.seed), "load_average_before": list(os.getloadavg())}
    if not args.no_speed:
        result["speed"] = speed(args)
    if args.pointing_seeds:
        result["pointing_synthetic"] = pointing(args.pointing_seeds)
    result["load_average_after"] = list(os.getloadavg())
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


POINTING_CLASSES = ("Happy", "Surprised", "Disgusted")


def pointing(seeds: list[int]) -> dict:
    """The test's setting (tests/test_relationship.py) over several seeds: small_cnn, 12 epochs, 64 px."""
    from compound_fer import taxonomy
    from compound_fer.data.synthetic import generate
    from compound_fer.explain import relationship as R
    from compound_fer.explain.pipeline import accuracy, train_synthetic_model

    rows = []
    for seed in seeds:
        tr = generate(categories=POINTING_CLASSES, n_subjects=20, per_subject=2, image_size=64, seed=seed,
                      nuisance=False)
        te = generate(categories=POINTING_CLASSES, n_subjects=12, per_subject=2, image_size=64, seed=seed,
                      subject_offset=500, nuisance=False)
        t = time.perf_counter()
        model, order = train_synthetic_model(tr, epochs=12, seed=seed)
        row = {
            "seed": seed,
            "train_s": round(time.perf_counter() - t, 1),
            "accuracy": round(accuracy(model, te, order), 3),
        }
        for method in ("gradcam", "guided"):
            cc = R.explain_classes(model, te, labels=[taxonomy.label_of(n) for n in POINTING_CLASSES],
                                   method=method, class_order=order)
            for expected in ("class", "aus"):
                o = R.region_attention(cc.cams, cc.labels, cc.region_masks, expected=expected, aus=cc.aus)["overall"]
                row[f"{method}/{expected}"] = {k: round(o[k], 3) for k in (
                    "pointing", "pointing_chance", "pointing_prior", "expected_share", "expected_area")}
        print(seed, row, flush=True)
        rows.append(row)
    return {"classes": list(POINTING_CLASSES), "train": "20 subjects x 2, nuisance off, 12 epochs",
            "test": "12 held-out subjects x 2", "rows": rows}


def speed(args) -> dict:
    import torch

    from compound_fer.explain.gradcam import compute_cams
    from compound_fer.models import build_model

    torch.manual_seed(args.seed)
    model = build_model("mobilenet_v2", num_classes=21, pretrained=True, image_size=args.size)
    model.set_trainable("tail_head")  # a continual-step model: frozen trunk
    model.eval()
    x = torch.rand(args.images, 3, args.size, args.size)
    targets = torch.randint(0, 21, (args.images,)).tolist()
    model.class_order = list(range(21))  # output column = global label (explained columns are arbitrary here)
    compute_cams(model, x[:2], targets[:2], method="gradcam")  # warm-up
    with torch.no_grad():
        fwd = _time(lambda: [model(x[s:s + args.batch_size]) for s in range(0, args.images, args.batch_size)],
                    args.repeats)
    rows = {}
    for method in args.methods:
        batched = _time(lambda: compute_cams(model, x, targets, method=method, batch_size=args.batch_size,
                                             progress=False), args.repeats)
        n = args.loop_images
        loop = _time(lambda: [compute_cams(model, x[i:i + 1], targets[i:i + 1], method=method, progress=False)
                              for i in range(n)], args.repeats)
        b = args.images / statistics.median(batched)
        lp = n / statistics.median(loop)
        rows[method] = {"batched_cams_per_s": round(b, 2), "loop_cams_per_s": round(lp, 2),
                        "speedup": round(b / lp, 2), "batched_s": [round(t, 3) for t in batched],
                        "loop_s": [round(t, 3) for t in loop]}
        print(f"{method:10s} batched {b:7.1f}/s  per-image loop {lp:7.1f}/s  x{b / lp:.2f}", flush=True)
    if "eigencam" in args.methods:  # the library's own EigenCAM (full SVD, numpy BLAS) for comparison
        from pytorch_grad_cam import EigenCAM

        n = min(args.images, 16)
        lib = _time(lambda: compute_cams(model, x[:n], targets[:n], method=EigenCAM, batch_size=args.batch_size,
                                         progress=False), 1)
        rows["eigencam_library"] = {"batched_cams_per_s": round(n / lib[0], 2), "batched_s": [round(lib[0], 3)],
                                    "images": n}
        print(f"library EigenCAM batched {n / lib[0]:.1f}/s", flush=True)
    inference = args.images / statistics.median(fwd)
    print(f"plain inference (no CAM) {inference:.1f} images/s")
    return {
        "model": "mobilenet_v2 (ImageNet weights, trunk frozen), target_layer = model.target_layer",
        "image_size": args.size, "images": args.images, "loop_images": args.loop_images,
        "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
        "inference_images_per_s": round(inference, 2), "methods": rows,
        "note": "median of repeats; the per-image loop opens one CAMExplainer per image, as a naive caller would",
    }


if __name__ == "__main__":
    raise SystemExit(main())
