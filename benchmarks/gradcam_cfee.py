"""The basic-compound relationship measured with Grad-CAM on real faces (cfee-subset), test subjects only.

Two set-ups, each with the reference's guided Grad-CAM and plain Grad-CAM:

- ``reference``: basic classes explained by the basic model, compounds by the continual model that
  learned them (KD+PSMR after all 15 compound steps), as the reference pairs its models;
- ``one_model``: all 21 classes explained by the continual model alone.

Per set-up and method: the 15 x 6 similarity matrices (Pearson, histogram intersection, and Pearson of
the class means minus their grand mean, which removes the class-blind "where faces matter" map), the
component hit rate and ranks against exact chance with a subject-bootstrap interval, and region
attention (pointing game against area chance and the class-blind prior) with the class's prototypical
AUs and with each image's coded AUs. Faces are those the protocol runner loads for ``--config`` and the
``--split`` part of its split for ``--seed`` (default: the test subjects, never trained on).

Writes the numbers to ``--json`` (default benchmarks/results/gradcam_cfee.json; no pixels) and every
figure to ``--out`` (default runs/gradcam_cfee, git-ignored: the subject and mean-CAM figures show
CFEE faces, which are research-only and must stay out of the repository).

    python benchmarks/gradcam_cfee.py --basic-model M/basic_seed0.pt --continual-model M/kdpsmr_seed0.pt \\
        --data /path/to/cfee-subset [--config cfee_cpu] [--seed 0] [--split test] [--out runs/gradcam_cfee]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.io import provenance, write_json

BASIC = [taxonomy.label_of(n) for n in taxonomy.basic_names()]
COMPOUND = [taxonomy.label_of(n) for n in taxonomy.compound_names()]
SUMMARY_KEYS = ("top1_hits", "n_compounds", "top1_rate", "top1_chance", "top1_p_value", "all_top_k_rate",
                "all_top_k_chance", "mean_best_rank", "mean_best_rank_chance", "mean_component_rank",
                "mean_component_rank_chance")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--basic-model", type=Path, required=True, help="the 6-class basic model (.pt + .json)")
    ap.add_argument("--continual-model", type=Path, required=True,
                    help="the 21-class continual model after all compound steps (e.g. kdpsmr_seed0.pt)")
    ap.add_argument("--data", type=Path, required=True, help="the cfee-subset folder")
    ap.add_argument("--config", default="cfee_cpu", help="protocol config the models were trained with")
    ap.add_argument("--seed", type=int, default=0, help="the split's seed (the models' run seed)")
    ap.add_argument("--split", default="test", choices=("all", "train", "val", "test"))
    ap.add_argument("--methods", nargs="+", default=["guided", "gradcam"])
    ap.add_argument("--setups", nargs="+", default=["reference", "one_model"], choices=("reference", "one_model"))
    ap.add_argument("--bootstrap", type=int, default=500, help="subject-bootstrap replicates of the component test")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/gradcam_cfee"),
                    help="figure folder (keep it outside the repository: some figures show CFEE faces)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gradcam_cfee.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from compound_fer.commands._common import resolve_config
    from compound_fer.explain.pipeline import accuracy, load_explained_faces, make_figures
    from compound_fer.explain.relationship import explain_classes, report_from_cams
    from compound_fer.model_io import load_model

    t_start = time.perf_counter()
    basic_model, basic_meta = load_model(args.basic_model)
    cont_model, cont_meta = load_model(args.continual_model)
    basic_order = [taxonomy.label_of(n) for n in basic_meta["classes"]]
    cont_order = [taxonomy.label_of(n) for n in cont_meta["classes"]]
    faces, faces_info = load_explained_faces(args.data, config=args.config and resolve_config(args.config),
                                             split=args.split, seed=args.seed,
                                             image_size=int(basic_meta.get("image_size", 112)))
    faces = faces.where(labels=BASIC + COMPOUND)
    load_s = time.perf_counter() - t_start
    result = {
        **provenance(command=" ".join(["gradcam_cfee.py", *sys.argv[1:]]), seed=args.seed),
        "load_average_before": list(os.getloadavg()),
        "faces": faces_info,
        "models": {
            "basic": {
                "path": args.basic_model.name,
                "sha256_12": _sha(args.basic_model),
                "classes": basic_meta["classes"],
                "accuracy_on_these_faces": round(accuracy(basic_model, faces.where(labels=BASIC), basic_order), 4),
            },
            "continual": {
                "path": args.continual_model.name,
                "sha256_12": _sha(args.continual_model),
                "method": cont_meta.get("method"),
                "order": cont_meta.get("order"),
                "classes": len(cont_order),
                "accuracy_on_these_faces": round(accuracy(cont_model, faces, cont_order), 4),
                "accuracy_basic_faces": round(accuracy(cont_model, faces.where(labels=BASIC), cont_order), 4),
                "accuracy_compound_faces": round(accuracy(cont_model, faces.where(labels=COMPOUND), cont_order), 4),
            },
        },
        "threads": args.threads,
        "load_seconds": round(load_s, 1),
        "runs": {},
    }
    print(f"{len(faces)} faces of {faces_info['subjects']} subjects ({args.split}); "
          f"basic acc {result['models']['basic']['accuracy_on_these_faces']:.3f}, "
          f"continual acc {result['models']['continual']['accuracy_on_these_faces']:.3f}", flush=True)

    for setup in args.setups:
        for method in args.methods:
            t0 = time.perf_counter()
            if setup == "reference":
                cc = explain_classes(basic_model, faces, labels=BASIC + COMPOUND, method=method,
                                     class_order=basic_order, batch_size=args.batch_size,
                                     label_models={c: (cont_model, cont_order) for c in COMPOUND})
            else:
                cc = explain_classes(cont_model, faces, labels=BASIC + COMPOUND, method=method,
                                     class_order=cont_order, batch_size=args.batch_size)
            cam_s = time.perf_counter() - t0
            entry = {"cam_seconds": round(cam_s, 1), "cams_per_second": round(len(cc.labels) / cam_s, 1)}
            for expected in ("class", "aus"):
                rep = report_from_cams(cc, basic_labels=BASIC, compound_labels=COMPOUND, expected=expected)
                entry[f"region_attention_{expected}"] = compact_regions(rep["region_attention"])
                if expected == "class":
                    entry["relationship"] = compact_relationship(rep["relationship"])
                    entry["relationship"]["pearson_residual"] = residual_relationship(cc)
                    entry["bootstrap"] = bootstrap_components(cc, args.bootstrap, seed=args.seed)
                    if not args.no_figures:
                        out = args.out / f"{setup}_{method}"
                        out.mkdir(parents=True, exist_ok=True)
                        make_figures(cc, faces, rep, out, basic_labels=BASIC, compound_labels=COMPOUND)
                        write_json(out / "report.json", {**provenance(seed=args.seed), "setup": setup, **rep})
            result["runs"][f"{setup}/{method}"] = entry
            s = entry["relationship"]
            ra = entry["region_attention_class"]["overall"]
            print(f"{setup:9s} {method:8s} {cam_s:6.1f} s | top1 pearson {s['pearson']['summary']['top1_hits']}/15 "
                  f"intersection {s['intersection']['summary']['top1_hits']}/15 residual "
                  f"{s['pearson_residual']['summary']['top1_hits']}/15 | pointing {ra['pointing']:.3f} prior "
                  f"{ra['pointing_prior']:.3f} chance {ra['pointing_chance']:.3f}", flush=True)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["load_average_after"] = list(os.getloadavg())
    write_json(args.json, result)
    print(f"wrote {args.json}; figures in {args.out}")
    return 0


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _r(x, nd=4):
    if x is None or isinstance(x, (bool, int, np.integer)):
        return None if x is None else int(x)
    return None if np.isnan(x) else round(float(x), nd)


def compact_relationship(rel: dict, measures=("pearson", "intersection")) -> dict:
    """Matrices (rounded) with their row/column names, the summary, and per compound its best basic and ranks."""
    out = {"basic_classes": rel["basic_classes"], "compound_classes": rel["compound_classes"]}
    for measure in measures:
        comp = rel[measure]["components"]
        out[measure] = {
            "matrix": [[_r(v) for v in row] for row in rel[measure]["matrix"]],
            "summary": {k: _r(comp["summary"][k]) if isinstance(comp["summary"][k], float) else comp["summary"][k]
                        for k in SUMMARY_KEYS},
            "per_compound": {c: {"most_similar": v["ranking"][0], "components": v["components"],
                                 "component_ranks": v["component_ranks"], "top1": v["top1"]}
                             for c, v in comp["per_compound"].items()},
            "column_permutation": column_permutation(rel[measure]["matrix"], rel["compound_classes"],
                                                     rel["basic_classes"]),
        }
    return out


def column_permutation(matrix, compound_names, basic_names) -> dict:
    """Exact test that keeps the matrix's structure: relabel the 6 basic columns in all 720 ways.

    The Poisson-binomial p-value assumes each compound ranks the basics at random; a map that makes one
    basic class the most similar to every compound (a dominant column) would score the number of
    compounds holding that class (up to 7 of 15 for Disgusted) without any compound-specific match.
    Permuting the column labels keeps such a column, so this p-value is not fooled by it.
    """
    import itertools

    from compound_fer.explain.relationship import component_ranks

    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)
    comps = [taxonomy.label_of(n) for n in compound_names]
    basics = [taxonomy.label_of(n) for n in basic_names]
    obs = component_ranks(m, comps, basics)["summary"]
    hits, best = [], []
    for perm in itertools.permutations(range(len(basics))):
        s = component_ranks(m[:, list(perm)], comps, basics)["summary"]
        hits.append(s["top1_hits"])
        best.append(s["mean_best_rank"])
    hits, best = np.array(hits), np.array(best)
    counts = {}
    for c in compound_names:
        for b in taxonomy.by_name(c).components:
            counts[b] = counts.get(b, 0) + 1
    return {"permutations": len(hits), "top1_hits_p": _r(np.mean(hits >= obs["top1_hits"])),
            "mean_best_rank_p": _r(np.mean(best <= obs["mean_best_rank"] + 1e-12)),
            "top1_hits_permutation_mean": _r(hits.mean(), 3),
            "dominant_column_ceiling": max(counts.values())}


def residual_relationship(cc) -> dict:
    """Pearson of the class means after removing the class-blind part: each basic mean minus the mean of the
    basic means, each compound mean minus the mean of the compound means (in the reference set-up the two
    kinds come from different models, so each is centred on its own model's average map)."""
    from compound_fer.explain.relationship import relationship_from_cams

    means = cc.means()
    b = {k: means[k] for k in BASIC if k in means}
    c = {k: means[k] for k in COMPOUND if k in means}
    gb, gc = np.mean(list(b.values()), axis=0), np.mean(list(c.values()), axis=0)
    rel = relationship_from_cams({k: v - gb for k, v in b.items()}, {k: v - gc for k, v in c.items()})
    out = compact_relationship(rel, measures=("pearson",))["pearson"]
    out["centring"] = "basic means minus their mean; compound means minus their mean"
    return out


def bootstrap_components(cc, reps: int, *, seed: int) -> dict:
    """Top-1 hits and mean best rank when the test SUBJECTS are resampled with replacement (95% interval)."""
    from compound_fer.explain.relationship import component_ranks, similarity_matrix

    rng = np.random.default_rng(seed)
    subjects = np.unique(cc.subjects)
    by_subject = {s: np.flatnonzero(cc.subjects == s) for s in subjects}
    out = {}
    stats = {m: {"top1_hits": [], "mean_best_rank": []} for m in ("pearson", "intersection")}
    for _ in range(reps):
        idx = np.concatenate([by_subject[s] for s in rng.choice(subjects, size=len(subjects), replace=True)])
        labels = cc.labels[idx]
        means = {int(c): cc.cams[idx[labels == c]].mean(axis=0) for c in BASIC + COMPOUND if np.any(labels == c)}
        b = {k: means[k] for k in BASIC if k in means}
        c = {k: means[k] for k in COMPOUND if k in means}
        for m in stats:
            s = component_ranks(similarity_matrix(c, b, measure=m), list(c), list(b))["summary"]
            stats[m]["top1_hits"].append(s["top1_hits"] * 15 / max(s["n_compounds"], 1))
            stats[m]["mean_best_rank"].append(s["mean_best_rank"])
    for m, st in stats.items():
        out[m] = {k: {"mean": _r(np.mean(v), 3), "ci95": [_r(np.percentile(v, 2.5), 3), _r(np.percentile(v, 97.5), 3)]}
                  for k, v in st.items()}
    out["replicates"] = reps
    out["unit"] = "subjects resampled with replacement; top1_hits scaled to 15 compounds"
    return out


def compact_regions(att: dict) -> dict:
    keep = ("n", "pointing", "pointing_prior", "pointing_chance", "expected_share", "expected_area", "face_share")
    return {
        "expected": att["expected"],
        "overall": {k: _r(att["overall"][k]) for k in keep} | {
            "region_shares": {r: _r(v) for r, v in att["overall"]["region_shares"].items()}},
        "per_class": {n: {k: _r(v[k]) for k in ("n", "pointing", "pointing_prior", "pointing_chance")}
                      | {"expected_regions": v["expected_regions"],
                         "region_shares": {r: _r(x) for r, x in v["region_shares"].items()}}
                      for n, v in att["per_class"].items()},
        "specificity": {r: {k: _r(v) if isinstance(v, float) else v for k, v in d.items()}
                        for r, d in att["specificity"].items()},
    }


if __name__ == "__main__":
    raise SystemExit(main())
