"""Reliability figures: resume after SIGKILL, determinism, and a 100-150 class stress stream.

Writes benchmarks/results/reliability.json (atomically, with provenance). One CPU thread per process;
about 3-5 minutes on a shared 2-core machine.

* resume: the tiny synthetic protocol (tests/data/tiny_protocol.yaml) through the CLI, once uninterrupted
  and once SIGKILLed in the middle of a KD+PSMR step then rerun with ``--resume``; are all metrics
  identical, and how much wall time did the kill cost?
* determinism: a second uninterrupted CLI run (a fresh process) with the same seed: identical metrics?
  A run with another seed shows the comparison is not vacuous.
* stress: KD+PSMR and class-balanced replay over synthetic streams of 30 to 150 classes under a fixed
  replay budget; each stream in its own process so its peak RSS is its own.
* step_ratio, threads, checkpoint (benchmarks/reliability_perf.py): the KD+PSMR step at 150 vs 30 classes
  (``stress.kdpsmr_step_time_ratio_150_vs_30``), thread defaults beside busy processes, and cfee_cpu step
  checkpoints' size and write time (``--checkpoint-config``; minutes: it trains one order).

``--only a,b`` recomputes just those sections and keeps the file's other entries; every section written by
``--only`` carries its own provenance (command, commit, seed, machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "reliability.json"
TINY = REPO / "tests" / "data" / "tiny_protocol.yaml"
TIMING = {"seconds", "step_seconds", "train_seconds_after_basic", "trunk_cache_seconds"}
PAUSE = 0.1  # COMPOUND_FER_STEP_PAUSE in every resume run (so the kill can land mid-step): all runs alike


def _env(pause: float | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    env.pop("COMPOUND_FER_STEP_PAUSE", None)
    if pause is not None:
        env["COMPOUND_FER_STEP_PAUSE"] = str(pause)
    return env


def _cli(out: Path, *extra: str, seed: int = 0, pause: float | None = PAUSE) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "compound_fer", "run", "--config", str(TINY), "--out", str(out), "--seeds",
           str(seed), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(pause), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(out: Path, *extra: str, seed: int = 0) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr) of one CLI run; CPU time is the steadier figure on a shared machine."""
    t0, c0 = time.perf_counter(), _child_cpu()
    proc = _cli(out, *extra, seed=seed)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0, _child_cpu() - c0, err


def _rows(out: Path) -> dict[str, dict]:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return {f"{r['kind']}/{r.get('method')}/{r.get('order_index')}": {k: v for k, v in r.items() if k not in TIMING}
            for r in rows}


def _numbers(x: Any) -> list[float]:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return []
    if isinstance(x, (int, float)):
        return [float(x)]
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _numbers(x[k])]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _numbers(item)]
    return []


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict[str, Any]:
    """Identical (as JSON: exact floats, NaN = NaN) and the largest absolute difference of any number."""
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    diff = 0.0
    for key in sorted(set(a) & set(b)):
        xs, ys = _numbers(a[key]), _numbers(b[key])
        if len(xs) != len(ys):
            return {"identical": False, "max_abs_diff": None, "note": f"{key}: different shapes"}
        for x, y in zip(xs, ys):
            if not (math.isnan(x) and math.isnan(y)):
                diff = max(diff, abs(x - y))
    return {"identical": same and set(a) == set(b), "max_abs_diff": diff, "rows": len(a)}


