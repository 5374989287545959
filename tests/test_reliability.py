"""Reliability: a killed run resumes to exactly the uninterrupted metrics, the same seed gives the same
metrics, torn files are never trusted, and model files carrying code are refused (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compound_fer.checkpoint import PAUSE_ENV, CheckpointError, StepCheckpoint
from compound_fer.config import load_config
from compound_fer.errors import WeightsError
from compound_fer.model_io import load_state_dict
from compound_fer.runner import run_protocol

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_protocol.yaml"
#: wall-clock fields: the only ones allowed to differ between two runs of the same config and seed
TIMING = {"seconds", "step_seconds", "train_seconds_after_basic", "trunk_cache_seconds"}
KDPSMR_CKPT = "checkpoints/continual_seed0_kdpsmr_order0.ckpt"


def metrics(rows: list[dict]) -> dict:
    """Every row without its wall-clock fields, keyed by what it is, as JSON text (exact float repr;
    NaN, for a class not yet seen, compares equal to itself)."""
    key = lambda r: (r["kind"], r.get("method"), r.get("order_index"), r["seed"])  # noqa: E731
    return {key(r): json.dumps({k: v for k, v in r.items() if k not in TIMING}, sort_keys=True, default=str)
            for r in rows}


def saved_rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


def _run(out: Path, *, seeds=(0,), resume: bool = False, methods: list[str] | None = None) -> list[dict]:
    return run_protocol(load_config(TINY), out_dir=out, seeds=list(seeds), resume=resume, progress=False,
                        methods=methods, command="pytest reliability")


def _cli(out: Path, *extra: str, pause: float | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop(PAUSE_ENV, None)
    if pause is not None:
        env[PAUSE_ENV] = str(pause)
    cmd = [sys.executable, "-m", "compound_fer", "run", "--config", str(TINY), "--out", str(out), "--seeds", "0",
           "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted in-process run of the tiny protocol (seed 0)."""
    out = tmp_path_factory.mktemp("reference")
    _run(out)
    return out


# ----------------------------------------------------------------------------------- determinism
def test_same_config_and_seed_give_identical_metrics_and_every_row_names_its_seed(reference, tmp_path):
    again = _run(tmp_path / "again")
    assert metrics(again) == metrics(saved_rows(reference))  # exact: floats compared bit for bit
    other = _run(tmp_path / "seed1", seeds=(1,), methods=["naive"])
    cont = lambda rows: [r["final_confusion_matrix"] for r in rows if r["kind"] == "continual"]  # noqa: E731
    assert cont(other) != cont(again)  # the seed is really in force
    for out, seed in ((reference, 0), (tmp_path / "seed1", 1)):
        assert {r["seed"] for r in saved_rows(out)} == {seed}
        lines = (out / "results.csv").read_text().splitlines()
        col = lines[0].split(",").index("seed")
        assert [line.split(",")[col] for line in lines[1:]] == [str(seed)] * (len(lines) - 1)
        assert all(json.loads(p.read_text())["seed"] == seed for p in (out / "rows").glob("*.json"))


# -------------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
def test_run_killed_mid_step_resumes_to_exactly_the_uninterrupted_metrics(reference, tmp_path):
    out = tmp_path / "killed"
    pause = 0.1  # seconds slept after each trained step, before its checkpoint: the kill lands in there
    proc = _cli(out, pause=pause)
    try:
        while not (out / KDPSMR_CKPT).is_file():  # naive done (its row written), kdpsmr's step 0 saved
            assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()[1][-2000:]}"
            time.sleep(0.02)
        time.sleep(3.5 * pause)  # a few steps later, in the middle of one
        assert proc.poll() is None, "run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "rows" / "continual_seed0_naive_order0.json").is_file()
    assert not (out / "rows" / "continual_seed0_kdpsmr_order0.json").exists()
    assert not (out / "results.json").exists()

    resumed = _cli(out, "--resume")
    _, err = resumed.communicate(timeout=1800)  # a hang guard, not a speed check
    assert resumed.returncode == 0, err[-3000:]
    assert "naive order 0 seed 0 already done" in err
    step = int(err.split("resume: kdpsmr order 0 from step ")[1].split()[0])
    assert 1 <= step < 15  # continued from a saved step, not from scratch and not after the end
    assert metrics(saved_rows(out)) == metrics(saved_rows(reference))
    for row in (reference / "rows").glob("*.json"):
        assert metrics([json.loads((out / "rows" / row.name).read_text())]) == metrics([json.loads(row.read_text())])
    assert not list((out / "checkpoints").iterdir())  # each checkpoint is removed once its row is safe


