"""Data-parallel runs under ``torchrun`` (gloo, CPU): ranks keep identical weights, predictions are gathered
from every rank, and the metrics match a single-process run within a stated tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compound_fer.config import load_config
from compound_fer.runner import run_protocol

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_protocol.yaml"
TORCHRUN = Path(sys.executable).with_name("torchrun")

#: Data parallelism is not bitwise single-process: floats are summed in another order, each rank's
#: BatchNorm sees its shard (statistics averaged per epoch), each rank draws its own minibatches from its
#: shard in the continual steps, and Adam follows that path. What must hold exactly is checked exactly
#: (identical weights on both ranks, every test image predicted); accuracies are compared in test images:
#: the basic model (18 basic-class test images, 5.6 points each) may differ on 2 of them, the overall
#: accuracy (mean over 16 steps of 6 to 63 images) by 0.05, about 3 images of the final test set.
BASIC_IMAGES = 2
TOLERANCE = 0.05


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside this python")
def test_two_process_torchrun_keeps_ranks_identical_and_matches_single_process(tmp_path):
    single = run_protocol(load_config(TINY), out_dir=tmp_path / "single", seeds=[0], progress=False)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "compound_fer", "run", "--config", str(TINY),
           "--out", str(out), "--seeds", "0", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads((out / "results.json").read_text())["rows"]

    by = lambda rows: {(r["kind"], r.get("method")): r for r in rows}  # noqa: E731
    s, d = by(single), by(ddp)
    assert set(s) == set(d) == {("basic", None), ("continual", "naive"), ("continual", "kdpsmr")}
    assert d[("basic", None)]["ranks_in_sync"] is True  # DDP-wrapped basic phase
    n_basic = s[("basic", None)]["split"]["test_images"] * 6 // 21  # 6 basic of the 21 classes, balanced
    assert (
        abs(d[("basic", None)]["test_accuracy"] - s[("basic", None)]["test_accuracy"]) * n_basic <= BASIC_IMAGES + 1e-6
    )
    for method in ("naive", "kdpsmr"):
        a, b = s[("continual", method)], d[("continual", method)]
        assert b["world_size"] == 2 and "ranks_in_sync" not in a
        assert b["ranks_in_sync"] is True  # gradient all-reduce + pre-grown fixed-size head: no divergence
        assert b["class_names"] == a["class_names"] and len(b["step_accuracy"]) == len(a["step_accuracy"]) == 16
        # predictions gathered across ranks: the confusion matrix counts every test image, not one shard
        count = lambda r: sum(map(sum, r["final_confusion_matrix"]))  # noqa: E731
        assert count(b) == count(a) == s[("basic", None)]["split"]["test_images"]
        assert abs(b["overall_accuracy"] - a["overall_accuracy"]) <= TOLERANCE
        assert abs(b["step_accuracy"][0] - a["step_accuracy"][0]) * n_basic <= BASIC_IMAGES + 1e-6
    assert "ranks_in_sync" not in s[("basic", None)]