def resume_and_determinism(work: Path) -> tuple[dict, dict]:
    ref = work / "uninterrupted"
    ref_s, ref_cpu, _ = _timed(ref)
    again_s, again_cpu, _ = _timed(work / "again")
    _timed(work / "seed1", seed=1)

    killed = work / "killed"
    ckpt = killed / "checkpoints" / "continual_seed0_kdpsmr_order0.ckpt"
    t0, c0 = time.perf_counter(), _child_cpu()
    proc = _cli(killed)
    while not ckpt.is_file():
        if proc.poll() is not None:
            raise SystemExit("the run ended before it could be killed")
        time.sleep(0.02)
    time.sleep(7.5 * PAUSE)  # several KD+PSMR steps in, inside a step (after training, before its checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_s, killed_cpu = time.perf_counter() - t0, _child_cpu() - c0
    resumed_s, resumed_cpu, err = _timed(killed, "--resume")
    step = int(err.split("resume: kdpsmr order 0 from step ")[1].split()[0])
    res = {
        "protocol": "tests/data/tiny_protocol.yaml (synthetic faces, small_cnn, naive + kdpsmr, 16 steps each)",
        "kill": "SIGKILL during a kdpsmr step (after its training, before its checkpoint); naive already done",
        "step_pause_s": PAUSE,
        "resumed_from_step": step,
        **compare(_rows(ref), _rows(killed)),
        "uninterrupted_s": round(ref_s, 2), "killed_run_s": round(killed_s, 2), "resume_run_s": round(resumed_s, 2),
        "time_lost_s": round(killed_s + resumed_s - ref_s, 2),
        "uninterrupted_cpu_s": round(ref_cpu, 2), "killed_run_cpu_s": round(killed_cpu, 2),
        "resume_run_cpu_s": round(resumed_cpu, 2), "cpu_lost_s": round(killed_cpu + resumed_cpu - ref_cpu, 2),
        "time_lost_note": "mostly the second process start (imports, data, basic model reload); "
                          "steps after the last checkpoint are redone",
    }
    det = {"same_seed": compare(_rows(ref), _rows(work / "again")),
           "other_seed": compare(_rows(ref), _rows(work / "seed1")),
           "runs": "two separate processes, same config and seed 0 (and one with seed 1)",
           "note": "max_abs_diff runs over every number of the rows, confusion-matrix counts included",
           "wall_s": [round(ref_s, 2), round(again_s, 2)], "cpu_s": [round(ref_cpu, 2), round(again_cpu, 2)]}
    return res, det


