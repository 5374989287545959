"""Wall time of a whole protocol as a user runs it: `compound-fer run --config NAME --seeds 0`.

One process per config, one after the other on the same machine, so the times compare: loading and crops,
basic phase, trunk maps, every configured method over every class order, the few-shot phase and the
episodes. The split of the total is the run's own ``stage_seconds`` (results.json). ``--methods`` times
some methods only (the earlier figures timed ``--methods kdpsmr``). Merges a ``whole_protocol`` section
into benchmarks/results/speed.json.

    python benchmarks/protocol_time.py --configs cfee_best [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from compound_fer.commands._common import resolve_config
from compound_fer.config import load_config
from compound_fer.io import git_commit, provenance, write_json


def _phase_seconds(out: Path) -> dict:
    """Basic-phase and continual seconds, and the run's stage_seconds, from a finished run's results.json."""
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = doc["rows"]
    basic = sum(r.get("seconds") or 0.0 for r in rows if r["kind"] == "basic")
    trunk = sum(r.get("trunk_cache_seconds") or 0.0 for r in rows if r["kind"] == "basic")
    orders = [r.get("seconds") or 0.0 for r in rows if r["kind"] == "continual"]
    return {"basic_seconds": round(basic, 1), "trunk_cache_seconds": round(trunk, 1),
            "continual_seconds_per_order": [round(s, 1) for s in orders],
            "fewshot_episodes": sum(r["kind"] == "fewshot" for r in rows),  # few-shot runs (one per class and K)
            "nway_episodes": sum(r.get("episodes") or 0 for r in rows if r["kind"] == "episodes"),
            "stage_seconds": doc.get("stage_seconds")}


def time_config(name: str, *, threads: int, work: Path, methods: str | None = None, target_minutes: float = 8) -> dict:
    """Run one config's whole protocol (one seed; ``methods``: these only) in a fresh process and time it."""
    out = work / name
    cmd = [sys.executable, "-m", "compound_fer.cli", "run", "--config", name, "--seeds", "0",
           *(["--methods", methods] if methods else []),
           "--out", str(out), "--overwrite", "--no-progress", "--threads", str(threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    total = time.perf_counter() - t0
    phases = _phase_seconds(out)
    rest = total - phases["basic_seconds"] - sum(phases["continual_seconds_per_order"])
    size = load_config(resolve_config(name)).data.image_size
    return {"command": shlex.join(cmd[1:]), "commit": git_commit(), "image_size": size,
            "total_seconds": round(total, 1), "total_minutes": round(total / 60, 2),
            "methods": methods or "the config's own", **phases, "fewshot_and_loading_seconds": round(rest, 1),
            "target_minutes": target_minutes, "within_target": total <= target_minutes * 60}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="cfee_best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated; default: each config's own list")
    ap.add_argument("--target-minutes", type=float, default=8.0)
    ap.add_argument("--work", default="runs/protocol_time", help="run folders (weights stay here)")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    args = ap.parse_args()
    results = {name: time_config(name, threads=args.threads, work=Path(args.work), methods=args.methods,
                                 target_minutes=args.target_minutes)
               for name in args.configs.split(",") if name}
    path = Path(args.out)
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    earlier = doc.get("whole_protocol", {}).get("configs", {})  # other configs keep their figures
    doc["whole_protocol"] = {"what": "compound-fer run --seeds 0 (each config's own methods unless an entry's "
                                     "'methods' says otherwise): loading, basic phase, every method over every "
                                     "class order, few-shot phase and episodes; one config after the other in "
                                     "fresh processes",
                             **provenance(seed=0), "threads": args.threads, "configs": {**earlier, **results}}
    write_json(path, doc)
    for name, r in results.items():
        print(
            f"{name}: {r['total_minutes']:.1f} min (basic {r['basic_seconds']:.0f} s, "
            f"orders {r['continual_seconds_per_order']}, few-shot + loading {r['fewshot_and_loading_seconds']:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
