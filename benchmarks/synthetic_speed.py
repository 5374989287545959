"""Images per second of the procedural FACS faces at 64 and 112 px on one thread.

Writes the "synthetic" section of benchmarks/results/data.json (read-modify-write: other sections kept)
and docs/figures/synthetic_speed.png. Wall time and CPU time are both reported: on a shared machine
CPU time is the per-core figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "data.json"


def measure(size: int, *, masks: bool, n_subjects: int, seed: int, repeats: int) -> dict:
    from compound_fer.data.synthetic import generate

    best = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        faces = generate(n_subjects=n_subjects, per_subject=2, image_size=size, seed=seed, masks=masks)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        row = {"image_size": size, "masks": masks, "images": len(faces), "wall_s": round(wall, 3),
               "cpu_s": round(cpu, 3), "images_per_s_wall": round(len(faces) / wall, 1),
               "images_per_s_cpu": round(len(faces) / cpu, 1)}
        if best is None or row["images_per_s_cpu"] > best["images_per_s_cpu"]:
            best = row
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subjects", type=int, default=50, help="subjects per run (x 22 categories x 2 images)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figure", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from compound_fer.data.synthetic import generate
    from compound_fer.io import provenance, write_json

    generate(n_subjects=1, per_subject=1)  # warm caches (noise bank, imports)
    rows = [measure(s, masks=m, n_subjects=args.subjects, seed=args.seed, repeats=args.repeats)
            for s in (64, 112) for m in (False, True)]
    for r in rows:
        print(json.dumps(r))
    section = {**provenance(command=" ".join(["python", "benchmarks/synthetic_speed.py", *sys.argv[1:]]),
                            seed=args.seed), "threads": 1, "results": rows}
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["synthetic"] = section
    write_json(RESULTS, data)
    print(f"wrote section 'synthetic' of {RESULTS}")
    if not args.no_figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        labels = [f"{r['image_size']} px\n{'with' if r['masks'] else 'no'} masks" for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["images_per_s_cpu"] for r in rows], 0.4, label="per CPU second")
        ax.bar([i + 0.2 for i in x], [r["images_per_s_wall"] for r in rows], 0.4, label="per wall second")
        ax.axhline(2000, color="k", lw=0.8, ls="--", label="target 2,000/s")
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_ylabel("images / s (one thread)")
        ax.set_title("Synthetic face generation speed", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(REPO / "docs" / "figures" / f"synthetic_speed.{ext}", dpi=110)
        print("wrote docs/figures/synthetic_speed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
