"""Performance figures of benchmarks/reliability.py (imported by it; each worker runs in a fresh process):

* step_ratio: KD+PSMR over a 150-class synthetic stream with a 300-item replay budget (``limit`` mode), so
  a step trains on 300 images at 30 classes (29 x 10 + 10) and at 150 (149 x 2 + 2). Target: the median
  step at 141-150 classes <= 1.3x the median at 26-35 classes. CPU seconds (one thread) are the figure; wall
  seconds are kept too, but on a shared machine they measure the neighbours.
* threads: short KD steps (small_cnn, 64 px, batch 16, teacher forward + student update) with 2 threads
  and spinning OpenMP workers (the old default), ``auto`` (compound_fer.threads: the usable cores) with
  OMP_WAIT_POLICY=PASSIVE (the default), and 1 thread, each alone and beside two busy processes.
* checkpoint: one cfee_cpu KD+PSMR order with step checkpoints; per step the written checkpoint's size and
  write time (v2), the size of the old whole-strategy pickle (v1) of the same state, and the step's time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
BUSY = [sys.executable, "-c", "while True: pass"]


def _run_worker(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, str(HERE), *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg", **extra}
    env.pop("COMPOUND_FER_STEP_PAUSE", None)
    return env


# ----------------------------------------------------------------------------------- step-time ratio
def ratio_worker(seed: int) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from stress import StreamSpec, run_stream  # benchmarks/stress.py

    stats = run_stream("kdpsmr", StreamSpec(n_classes=150, memory=300, seed=seed))

    def window(lo: int, hi: int, key: str) -> float:
        return statistics.median(getattr(s, key) for s in stats if lo <= s.classes_seen <= hi)

    out = {k: {"at_30": window(26, 35, k), "at_150": window(141, 150, k)} for k in ("cpu_seconds", "seconds")}
    out["images_per_step"] = {"at_30": [s.images for s in stats if s.classes_seen == 30][0],
                              "at_150": [s.images for s in stats if s.classes_seen == 150][0]}
    print(json.dumps(out))


def step_ratio(seed: int, repeats: int = 3) -> dict[str, Any]:
    runs = [_run_worker(["--ratio-worker", "--seed", str(seed + r)], _env(OMP_NUM_THREADS="1")) for r in range(repeats)]
    cpu = [r["cpu_seconds"]["at_150"] / r["cpu_seconds"]["at_30"] for r in runs]
    wall = [r["seconds"]["at_150"] / r["seconds"]["at_30"] for r in runs]
    return {"ratio_cpu": round(statistics.median(cpu), 3), "ratio_cpu_runs": [round(x, 3) for x in cpu],
            "ratio_wall": round(statistics.median(wall), 3), "ratio_wall_runs": [round(x, 3) for x in wall],
            "target": 1.3, "runs": runs,
            "stream": "150 Gaussian-blob classes, 10 in experience 0 then one per step, 30 train images each; "
                      "KD+PSMR, limit mode, budget 300; median step over classes seen 26-35 vs 141-150; "
                      "seeds " + ", ".join(str(seed + r) for r in range(repeats))}


# ------------------------------------------------------------------------------------------ threads
def thread_worker(threads: str, iters: int) -> None:
    import warnings

    import torch
    from torch.nn import functional as F

    warnings.filterwarnings("ignore")
    from compound_fer.models import build_model
    from compound_fer.threads import configure

    n = configure(threads)
    torch.manual_seed(0)
    student = build_model("small_cnn", num_classes=21, pretrained=False, image_size=64)
    teacher = build_model("small_cnn", num_classes=21, pretrained=False, image_size=64).eval()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    x, y = torch.rand(16, 3, 64, 64), torch.randint(0, 21, (16,))
    times = []
    for i in range(iters + 3):
        t0 = time.perf_counter()
        with torch.no_grad():
            soft = F.softmax(teacher(x) / 3.0, dim=1)
        z = student(x)
        loss = F.cross_entropy(z, y) + 0.1 * F.kl_div(F.log_softmax(z / 3.0, dim=1), soft, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    print(json.dumps({"threads": n, "median_step_s": round(statistics.median(times), 4),
                      "total_s": round(sum(times), 2)}))


def _with_busy(n: int, fn):
    procs = [subprocess.Popen(BUSY) for _ in range(n)]
    try:
        time.sleep(1.0 if n else 0)
        return fn()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def threads_figures(iters: int = 30) -> dict[str, Any]:
    settings = {
        "2 threads, OpenMP default (spinning): the old default": ("2", {}),
        "auto = usable cores (2), OMP_WAIT_POLICY=PASSIVE: the default": ("auto", {"OMP_WAIT_POLICY": "PASSIVE"}),
        "1 thread, OMP_WAIT_POLICY=PASSIVE": ("1", {"OMP_WAIT_POLICY": "PASSIVE"}),
    }
    out: dict[str, Any] = {}
    for busy in (0, 2):
        for name, (threads, extra) in settings.items():
            env = _env(**extra)
            env.pop("OMP_NUM_THREADS", None)
            if "OMP_WAIT_POLICY" not in extra:
                env.pop("OMP_WAIT_POLICY", None)
                env["COMPOUND_FER_OMP_WAIT_POLICY"] = "default"
            res = _with_busy(busy, lambda: _run_worker(["--thread-worker", threads, "--iters", str(iters)], env))
            res["load_average_1min"] = round(os.getloadavg()[0], 2)
            out[f"{name} | {busy} busy processes"] = res
            print("threads:", name, busy, res, flush=True)
    return out


# --------------------------------------------------------------------------------------- checkpoint
def checkpoint_worker(config: str, out: str, rows_path: str) -> None:
    """Run the CLI in this process with StepCheckpoint.save instrumented; per-step figures to ``rows_path``."""
    import io
    import warnings

    warnings.filterwarnings("ignore")
    from compound_fer import checkpoint as C

    orig, rows = C.StepCheckpoint.save, []

    def save(self, *, step, state):  # noqa: ANN001
        path = orig(self, step=step, state=state)
        t0, buf = time.perf_counter(), io.BytesIO()
        v1_external = {k: v for k, v in self.external.items() if k in ("evaluator", "train_inputs", "test_inputs")}
        C._Pickler.make(buf, v1_external).dump({"state": dict(state)})  # what v1 wrote (no fsync here)
        rows.append({"step": step, "bytes": self.last_bytes, "write_s": round(self.last_seconds, 4),
                     "v1_bytes": buf.tell(), "v1_pickle_s": round(time.perf_counter() - t0, 4),
                     "step_s": round(float(state["step_seconds"][-1]), 3)})
        return path

    C.StepCheckpoint.save = save
    from compound_fer.cli import main

    rc = main(["run", "--config", config, "--out", out, "--seeds", "0", "--no-progress"])
    Path(rows_path).write_text(json.dumps(rows))
    print(json.dumps({"rc": rc, "steps": len(rows)}))


def checkpoint_figures(config: str, work: Path) -> dict[str, Any]:
    rows_path = work / "checkpoint_rows.json"
    _run_worker(["--checkpoint-worker", config, str(work / "ckpt_run"), str(rows_path)], _env())
    rows = json.loads(rows_path.read_text())
    steps = [r for r in rows if r["step"] > 0]  # step 0 replays the shared basic model (no training)
    mib = lambda b: round(b / 2**20, 2)  # noqa: E731
    return {"config": config, "method": "kdpsmr", "orders": 1, "steps": len(steps),
            "max_mib": mib(max(r["bytes"] for r in steps)),
            "median_mib": mib(statistics.median(r["bytes"] for r in steps)),
            "median_write_ms": round(1000 * statistics.median(r["write_s"] for r in steps), 1),
            "median_step_s": round(statistics.median(r["step_s"] for r in steps), 2),
            "write_share_of_step": round(statistics.median(r["write_s"] / r["step_s"] for r in steps), 4),
            "v1_median_mib": mib(statistics.median(r["v1_bytes"] for r in steps)),
            "v1_median_pickle_ms": round(1000 * statistics.median(r["v1_pickle_s"] for r in steps), 1),
            "targets": {"max_mib": 10, "write_share_of_step": 0.05}, "per_step": rows}


def worker_main(argv: list[str]) -> bool:
    """Dispatch ``--ratio-worker``/``--thread-worker``/``--checkpoint-worker``; False when argv is none of them."""
    if argv[:1] == ["--ratio-worker"]:
        ratio_worker(int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0)
    elif argv[:1] == ["--thread-worker"]:
        thread_worker(argv[1], int(argv[argv.index("--iters") + 1]) if "--iters" in argv else 30)
    elif argv[:1] == ["--checkpoint-worker"]:
        checkpoint_worker(*argv[1:4])
    else:
        return False
    return True


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(f"usage: reliability_perf.py --ratio-worker | --thread-worker MODE | --checkpoint-worker ...\n\n{__doc__}"
              "\nRun benchmarks/reliability.py; this module only hosts its workers.")
        raise SystemExit(0)
    if not worker_main(sys.argv[1:]):
        raise SystemExit("run benchmarks/reliability.py; this module only hosts its workers")