def test_torn_row_checkpoint_and_model_are_recomputed_not_trusted(reference, tmp_path, caplog):
    """Behaviour chosen (docs/reliability.md): an unreadable file is logged and recomputed, never read as good."""
    out = tmp_path / "torn"
    shutil.copytree(reference, out)
    (out / "rows" / "continual_seed0_naive_order0.json").unlink()  # naive must run again ...
    ckpt = out / "checkpoints" / "continual_seed0_naive_order0.ckpt"
    StepCheckpoint(path=ckpt).save(step=7, state={"x": 1})
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # ... and finds a half-written checkpoint
    row = out / "rows" / "continual_seed0_kdpsmr_order0.json"
    row.write_text(row.read_text()[:200])  # a torn row
    weights = out / "models" / "basic_seed0.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # a torn basic model
    stale = out / "rows" / ".continual_seed0_kdpsmr_order0.json.k1ll3d.tmp"
    stale.write_text('{"kind": "continual", "se')  # what a write killed before its rename leaves
    with caplog.at_level("WARNING", logger="compound_fer.runner"):
        rows = _run(out, resume=True)
    assert metrics(rows) == metrics(saved_rows(reference))
    text = caplog.text
    assert "basic_seed0.pt cannot be reloaded" in text
    assert "continual_seed0_kdpsmr_order0.json is unreadable" in text
    assert "continual_seed0_naive_order0.ckpt cannot be read as a step checkpoint" in text
    assert not stale.exists()


def test_step_checkpoint_round_trip_and_clear_refusals(tmp_path):
    ck = StepCheckpoint(path=tmp_path / "s.ckpt")
    assert ck.load() is None
    torch.manual_seed(5)
    ck.save(step=3, state={"w": torch.arange(3)})
    expected = torch.rand(2)
    torch.manual_seed(99)
    step, state = ck.load()
    assert step == 3 and state["w"].tolist() == [0, 1, 2]
    assert torch.equal(torch.rand(2), expected)  # the generators continue where the saved run was
    data = ck.path.read_bytes()
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        ck.path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            ck.load()
    torch.save({"step": 1}, ck.path)  # a torch file, not a step checkpoint
    with pytest.raises(CheckpointError):
        ck.load()


# ----------------------------------------------------------------------------------- safe loading
class _Payload:
    """Unpickling this object calls Path.touch(marker): the shape of a malicious model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_model_file_carrying_pickled_code_is_refused_and_never_run(tmp_path):
    bad, marker = tmp_path / "model.pt", tmp_path / "code_ran"
    torch.save({"head.weight": torch.zeros(2, 2), "x": _Payload(marker)}, bad)
    with pytest.raises(WeightsError, match=r"NOT loaded.*only plain state dicts"):
        load_state_dict(bad)
    assert not marker.exists()
    torch.load(bad, weights_only=False)  # the payload is real: an unsafe load would have run it
    assert marker.exists()


def test_cli_evaluate_refuses_a_model_with_code_without_traceback(tmp_path, capsys):
    from compound_fer import cli

    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1), "x": _Payload(tmp_path / "code_ran")}, bad)
    (tmp_path / "model.json").write_text(json.dumps({"classes": ["Happy", "Sad"], "backbone": "small_cnn",
                                                     "image_size": 32}))
    assert cli.main(["evaluate", "--model", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "NOT loaded" in err and "Traceback" not in err
    assert not (tmp_path / "code_ran").exists()


# ------------------------------------------------------------------------------------- bad input
def test_too_few_images_for_the_shots_is_refused_before_any_training(tmp_path):
    """The few-shot phase's needs are checked with the data, before the basic phase: nothing is trained
    only to be refused later (the message names the class, its count and the option to change)."""
    from compound_fer.errors import DataError

    out = tmp_path / "shots"
    cfg = load_config(TINY).with_overrides(fewshot={"enabled": True, "shots": [50], "compounds": ["Awed"]})
    with pytest.raises(DataError, match=r"Awed \(50 needed.*fewshot.shots"):
        run_protocol(cfg, out_dir=out, seeds=[0], progress=False)
    assert not list(out.glob("rows/*.json")) and not list(out.glob("models/*.pt"))
