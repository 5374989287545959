"""Choose the representation levers on the VALIDATION subjects of the strict split (never the test ones).

Every variant runs the protocol with ``evaluation.scored: validation`` (the test subjects are not
loaded into any score), from one shared basic model (trained once, then reloaded by each variant), and
reports Overall Accuracy, final accuracy and basic retention per method. Writes
benchmarks/results/representation_tuning.json.

    python benchmarks/tune_representation.py --config cfee_best_landmarks --orders 1
    python benchmarks/tune_representation.py --config cfee_best --methods '' --fewshot 1,5 \
        --variants 'fewshot kept;fewshot kept + imprint' --out benchmarks/results/fewshot_tuning.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict] = {  # every variant names its trainable part (the base config's may change)
    "pixels (cfee_cpu levers)": {
        "model": {"geometry": "none"},
        "continual": {"component_init": False, "trainable": "tail_head"}},
    "pixels + component init": {
        "model": {"geometry": "none"},
        "continual": {"component_init": True, "trainable": "tail_head"}},
    "pixels + component init + head only": {
        "model": {"geometry": "none"},
        "continual": {"component_init": True, "trainable": "head"}},
    "landmarks": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": False, "trainable": "tail_head"}},
    "landmarks + component init": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "tail_head"}},
    "landmarks + component init + head only": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head"}},
    "landmarks + component sum + head only": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "component_rule": "sum", "trainable": "head"}},
    "landmarks + component sum": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "component_rule": "sum", "trainable": "tail_head"}},
    "landmarks + component init + head only, lr 1e-3": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head", "lr": 0.001}},
    "landmarks + component init + head only, 20 epochs": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head", "epochs": 20}},
    "landmarks + component init + head only + KD gamma0 0.5": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head", "kd": {"gamma0": 0.5}}},
    "pixels + aux geometry and AUs + component init + head only": {
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"component_init": True, "trainable": "head"}},
    "pixels + head only": {
        "model": {"geometry": "none"},
        "continual": {"component_init": False, "trainable": "head"}},
    "landmarks + head only": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": False, "trainable": "head"}},
    "pixels + aux geometry and AUs + component init": {
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"component_init": True, "trainable": "tail_head"}},
    "pixels + aux geometry and AUs + head only": {
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"component_init": False, "trainable": "head"}},
    "landmarks + component init + head only + imprint": {
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head", "prototypes": "imprint"}},
    "landmarks, method ncm": {
        "model": {"geometry": "landmarks"},
        "continual": {"methods": ["ncm"], "component_init": False, "trainable": "head"}},
    "pixels + aux geometry and AUs + component init + head only + imprint": {
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"component_init": True, "trainable": "head", "prototypes": "imprint"}},
    "pixels + aux geometry and AUs, method ncm": {
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"methods": ["ncm"], "component_init": False, "trainable": "head"}},
    "landmarks + component init + head only, 160 px": {
        "data": {"image_size": 160},
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head"}},
    "landmarks + component init + head only, 224 px": {
        "data": {"image_size": 224},
        "model": {"geometry": "landmarks"},
        "continual": {"component_init": True, "trainable": "head"}},
    "landmarks, method ncm, 160 px": {
        "data": {"image_size": 160},
        "model": {"geometry": "landmarks"},
        "continual": {"methods": ["ncm"], "component_init": False, "trainable": "head"}},
    "pixels + aux geometry and AUs + component init + head only, 160 px": {
        "data": {"image_size": 160},
        "model": {"geometry": "none"},
        "basic": {"aux_geometry": 1.0, "aux_aus": 1.0},
        "continual": {"component_init": True, "trainable": "head"}},
    # few-shot kept episodes (--fewshot): each ingredient on or off, on the config's basic model
    "fewshot kept": {"fewshot": {"component_init": True, "prototypes": "none"}},
    "fewshot kept, no component init": {"fewshot": {"component_init": False, "prototypes": "none"}},
    "fewshot kept, no KD": {"fewshot": {"component_init": True, "prototypes": "none"},
                            "continual": {"kd": {"gamma0": 0.0}}},
    "fewshot kept, memory 1 face per class": {  # memory_fraction 0: the quota's floor of 1
        "fewshot": {"component_init": True, "prototypes": "none"}, "continual": {"memory_fraction": 0.0}},
    "fewshot kept, memory 0.05": {"fewshot": {"component_init": True, "prototypes": "none"},
                                  "continual": {"memory_fraction": 0.05}},
    "fewshot kept, memory 0.1": {"fewshot": {"component_init": True, "prototypes": "none"},
                                 "continual": {"memory_fraction": 0.1}},
    "fewshot kept + imprint": {"fewshot": {"component_init": True, "prototypes": "imprint"}},
    "fewshot kept + imprint, no component init": {"fewshot": {"component_init": False, "prototypes": "imprint"}},
    "fewshot kept + ncm": {"fewshot": {"component_init": False, "prototypes": "ncm"}},
    # old/new bias correction (training/bias_correction.py), on the shipped config's levers
    "as shipped": {},
    "landmarks, as shipped": {"model": {"geometry": "landmarks"}},
    **{f"bias: {b}": {"continual": {"bias_correction": b}}
       for b in ("weight_aligning", "bic", "balanced_finetune", "logit_adjustment")},
    "bias: bic + weight_aligning": {"continual": {"bias_correction": ["weight_aligning", "bic"]}},
    **{f"fewshot bias: {b}": {"fewshot": {"bias_correction": b}}
       for b in ("weight_aligning", "bic", "balanced_finetune", "logit_adjustment")},
    **{f"fewshot bias: logit_adjustment tau {t}": {"fewshot": {"bias_correction": {"methods": ["logit_adjustment"],
                                                                                   "tau": t}}}
       for t in (0.5, 0.75, 1.25, 1.5, 2.0)},
    # the new class a fixed number of nats below the basic ones, whatever its shots (LA's count gap shrinks with k)
    **{f"fewshot bias: logit_adjustment margin {m}": {"fewshot": {"bias_correction": {
        "methods": ["logit_adjustment"], "margin": m}}} for m in (1.5, 2.0, 2.5)},
    **{f"episodes steps {n} lr {lr}": {"fewshot": {"episodes": {"enabled": True, "steps": n, "lr": lr}}}
       for n, lr in ((50, 1e-3), (100, 1e-2), (25, 1e-2))},
    # which ranks PSMR's memory keeps (training/predictive_sorting.Pick); "as shipped" is the config's
    # (spread in cfee_best*, top elsewhere)
    **{f"memory: {pick}": {"continual": {"method_options": {"kdpsmr": {"selection": pick}}}}
       for pick in ("spread", "random")},
    **{f"memory: {pick}, kd gamma0 {g}": {"continual": {"method_options": {"kdpsmr": {"selection": pick}},
                                                        "kd": {"gamma0": g}}}
       for pick in ("spread", "random") for g in (0.0, 0.02, 0.05, 0.3)},
    **{f"fewshot memory: {pick}": {"fewshot": {"memory_selection": pick}} for pick in ("spread", "random")},
    "fewshot bias: logit_adjustment + weight_aligning": {
        "fewshot": {"bias_correction": ["logit_adjustment", "weight_aligning"]}},
    # the new-class learner of issue 29 (training/imprinting.py): imprint + TEEN + component prior, k/(k+kappa)
    **{f"fewshot imprint {m} alpha {a} kappa {k}": {"fewshot": {"imprint": {"mode": m, "alpha": a, "kappa": k}}}
       for m in ("frozen", "finetune") for a in (0.0, 0.5) for k in (0.0, 1.0, 3.0)},
    **{f"episodes imprint {m} alpha {a} kappa {k}": {"fewshot": {
        "imprint": {"mode": m, "alpha": a, "kappa": k}, "episodes": {"enabled": True, "learners": ["imprint"]}}}
       for m in ("frozen", "finetune") for a in (0.0, 0.5) for k in (0.0, 1.0, 3.0)},
    "landmarks x0.5 + component init": {
        "model": {"geometry": "landmarks", "geometry_weight": 0.5},
        "continual": {"component_init": True, "trainable": "tail_head"}},
}


def _summary(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        if r["kind"] == "basic":
            out["basic_val_accuracy"] = r.get("test_accuracy")  # scored = validation subjects
            if r.get("geometry"):
                out["geometry_basic_val_accuracy"] = r["geometry"]["test_accuracy"]
        elif r["kind"] == "fewshot":
            key = f"fewshot {(r.get('settings') or {}).get('mode', 'reference')} {r['shots']} shot"
            m = out.setdefault(key, {"seven_way": [], "new_class_recall": [], "basic_after": [], "basic_before": [],
                                     "harmonic_mean": []})
            for k, v in (("seven_way", "seven_way_accuracy"), ("new_class_recall", "new_class_recall"),
                         ("basic_after", "basic_accuracy"), ("basic_before", "basic_accuracy_before")):
                m[k].append(r[v])
        elif r["kind"] == "episodes":
            out[f"episodes {r['learner']} {r['ways']}-way {r['shots']}-shot"] = {
                "accuracy": round(r["accuracy_mean"], 4), "ci95": round(r["accuracy_ci95"], 4)}
        elif r["kind"] == "continual":
            m = out.setdefault(r["method"], {"overall": [], "final": [], "retention": [], "zero_shot_recall": []})
            m["overall"].append(r["overall_accuracy"])
            m["final"].append(r["step_accuracy"][-1])
            m["retention"].append(r["basic_retention"][-1])
            zs = [z["new_class_recall"] for z in (r.get("zero_shot") or []) if z["new_class_recall"] is not None]
            if zs:
                m["zero_shot_recall"].append(float(np.mean(zs)))
    for k, m in out.items():  # the generalised few-shot score: harmonic mean of the mean recall and basic accuracy
        if k.startswith("fewshot") and m["new_class_recall"] and m["basic_after"]:
            rec, bas = float(np.mean(m["new_class_recall"])), float(np.mean(m["basic_after"]))
            m["harmonic_mean"] = [2 * rec * bas / (rec + bas) if rec + bas else 0.0]
    for k, m in out.items():
        if isinstance(m, dict) and not k.startswith("episodes"):
            out[k] = {key: (round(float(np.mean(v)), 4) if v else None) for key, v in m.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cfee_best_landmarks")
    ap.add_argument("--data", default="../shared/data/cfee-subset")
    ap.add_argument("--methods", default="kdpsmr")
    ap.add_argument("--orders", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=";".join(VARIANTS), help="names of VARIANTS, separated by ;")
    ap.add_argument("--work", default="runs/tune_representation")
    ap.add_argument("--out", default="benchmarks/results/representation_tuning.json")
    ap.add_argument("--image-size", type=int, default=112, help="crop size of every variant that sets none (the "
                    "levers were tuned at 112 px; the shipped configs now say 160)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    ap.add_argument("--fewshot", default="", help="shots of kept few-shot episodes to score too, e.g. 1,5 "
                    "(--methods '' for few-shot only)")
    ap.add_argument("--keep", action="store_true", help="continue a variant's run folder (its completed rows kept)")
    ap.add_argument("--episodes", action="store_true", help="score N-way K-shot episodes (with --methods '')")
    ap.add_argument("--basic-from", default=None, help="a models/ folder whose basic model every variant reuses "
                    "(it must come from the same basic settings)")
    args = ap.parse_args()

    from compound_fer.config import load_config, parse_config
    from compound_fer.io import provenance, write_json
    from compound_fer.overrides import deep_merge
    from compound_fer.runner import run_protocol

    path = Path(args.config)
    base = load_config(path if path.suffix else Path("compound_fer/configs") / f"{args.config}.yaml").model_dump(
        mode="json"
    )
    shots = [int(n) for n in args.fewshot.split(",") if n]
    fewshot = {"enabled": True, "shots": shots, "repeats": 1, "mode": "kept"} if shots else {"enabled": False}
    if args.episodes:  # N-way K-shot episodes only (the variants set their learners' settings)
        fewshot = {"enabled": True, "shots": [], "episodes": {"enabled": True}}
    base = deep_merge(base, {"evaluation": {"scored": "validation"}, "fewshot": fewshot, "seeds": [args.seed],
                         "data": {"image_size": args.image_size},
                         "continual": {"methods": [m for m in args.methods.split(",") if m], "orders": args.orders},
                         **({"threads": args.threads} if args.threads else {})})
    work = Path(args.work)
    shared = Path(args.basic_from).parent if args.basic_from else work / "_basic"
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()).get("variants", {}) if out_path.is_file() else {}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    for name in args.variants.split(";"):
        cfg = parse_config(deep_merge(base, VARIANTS[name]), source=f"variant {name!r}")
        out = work / "".join(ch if ch.isalnum() else "_" for ch in name)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        # a variant that changes the basic phase or its inputs trains its own basic model
        own_basic = ("basic" in VARIANTS[name] or "data" in VARIANTS[name]) and not args.basic_from
        if (shared / "models").is_dir() and not own_basic:  # the shared basic model: variants differ after it
            shutil.copytree(shared / "models", out / "models", dirs_exist_ok=True)
        t0 = time.perf_counter()
        rows = run_protocol(cfg, out_dir=out, data_path=args.data, resume=True, progress=False)
        if not (shared / "models").is_dir() and not own_basic:
            (shared / "models").mkdir(parents=True)
            for f in (out / "models").glob("basic_seed*"):
                shutil.copy2(f, shared / "models" / f.name)
        results[name] = {"overrides": VARIANTS[name], "seconds": round(time.perf_counter() - t0, 1),
                         "command": command, **_summary(rows)}  # variants of one file may come from several runs
        print(name, results[name], flush=True)
        write_json(out_path, {**provenance(command=command,
                                           seed=args.seed, config=args.config),
                              "scored": "validation subjects of the strict split (test subjects never scored)",
                              "orders": args.orders, "variants": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
