"""Learning curve: accuracy on people never seen in training as the number of training subjects grows.

For each fraction of the strict split's training subjects (``evaluation.train_subjects_fraction``: the kept
subjects drawn with the seed, a smaller fraction's a subset of a larger one's; the validation and test subjects
the same for every fraction), runs the protocol of one config with one class order and the few-shot phase off,
and records the basic test accuracy and each method's Overall Accuracy and final accuracy in
benchmarks/results/learning_curve.json; draws docs/figures/learning_curve.png (Overall Accuracy against the
number of training subjects, log2 axis). Fractions already in the JSON are skipped (``--overwrite`` runs them
again); a fraction killed half way continues its run folder under ``--work``.

    python benchmarks/learning_curve.py                 # cfee_best on cfee-subset, kdpsmr and joint (~15 min)
    python benchmarks/learning_curve.py --figure-only   # redraw the figure from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"kdpsmr": "KD+PSMR", "joint": "joint (all data so far)"}


def config_path(name_or_path: str) -> Path:
    """A YAML file, or the name of a packaged config (compound_fer/configs/NAME.yaml)."""
    p = Path(name_or_path)
    return p if p.suffix in (".yaml", ".yml") or p.is_file() else ROOT / "compound_fer" / "configs" / f"{p}.yaml"


def fraction_config(base, *, fraction: float, methods: list[str], seed: int):
    """``base`` on ``fraction`` of its training subjects: strict, one class order, few-shot off, one seed."""
    return base.with_overrides(evaluation={"mode": "strict", "train_subjects_fraction": fraction},
                               continual={"methods": methods, "orders": 1}, fewshot={"enabled": False},
                               seeds=[seed], name=f"{base.name}_subjects{fraction}")


def summarise(rows: list[dict], *, fraction: float) -> dict:
    """One fraction's entry: split sizes, basic test accuracy, Overall and final accuracy per method (mean over
    the class orders run: one here)."""
    basic = next(r for r in rows if r["kind"] == "basic")
    split = basic["split"]
    methods: dict[str, dict] = {}
    for r in (r for r in rows if r["kind"] == "continual"):
        m = methods.setdefault(r["method"], {"overall": [], "final": []})
        m["overall"].append(r["overall_accuracy"])
        m["final"].append(r["step_accuracy"][-1])
    return {"fraction": fraction,
            **{k: split[k] for k in ("train_subjects", "train_images", "val_subjects", "val_images",
                                     "test_subjects", "test_images")},
            "basic_test_accuracy": round(float(basic["test_accuracy"]), 4),
            "methods": {k: {"overall_accuracy": round(sum(v["overall"]) / len(v["overall"]), 4),
                            "final_accuracy": round(sum(v["final"]) / len(v["final"]), 4),
                            "orders": len(v["overall"])} for k, v in methods.items()}}


def plot_curve(fractions: dict[str, dict], path: Path) -> Path:
    """Overall Accuracy (%) per method and the basic model's test accuracy (the representation, which is what
    more subjects improve) against training subjects (log2 axis), on one full-range axis; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from compound_fer.evaluation.figures import method_styles

    entries = sorted(fractions.values(), key=lambda e: e["train_subjects"])
    methods = list(dict.fromkeys(m for e in entries for m in e["methods"]))
    styles = method_styles(methods)
    with plt.rc_context({"font.size": 11}):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for m in methods:
            pts = [(e["train_subjects"], 100 * e["methods"][m]["overall_accuracy"]) for e in entries
                   if m in e["methods"]]
            ax.plot(*zip(*pts), label=LABELS.get(m, m), **{**styles[m], "markersize": 6})
        ax.plot([e["train_subjects"] for e in entries], [100 * e["basic_test_accuracy"] for e in entries],
                color="0.45", linestyle="--", marker="s", markersize=5, label="basic model (7 classes, test accuracy)")
        subjects = [e["train_subjects"] for e in entries]
        ax.set_xscale("log", base=2)
        ax.set_xticks(subjects, [f"{e['train_subjects']}\n({100 * e['fraction']:g}%)" for e in entries])
        ax.minorticks_off()
        ax.set(xlabel="training subjects (share of the strict split's)", ylabel="accuracy (%)", ylim=(0, 100),
               title="Accuracy on held-out test subjects")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, loc="lower right")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
            plt.close(fig)
    return path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cfee_best", help="packaged config name or YAML file (default cfee_best)")
    ap.add_argument("--data", default=None, help="data folder (default: the config's data.path)")
    ap.add_argument("--fractions", default="0.25,0.5,1.0", help="shares of the training subjects, in (0, 1]")
    ap.add_argument("--methods", default="kdpsmr,joint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/learning_curve", help="run folders (with model weights: never commit)")
    ap.add_argument("--out", default="benchmarks/results/learning_curve.json")
    ap.add_argument("--figure", default="docs/figures/learning_curve.png")
    ap.add_argument("--overwrite", action="store_true", help="run again the fractions already in --out")
    ap.add_argument("--figure-only", action="store_true", help="redraw --figure from --out; run nothing")
    return ap.parse_args(argv)


