"""Score few-shot settings on the TEST subjects, once each, beside the shipped one, on the same basic models.

For the final number of a setting already chosen on validation subjects (benchmarks/tune_representation.py):
each seed trains its basic model once, then every variant (names of tune_representation.VARIANTS) runs the
config's kept few-shot phase from that model, so the differences are the settings', not the basic models'.
Writes benchmarks/results/<config>_fewshot_test.json with every variant's table and the paired
differences against the first variant per (seed, shots).

    python benchmarks/fewshot_test.py --config cfee_best --seeds 0,1,2 \
        --variants 'as shipped;fewshot bias: logit_adjustment margin 2.0'
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import sys
import time
from pathlib import Path


def _variants() -> dict:
    spec = importlib.util.spec_from_file_location("tune_representation", Path(__file__).with_name(
        "tune_representation.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.VARIANTS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cfee_best")
    ap.add_argument("--data", default=None, help="data path (default: the config's)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="as shipped", help="names of tune_representation.VARIANTS, separated "
                    "by ; (the first is the baseline of the paired differences)")
    ap.add_argument("--work", default="runs/fewshot_test")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/<config>_fewshot_test.json")
    args = ap.parse_args()

    import numpy as np

    from compound_fer.commands._common import resolve_config
    from compound_fer.config import load_config, parse_config
    from compound_fer.evaluation.report import fewshot_summary
    from compound_fer.io import provenance, write_json
    from compound_fer.overrides import deep_merge
    from compound_fer.runner import run_protocol

    variants, names = _variants(), [n for n in args.variants.split(";") if n]
    unknown = [n for n in names if n not in variants]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; see VARIANTS in benchmarks/tune_representation.py")
    base = load_config(resolve_config(args.config)).model_dump(mode="json")
    base = deep_merge(base, {"continual": {"methods": []}, "fewshot": {"mode": "kept",
                                                                       "episodes": {"enabled": False}}})
    seeds = [int(s) for s in args.seeds.split(",") if s]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out_path = Path(args.out or f"benchmarks/results/{args.config}_fewshot_test.json")
    work = Path(args.work) / args.config
    tables: dict[str, dict] = {n: {} for n in names}
    basic: dict[int, dict] = {}
    for seed in seeds:
        shared = work / f"_basic_seed{seed}"
        for name in names:
            cfg = parse_config(deep_merge(deep_merge(base, variants[name]), {"seeds": [seed]}),
                               source=f"variant {name!r}")
            out = work / f"seed{seed}" / "".join(ch if ch.isalnum() else "_" for ch in name)
            shutil.rmtree(out, ignore_errors=True)
            if shared.is_dir():  # the seed's basic model: every variant starts from it
                shutil.copytree(shared, out / "models")
            t0 = time.perf_counter()
            rows = run_protocol(cfg, out_dir=out, data_path=args.data, resume=True, progress=False, command=command)
            if not shared.is_dir():
                shared.mkdir(parents=True)
                for f in (out / "models").glob(f"basic_seed{seed}*"):
                    shutil.copy2(f, shared / f.name)
                b = next(r for r in rows if r["kind"] == "basic")
                basic[seed] = {"best_epoch": b.get("best_epoch"), "test_accuracy": b.get("test_accuracy")}
            tables[name][seed] = {f["shots"]: f for f in fewshot_summary(rows) if f["mode"] == "kept"}
            print(name, seed, {k: round(100 * v["harmonic_mean"], 2) for k, v in tables[name][seed].items()},
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        results = {}
        for name in names:
            done = sorted(tables[name])
            shots = sorted(tables[name][done[0]])
            results[name] = {"overrides": variants[name], "by_shots": {
                str(k): {key: round(100 * float(np.mean([tables[name][s][k][key] for s in done])), 2)
                         for key in ("harmonic_mean", "new_class_recall", "basic_accuracy", "basic_accuracy_before")}
                for k in shots}}
            if name != names[0]:  # paired: the same seed and shot count, the first variant's basic model
                results[name]["harmonic_mean_minus_first"] = {str(k): [
                    round(100 * (tables[name][s][k]["harmonic_mean"] - tables[names[0]][s][k]["harmonic_mean"]), 2)
                    for s in done] for k in shots}
        write_json(out_path, {**provenance(command=command, seed=None, seeds=seeds, config=args.config),
                              "scored": "test subjects of the strict split, once per setting",
                              "basic": basic, "variants": results})
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
