"""The cfee_best benchmarks: strict test on the cfee-subset test subjects, once per setting.

Runs ``cfee_best_landmarks`` (landmarks given with the data) then ``cfee_best`` (image-only) into
benchmarks/results/<name>/ with the report, rows and figures (no model weights: they are trained on
CFEE and stay in runs/). When both configs share the basic phase (same basic settings), the second run
reloads the first one's basic model instead of training it again (same split, same seed: the same model).

    python benchmarks/cfee_best.py                       # both
    python benchmarks/cfee_best.py --configs cfee_best   # one
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path


def _basic_settings(cfg) -> dict:
    d = cfg.model_dump(mode="json")
    return {"data": d["data"], "evaluation": d["evaluation"], "basic": d["basic"], "augment": d["augment"],
            "model": {k: v for k, v in d["model"].items() if not k.startswith("geometry")}, "seeds": d["seeds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="cfee_best_landmarks,cfee_best")
    ap.add_argument("--data", default="../shared/data/cfee-subset")
    ap.add_argument("--work", default="runs/cfee_best", help="where runs (with model weights) are written")
    ap.add_argument("--results", default="benchmarks/results", help="where reports are copied (no weights)")
    ap.add_argument("--methods", default=None, help="comma-separated; default: the config's")
    ap.add_argument("--no-fewshot", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue the runs in --work (completed rows are kept)")
    ap.add_argument("--fewshot-continual", default="", help="shots per compound class, e.g. 1,3,5: the continual "
                    "protocol of the last config with only that many images per compound (KD+PSMR, no few-shot phase)")
    args = ap.parse_args()

    from compound_fer.config import load_config
    from compound_fer.runner import run_protocol

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    previous = None
    for name in args.configs.split(","):
        cfg = load_config(Path("compound_fer/configs") / f"{name}.yaml")
        work = Path(args.work) / name
        if not args.resume:
            shutil.rmtree(work, ignore_errors=True)
        resume = args.resume
        if previous is not None and _basic_settings(previous[0]) == _basic_settings(cfg) and not args.resume:
            (work / "models").mkdir(parents=True)
            for f in (previous[1] / "models").glob("basic_seed*"):
                shutil.copy2(f, work / "models" / f.name)
            resume = True
        t0 = time.perf_counter()
        run_protocol(cfg, out_dir=work, data_path=args.data, resume=resume, progress=False, command=command,
                     methods=args.methods.split(",") if args.methods else None,
                     fewshot=False if args.no_fewshot else None)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        dest = Path(args.results) / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(work, dest, ignore=shutil.ignore_patterns("models", "checkpoints", "logs", "*.pt", "*.ckpt",
                                                                  "fingerprint.json"))
        previous = (cfg, work)
    for n in [int(x) for x in args.fewshot_continual.split(",") if x]:
        cfg = previous[0].with_overrides(continual={"shots": n, "methods": ["kdpsmr"]}, fewshot={"enabled": False},
                                         name=f"{previous[0].name}_shots{n}")
        work = Path(args.work) / f"{previous[0].name}_fewshot_continual" / f"shots{n}"
        if not args.resume:
            shutil.rmtree(work, ignore_errors=True)
        (work / "models").mkdir(parents=True, exist_ok=True)
        for f in (previous[1] / "models").glob("basic_seed*"):
            shutil.copy2(f, work / "models" / f.name)
        t0 = time.perf_counter()
        run_protocol(cfg, out_dir=work, data_path=args.data, resume=True, progress=False, command=command)
        print(f"{cfg.name}: {time.perf_counter() - t0:.0f} s", flush=True)
        dest = Path(args.results) / f"{previous[0].name}_fewshot_continual" / f"shots{n}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(work, dest, ignore=shutil.ignore_patterns("models", "checkpoints", "logs", "*.pt", "*.ckpt",
                                                                  "fingerprint.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
