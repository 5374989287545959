"""benchmarks/learning_curve.py end to end on a tiny synthetic protocol: the JSON, the figure, resuming."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = """name: tiny_curve
data: {source: synthetic, image_size: 32, synthetic: {n_subjects: 12, per_subject: 1, seed: 0}}
evaluation: {mode: strict, val_fraction: 0.2, test_fraction: 0.25}
model: {backbone: small_cnn, pretrained: false}
basic: {epochs: 1, lr: 0.002, batch_size: 32, patience: 3}
continual: {methods: [naive], orders: 3, epochs: 1, lr: 0.001, augment_views: 1}
fewshot: {enabled: true, shots: [1], epochs: 1}
threads: 1
loggers: [csv]
"""


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("learning_curve", REPO / "benchmarks" / "learning_curve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def curve(script, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curve")
    (tmp / "tiny.yaml").write_text(TINY)
    args = ["--config", str(tmp / "tiny.yaml"), "--fractions", "0.5,1.0", "--work", str(tmp / "work"),
            "--out", str(tmp / "curve.json"), "--figure", str(tmp / "curve.png")]
    assert script.main(args) == 0
    return tmp, args


def test_writes_one_entry_per_fraction_and_the_figure(curve):
    tmp, _ = curve
    data = json.loads((tmp / "curve.json").read_text())
    assert {"command", "commit", "seed", "machine", "setup", "fractions"} <= set(data)
    assert data["setup"]["methods"] == ["kdpsmr", "joint"] and data["setup"]["fewshot"] is False
    half, full = data["fractions"]["0.5"], data["fractions"]["1.0"]
    for e in (half, full):
        assert {"train_subjects", "train_images", "test_subjects", "basic_test_accuracy", "methods"} <= set(e)
        assert set(e["methods"]) == {"kdpsmr", "joint"}
        for m in e["methods"].values():
            assert 0 <= m["overall_accuracy"] <= 1 and 0 <= m["final_accuracy"] <= 1 and m["orders"] == 1
    assert (full["train_subjects"], half["train_subjects"]) == (7, 4)  # 12 subjects: 3 test, 2 val; 3.5 -> 4
    assert half["test_subjects"] == full["test_subjects"] == 3 and half["test_images"] == full["test_images"]
    assert (tmp / "curve.png").stat().st_size > 0


def test_fractions_already_in_the_json_are_skipped(script, curve, capsys):
    tmp, args = curve
    before = (tmp / "curve.json").read_text()
    assert script.main(args) == 0
    assert capsys.readouterr().out.count("skipped") == 2
    assert (tmp / "curve.json").read_text() == before


@pytest.mark.parametrize("extra, match", [(["--methods", "naive"], "another setup"),
                                          (["--fractions", "0,1"], "--fractions")])
def test_bad_requests_end_in_one_line_and_exit_2(script, curve, capsys, extra, match):
    _, args = curve
    assert script.main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
