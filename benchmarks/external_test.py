"""Train on one CFEE folder, test on another (``compound-fer run --test-data``), and record the figures.

The CFEE subset is split by subject id into two folders of symbolic links outside the repository (the
images are research-only: never copied here): the lower ``--share`` of the ids -> A (every subject
trains, a validation share stops early), the rest -> B (the external test folder). The FACS workbook
and landmarks.csv are linked into both. Then the protocol runs and the split, basic test accuracy and
overall accuracy go to ``benchmarks/results/cfee_external_test.json``.

    python benchmarks/external_test.py                       # split, run, record
    python benchmarks/external_test.py --record-from /tmp/cfee_external --wall-seconds 812 \\
        --command "compound-fer run ..."                     # record a run made by hand
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compound_fer.io import provenance, write_json  # noqa: E402


def _cfee_name():  # noqa: ANN202 - a compiled pattern
    """CFEE's file-name pattern, imported when a folder is split (so --help imports no torch)."""
    from compound_fer.data.cfee import CFEE_NAME

    return CFEE_NAME


def split_folders(src: Path, a: Path, b: Path, *, share: float = 0.8) -> dict:
    """Symlink ``src/Images/*.jpg`` into ``a/Images`` (lower ``share`` of subject ids) and ``b/Images``."""
    files = sorted(p for p in (src / "Images").iterdir() if _cfee_name().match(p.name))
    ids = sorted({int(_cfee_name().match(p.name).group(2)) for p in files})
    cut = ids[int(len(ids) * share) - 1]
    for d in (a, b):
        (d / "Images").mkdir(parents=True, exist_ok=False)
        for extra in ("AU_annotation_all_subjects.xls", "landmarks.csv"):
            if (src / extra).is_file():
                (d / extra).symlink_to(src / extra)
    for p in files:
        sid = int(_cfee_name().match(p.name).group(2))
        ((a if sid <= cut else b) / "Images" / p.name).symlink_to(p)
    return describe(a, b, source=src, share=share)


def describe(a: Path, b: Path, **extra) -> dict:
    """Subjects, images and id range of the two folders (file names only)."""
    def one(d: Path) -> dict:
        ids = [int(_cfee_name().match(p.name).group(2)) for p in (d / "Images").iterdir() if _cfee_name().match(p.name)]
        return {"path": str(d), "subjects": len(set(ids)), "images": len(ids), "subject_id_range": [min(ids), max(ids)]}

    return {**{k: str(v) if isinstance(v, Path) else v for k, v in extra.items()}, "train_folder": one(a),
            "test_folder": one(b)}


def record(run_dir: Path, *, command: str, wall_seconds: float, folders: dict | None, notes: str = "") -> dict:
    res = json.loads((run_dir / "results.json").read_text())
    basic = [r for r in res["rows"] if r["kind"] == "basic"]
    split = dict(basic[0]["split"])
    ids = {k: split.pop(k) for k in ("train_subject_ids", "val_subject_ids", "test_subject_ids") if k in split}
    return {
        **provenance(command=command, seed=0),
        "what": "strict mode with an external test folder: every subject of --data trains (a validation share "
                "for early stopping), the other folder (disjoint subjects) is the whole test set",
        "run_commit": res.get("commit"),
        "wall_seconds": round(wall_seconds, 1),
        "folders": folders,
        "split": split,
        "subject_ids": {k: [min(v), max(v)] if v else [] for k, v in ids.items()},
        "subjects_disjoint": not (set(ids.get("train_subject_ids", [])) | set(ids.get("val_subject_ids", [])))
        & set(ids.get("test_subject_ids", [])),
        "basic": {k: basic[0].get(k) for k in ("backbone", "image_size", "best_epoch", "val_accuracy",
                                                "test_accuracy", "seconds")},
        "continual": {k: {m: v.get(m) for m in ("orders", "overall_accuracy", "overall_accuracy_without_step0",
                                                "final_accuracy", "average_forgetting", "seconds")}
                      for k, v in res["summary"].items()},
        "notes": notes,
        "config": (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfee", default=str(REPO.parent / "shared" / "data" / "cfee-subset"))
    ap.add_argument("--work", default="/tmp/cfee_external_folders", help="where the two symlink folders go")
    ap.add_argument("--out", default="/tmp/cfee_external", help="run output folder")
    ap.add_argument("--share", type=float, default=0.8)
    ap.add_argument("--record-from", help="record an existing run folder instead of running")
    ap.add_argument("--wall-seconds", type=float, help="with --record-from: the run's measured wall time")
    ap.add_argument("--command", help="with --record-from: the command that made it")
    ap.add_argument("--notes", default="", help="free text stored with the figures")
    ap.add_argument("--folders", nargs=2, metavar=("DATA", "TEST_DATA"), help="with --record-from: its two folders")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "cfee_external_test.json"))
    args = ap.parse_args()
    if args.record_from:
        out = record(Path(args.record_from), command=args.command or "(not given)",
                     wall_seconds=args.wall_seconds or float("nan"),
                     folders=describe(*map(Path, args.folders)) if args.folders else None, notes=args.notes)
    else:
        work = Path(args.work)
        folders = split_folders(Path(args.cfee), work / "A", work / "B", share=args.share)
        cmd = [sys.executable, "-m", "compound_fer", "run", "--config", "cfee_cpu", "--data", str(work / "A"),
               "--test-data", str(work / "B"), "--methods", "kdpsmr", "--orders", "1", "--no-fewshot",
               "--threads", "1", "--no-progress", "--out", args.out]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        out = record(Path(args.out), command=shlex.join(cmd), wall_seconds=time.perf_counter() - t0,
                     folders=folders, notes=args.notes)
    write_json(args.result, out)
    print(json.dumps({k: out[k] for k in ("split", "basic", "continual")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
