"""benchmarks/gpu_check.py --smoke on CPU: every stage timed, no GPU memory figure, weights stated, JSON written.

A subprocess (the script configures torch threads and seeds globally); a tiny model on synthetic faces, so it
needs neither the cfee-subset folder nor a GPU. Timed figures are only checked to be present: their values
belong to the benchmark's JSON, not to a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("basic", "trunk_cache", "continual", "fewshot", "gradcam")


def test_smoke_writes_every_stage(tmp_path: Path) -> None:
    """The smoke run ends 0 and its JSON holds each stage with its images counted,
    peak memory null on CPU,
    the weights' source, the provenance header and the paper-protocol estimate."""
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    result = json.loads(out.read_text())
    stages = result["stages"]
    throughput = [name for name in stages if name.startswith("throughput_")]
    assert throughput, "no throughput stage"
    for name in (*STAGES, *throughput):
        assert stages[name]["images"] > 0, name
        assert stages[name]["peak_gpu_memory_mib"] is None, name
    assert result["device"] == "cpu" and result["peak_gpu_memory_mib"] is None
    assert result["weights"].startswith("random init") and result["pretrained"] is False
    assert stages["continual"]["trainable"] == "tail_head" and stages["continual"]["steps"] == 2
    for key in ("command", "commit", "seed", "machine"):
        assert key in result, key
    est = result["estimate"]
    assert est["formula"] and set(STAGES) <= set(est["paper_images"])  # the images each stage would process
    check = est["formula_check_this_run"]
    assert check["continual_images_predicted"] == check["continual_images_measured"]