def _fractions(text: str) -> list[float]:
    from compound_fer.errors import ConfigError

    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--fractions {text!r}: give numbers in (0, 1], e.g. 0.25,0.5,1.0") from None
    if not out or not all(0 < f <= 1 for f in out):
        raise ConfigError(f"--fractions {text!r}: give numbers in (0, 1], e.g. 0.25,0.5,1.0")
    return out


def run(args: argparse.Namespace) -> Path:
    """Every fraction not yet in ``args.out`` (all with ``--overwrite``), then the figure."""
    from compound_fer.config import load_config
    from compound_fer.errors import ConfigError
    from compound_fer.io import git_commit, provenance, write_json
    from compound_fer.runner import run_protocol

    out_path, figure = Path(args.out), Path(args.figure)
    old = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {}
    if args.figure_only:
        if not old.get("fractions"):
            raise ConfigError(f"--figure-only: {out_path} holds no fraction yet; run without --figure-only first")
        return plot_curve(old["fractions"], figure)
    fractions, methods = _fractions(args.fractions), [m for m in args.methods.split(",") if m]
    base = load_config(config_path(args.config))
    setup = {"config": base.name, "data": args.data or base.data.path or "synthetic", "methods": methods,
             "seed": args.seed, "orders": 1, "fewshot": False, "mode": "strict"}
    done = old.get("fractions", {}) if old.get("setup") == setup else {}
    if old.get("fractions") and not done and not args.overwrite:
        raise ConfigError(f"{out_path} holds a learning curve of another setup ({old.get('setup')}); give "
                          f"--overwrite to replace it or another --out")
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(args.argv or [])])
    for f in fractions:
        key = str(f)
        if key in done and not args.overwrite:
            print(f"fraction {key}: in {out_path}, skipped (--overwrite runs it again)", flush=True)
            continue
        work = Path(args.work) / base.name / f"subjects{key}"
        if args.overwrite:
            shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        rows = run_protocol(fraction_config(base, fraction=f, methods=methods, seed=args.seed), out_dir=work,
                            data_path=args.data, resume=True, progress=False, command=command)
        done[key] = {**summarise(rows, fraction=f), "seconds": round(time.perf_counter() - t0, 1),
                     "commit": git_commit(), "run_folder": str(work)}
        done = dict(sorted(done.items(), key=lambda kv: kv[1]["fraction"]))
        write_json(out_path, {**provenance(command=command, seed=args.seed), "setup": setup,
                              "what": "strict split; validation and test subjects the same for every fraction; "
                                      "accuracies on the test subjects; one class order; few-shot off",
                              "fractions": done})
        print(f"fraction {key}: {json.dumps(done[key]['methods'])}", flush=True)
    return plot_curve(done, figure)


def main(argv: list[str] | None = None) -> int:
    from compound_fer.errors import CompoundFERError

    args = _parse(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    try:
        print(f"figure: {run(args)}")
    except CompoundFERError as err:
        print(f"learning_curve: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
