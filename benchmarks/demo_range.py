"""The figures `make demo` prints, over seeds and thread counts: the ranges docs/quickstart.md states (issue 28).

A demo whose numbers move with the machine tells a newcomer the docs are wrong, so the docs give ranges, not
one run. Each run is the shipped demo config (`compound-fer demo`: basic phase, Naive and KD+PSMR over 2 class
orders, few-shot in both modes) with one seed and one torch thread count, scored on its test subjects as the
demo scores them. Writes benchmarks/results/demo_range.json: every run's figures and, per figure, the range.

    python benchmarks/demo_range.py --seeds 0,1,2 --threads 2 --extra 0:1
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path


def _runs(seeds: str, threads: str, extra: str) -> list[tuple[int, int]]:
    """(seed, threads) pairs: every seed with every thread count, then the ``seed:threads`` extras."""
    pairs = [(int(s), int(t)) for s in seeds.split(",") if s for t in threads.split(",") if t]
    pairs += [(int(p.split(":")[0]), int(p.split(":")[1])) for p in extra.split(",") if p]
    return list(dict.fromkeys(pairs))


def figures(rows: list[dict]) -> dict[str, float]:
    """The demo's headline figures (in %) from one run's rows."""
    from compound_fer.evaluation.report import fewshot_summary, summarize

    basic = next(r for r in rows if r["kind"] == "basic")
    out = {"basic_test_accuracy": 100 * basic["test_accuracy"]}
    for method, s in summarize(rows).items():
        out[f"{method}_overall"] = 100 * s["overall_accuracy"]
    for f in fewshot_summary(rows):
        for key in ("harmonic_mean", "new_class_recall", "basic_accuracy"):
            out[f"fewshot_{f['mode']}_{f['shots']}shot_{key}"] = 100 * f[key]
    return {k: round(float(v), 2) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", default="2", help="torch thread counts, each run with every seed")
    ap.add_argument("--extra", default="0:1", help="more seed:threads runs, comma-separated (default: seed 0, "
                    "1 thread: the other thread count a user's machine may give)")
    ap.add_argument("--out", default="benchmarks/results/demo_range.json")
    args = ap.parse_args()

    from compound_fer.commands._common import resolve_config
    from compound_fer.config import load_config
    from compound_fer.io import provenance, write_json
    from compound_fer.runner import run_protocol

    base = load_config(resolve_config("demo"))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    runs = []
    for seed, threads in _runs(args.seeds, args.threads, args.extra):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_protocol(base.with_overrides(seeds=[seed], threads=threads), out_dir=Path(tmp), progress=False)
        runs.append({"seed": seed, "threads": threads, "seconds": round(time.perf_counter() - t0, 1),
                     **figures(rows)})
        print(runs[-1], flush=True)
        keys = [k for k in runs[0] if k not in ("seed", "threads", "seconds")]
        ranges = {k: [min(r[k] for r in runs if k in r), max(r[k] for r in runs if k in r)] for k in keys}
        write_json(args.out, {**provenance(command=command, seed=None, config="demo"),
                              "what": "the shipped demo config, one run per (seed, torch threads), test subjects "
                                      "(synthetic people the run did not train on); figures in %",
                              "runs": runs, "ranges": ranges})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
