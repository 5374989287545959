"""Face preprocessing speed and Haar hit rate on cfee-subset -> benchmarks/results/data.json, key "faces".

Measures images/s for cold preprocessing (Haar cascades, landmarks) over every matched file, the
Haar hit rate with landmarks ignored, and a cached second read through ``read_cfee``.

    python benchmarks/faces_speed.py [--root ../shared/data/cfee-subset] [--size 112]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "data.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cfee-subset"))
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from compound_fer.data.cfee import read_cfee, scan_cfee
    from compound_fer.data.faces import CropOptions, preprocess_faces, read_landmarks
    from compound_fer.data.index import lookup_landmarks as lookup
    from compound_fer.io import provenance, write_json

    index = scan_cfee(args.root)
    files = list(index.files)
    n = len(files)
    print(f"{n} files under {args.root}", file=sys.stderr)

    t = time.perf_counter()
    haar = preprocess_faces(files, None, crop=CropOptions(image_size=args.size, method="haar"), cache=False,
                            progress=True)
    t_haar = time.perf_counter() - t
    missed = [s.file for s in haar.skipped]

    lms = read_landmarks(index.landmarks) if index.landmarks else None
    land = None
    if lms is not None:
        rows = [lookup(lms, f, index.root) for f in files]
        t = time.perf_counter()
        land = preprocess_faces(files, rows, crop=CropOptions(image_size=args.size, method="landmarks"),
                                cache=False, progress=True)
        t_land = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as cache_dir:
        t = time.perf_counter()
        first = read_cfee(args.root, crop=CropOptions(image_size=args.size, detector="mediapipe"),
                          cache_dir=cache_dir, progress=True)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        second = read_cfee(args.root, crop=CropOptions(image_size=args.size, detector="mediapipe"),
                           cache_dir=cache_dir, progress=True)
        t_second = time.perf_counter() - t
        assert second.meta["cache_hits"] == len(index.usable()), second.meta["cache_hits"]

    section = {
        "root": str(args.root),
        "image_size": args.size,
        "files": n,
        "haar": {
            "images_per_s": round(n / t_haar, 2),
            "seconds": round(t_haar, 2),
            "faces_found": len(haar.index),
            "hit_rate": round(len(haar.index) / n, 5),
            "missed": missed,
            "eyes_found_for_alignment": round(Counter(haar.methods)["haar"] / max(1, len(haar.index)), 4),
        },
        "landmarks": None if land is None else {
            "images_per_s": round(n / t_land, 2),
            "seconds": round(t_land, 2),
            "faces": len(land.index),
        },
        "read_cfee_auto_cold": {"images": len(first), "seconds": round(t_first, 2),
                                "images_per_s": round(len(first) / t_first, 2)},
        "read_cfee_cached": {"images": len(second), "seconds": round(t_second, 2),
                             "images_per_s": round(len(second) / t_second, 2),
                             "cache_hits": second.meta["cache_hits"]},
        "notes": "one process, torch/OpenCV default threads; machine shared with other agents (2 cores), so "
                 "speeds are lower bounds; cached = scan + xls + cache load, end to end",
        **provenance(command="python " + " ".join([str(Path(sys.argv[0]))] + (argv or sys.argv[1:])), seed=None),
    }
    data = {}
    out = Path(args.out)
    if out.is_file():
        try:
            data = json.loads(out.read_text())
        except json.JSONDecodeError:
            data = {}
    data["faces"] = section
    write_json(out, data)
    print(json.dumps({k: v for k, v in section.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
