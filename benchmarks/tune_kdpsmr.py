"""Tune KD+PSMR's (or another method's) continual settings on the VALIDATION subjects of the strict split
(never the test ones).

Loads the basic model of a finished ``compound-fer run`` (its ``models/basic_seed<seed>.pt``), rebuilds the
same strict split, and runs KD+PSMR over a few class orders with the validation subjects as the scored
set, once per variant. Writes benchmarks/results/kdpsmr_tuning.json.

    python benchmarks/tune_kdpsmr.py --run benchmarks/results/cfee_cpu --orders 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

VARIANTS: dict[str, dict] = {
    "as configured": {},
    "lr 1e-4": {"continual": {"lr": 1e-4}},
    "epochs 20": {"continual": {"epochs": 20}},
    "gamma0 0.5": {"continual": {"kd": {"gamma0": 0.5}}},
    "mask padding": {"continual": {"kd": {"teacher_padding": "mask"}}},
    # kdpsmr+purified (--method kdpsmr+purified): the purification weight
    "purify 0": {"continual": {"method_options": {"kdpsmr+purified": {"purify_weight": 0.0}}}},
    "purify 0.1": {"continual": {"method_options": {"kdpsmr+purified": {"purify_weight": 0.1}}}},
    "purify 1": {"continual": {"method_options": {"kdpsmr+purified": {"purify_weight": 1.0}}}},
}
DEFAULT_VARIANTS = ("as configured", "lr 1e-4", "epochs 20", "gamma0 0.5", "mask padding")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="results folder of a strict cfee run (holds models/ and config.yaml)")
    ap.add_argument("--data", default=None, help="data folder (default: the run's config)")
    ap.add_argument("--method", default="kdpsmr")
    ap.add_argument("--orders", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated names of VARIANTS")
    ap.add_argument("--out", default="benchmarks/results/kdpsmr_tuning.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from compound_fer import taxonomy
    from compound_fer.config import load_config
    from compound_fer.data.splits import class_orders
    from compound_fer.io import provenance, write_json
    from compound_fer.model_io import load_state_dict
    from compound_fer.runner import (
        Splits,
        basic_labels,
        build_basic_model,
        load_dataset,
        make_inputs,
        make_splits,
        run_continual,
    )

    run = Path(args.run)
    base = load_config(run / "config.yaml")
    if base.evaluation.mode != "strict":
        raise SystemExit(f"{run}: tuning needs a strict run (validation subjects disjoint from test ones)")
    faces = load_dataset(base, path=args.data, progress=False)
    splits = make_splits(base, faces, seed=args.seed)
    tune = Splits(splits.train, splits.val, splits.val, {**splits.info, "scored": "validation subjects"})
    basic = build_basic_model(base, len(basic_labels(base)))
    basic.load_state_dict(load_state_dict(run / "models" / f"basic_seed{args.seed}.pt"))
    inputs = make_inputs(base, basic, tune, seed=args.seed, progress=False)
    orders = class_orders(args.orders, seed=base.continual.order_seed,
                          classes=[c.name for c in taxonomy.categories("compound")])
    rows = {}
    for name in args.variants.split(","):
        cfg = base.with_overrides(**VARIANTS[name]) if VARIANTS[name] else base
        t0 = time.perf_counter()
        accs = [run_continual(cfg, method=args.method, order_index=i, order=o, basic_model=basic, splits=tune,
                              inputs=inputs, seed=args.seed, progress=False).overall_accuracy
                for i, o in enumerate(orders)]
        rows[name] = {"overrides": VARIANTS[name], "overall_accuracy_val": sum(accs) / len(accs),
                      "per_order": accs, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name:16s} {100 * rows[name]['overall_accuracy_val']:.2f}  {rows[name]['seconds']} s", flush=True)
    write_json(args.out, {**provenance(command=" ".join(["python", *map(shlex.quote, sys.argv)]), seed=args.seed),
                          "method": args.method, "run": str(run), "split": tune.info, "orders": args.orders,
                          "what": "Overall Accuracy on the validation subjects (not the test ones), mean over orders",
                          "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