# ------------------------------------------------------------------------------------------- stress
def stress_worker(method: str, n_classes: int, seed: int) -> None:
    """In a fresh process: run one stream and print its summary as JSON (the last stdout line)."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import avalanche.training  # noqa: F401  (imports out of the baseline)
    from stress import StreamSpec, _peak_rss_mib, _rss_mib, run_stream  # benchmarks/stress.py

    base = _rss_mib()
    spec = StreamSpec(n_classes=n_classes, seed=seed)
    t0 = time.perf_counter()
    stats = run_stream(method, spec)
    total = time.perf_counter() - t0
    secs = [s.seconds for s in stats]
    windows = []
    for lo in range(spec.first, n_classes, 10):
        w = [s for s in stats if lo < s.classes_seen <= lo + 10]
        if w:
            windows.append({"classes_seen": w[-1].classes_seen,
                            "median_step_s": round(statistics.median(s.seconds for s in w), 4),
                            "max_memory_items": max(s.memory_items for s in w),
                            "rss_mib": w[-1].rss_mib})
    print(json.dumps({
        "method": method, "n_classes": n_classes, "steps": len(stats), "memory_budget": spec.memory,
        "max_memory_items": max(s.memory_items for s in stats),
        "within_budget": all(s.memory_items <= spec.memory for s in stats),
        "peak_rss_mib": round(_peak_rss_mib(), 1), "rss_after_imports_mib": round(base, 1),
        "rss_growth_mib": round(stats[-1].rss_mib - base, 1),
        "median_step_s_first10": round(statistics.median(secs[:10]), 4),
        "median_step_s_last10": round(statistics.median(secs[-10:]), 4),
        "total_s": round(total, 2), "by_classes_seen": windows,
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
    }))


def stress(sizes: list[int], seed: int) -> dict:
    runs = []
    for method in ("kdpsmr", "replay"):
        for n in sizes:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--stress-worker",
                method,
                str(n),
                "--seed",
                str(seed),
            ]
            proc = subprocess.run(cmd, cwd=REPO, env=_env(None), capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"stress worker {method} {n} failed:\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"stress {method} {n} classes: {runs[-1]['total_s']} s, peak {runs[-1]['peak_rss_mib']} MiB, "
                  f"step {runs[-1]['median_step_s_first10']} -> {runs[-1]['median_step_s_last10']} s", flush=True)
    return {"stream": "Gaussian blobs, 16-d features, 30 train images per class, 10 classes in experience 0 then "
                      "one class per step; MLP + growing head; 1 epoch, batch 32; replay budget 200 items "
                      "(PSMR in 'limit' mode, replay with Avalanche's ClassBalancedBuffer)",
            "runs": runs}


def only(args: argparse.Namespace) -> int:
    """Recompute some sections; keep every other entry of reliability.json."""
    import shutil

    import reliability_perf as perf

    from compound_fer.io import provenance, write_json

    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = " ".join(["python", "benchmarks/reliability.py", *sys.argv[1:]])
    for name in sections:
        head = provenance(command=command, seed=args.seed, load_average=list(os.getloadavg()))
        if name == "resume":
            data["resume"], data["determinism"] = resume_and_determinism(work)
        elif name == "stress":
            data["stress"] = {**data.get("stress", {}), **stress([int(s) for s in args.sizes.split(",")], args.seed)}
        elif name == "step_ratio":
            res = perf.step_ratio(args.seed)
            data.setdefault("stress", {})["kdpsmr_step_time_ratio_150_vs_30"] = res["ratio_cpu"]
            data["stress"]["kdpsmr_step_time_ratio"] = {**head, **res}
        elif name == "threads":
            data["threads"] = {**head, "figures": perf.threads_figures()}
        elif name == "checkpoint":
            data["checkpoint"] = {**head, "cfee_cpu": perf.checkpoint_figures(args.checkpoint_config, work)}
        else:
            raise SystemExit(f"--only: unknown section {name!r}")
        write_json(RESULTS, data)
        print(f"{name}: written to {RESULTS}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default="30,60,120,150", help="stress stream lengths (classes)")
    p.add_argument("--work", default=str(REPO / ".cache" / "reliability"), help="scratch folder for the runs")
    p.add_argument("--skip-resume", action="store_true")
    p.add_argument("--stress-worker", nargs=2, metavar=("METHOD", "N_CLASSES"), help=argparse.SUPPRESS)
    p.add_argument("--only", help="comma-separated sections to recompute: resume, stress, step_ratio, threads, "
                                  "checkpoint (others are kept from the existing file)")
    p.add_argument("--checkpoint-config", default="compound_fer/configs/cfee_cpu.yaml",
                   help="config of the checkpoint measurement (its methods/orders are used as given)")
    args = p.parse_args(argv)
    if args.only:
        return only(args)
    if args.stress_worker:
        stress_worker(args.stress_worker[0], int(args.stress_worker[1]), args.seed)
        return 0
    import shutil

    from compound_fer.io import provenance, write_json

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if not args.skip_resume:
        out["resume"], out["determinism"] = resume_and_determinism(work)
        print("resume:", json.dumps(out["resume"]), "\ndeterminism:", json.dumps(out["determinism"]), flush=True)
    out["stress"] = stress([int(s) for s in args.sizes.split(",")], args.seed)
    header = provenance(command=" ".join(["python", "benchmarks/reliability.py", *sys.argv[1:]]), seed=args.seed,
                        threads=1, load_average=list(os.getloadavg()), wall_s=round(time.perf_counter() - t0, 1))
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}  # sections this run does not redo stay
    for key in ("kdpsmr_step_time_ratio_150_vs_30", "kdpsmr_step_time_ratio"):
        if key in old.get("stress", {}):
            out["stress"][key] = old["stress"][key]
    write_json(RESULTS, {**{k: old[k] for k in ("threads", "checkpoint") if k in old}, **header, **out})
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
