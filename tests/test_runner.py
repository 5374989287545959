"""End-to-end behaviour of the protocol runner on tiny synthetic data."""

import json

import pytest

from compound_fer.config import parse_config
from compound_fer.errors import ConfigError
from compound_fer.runner import resolve_plan, run_protocol

TINY = {
    "name": "tiny",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 12, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 2, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["naive", "kdpsmr"], "orders": 1, "epochs": 1, "lr": 0.001, "augment_views": 1},
    "fewshot": {"enabled": True, "shots": [1], "compounds": ["Awed"], "epochs": 2},
    "threads": 1,
    "loggers": ["csv"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rows = run_protocol(parse_config(TINY), out_dir=out, progress=False, command="pytest tiny")
    return out, rows


def test_run_writes_every_result_artifact(tiny_run):
    out, rows = tiny_run
    for name in ("results.json", "results.csv", "results.md", "config.yaml", "models/basic_seed0.pt",
                 "models/basic_seed0.json", "figures/step_accuracy_methods.png", "figures/step_accuracy_methods.pdf"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert {"command", "commit", "seed", "machine"} <= set(data)
    assert data["command"] == "pytest tiny"


def test_rows_follow_the_protocol(tiny_run):
    _, rows = tiny_run
    kinds = [r["kind"] for r in rows]
    assert kinds.count("basic") == 1 and kinds.count("continual") == 2 and kinds.count("fewshot") == 1
    for r in (r for r in rows if r["kind"] == "continual"):
        assert r["seed"] == 0
        assert len(r["step_accuracy"]) == 16  # step 0 (basic) + 15 compound classes, one per experience
        assert r["experience_classes"][0] == list(range(6))
        assert [c for cs in r["experience_classes"][1:] for c in cs] == list(range(6, 21))
        assert len(r["class_names"]) == 21 and r["class_names"][:6] == ["Happy", "Sad", "Angry", "Surprised",
                                                                          "Disgusted", "Fearful"]
        # step 0 is the shared basic model: every method starts from the same accuracy
    s0 = {r["step_accuracy"][0] for r in rows if r["kind"] == "continual"}
    assert len(s0) == 1


def test_psmr_samples_its_own_new_class_images(tiny_run):
    _, rows = tiny_run
    by = {r["method"]: r for r in rows if r["kind"] == "continual"}
    assert by["kdpsmr"]["new_class_cap"] is None  # PSMR scores all images of the class, then keeps m
    assert by["naive"]["new_class_cap"] == by["naive"]["memory_quota"]


def test_resume_skips_completed_rows(tiny_run):
    out, rows = tiny_run
    again = run_protocol(parse_config(TINY), out_dir=out, resume=True, progress=False, fewshot=False)
    cont = lambda rs: {r["method"]: r["step_accuracy"] for r in rs if r["kind"] == "continual"}  # noqa: E731
    assert cont(again) == cont(rows)


def test_memory_budget_is_the_reference_formula():
    plan = resolve_plan(parse_config({"continual": {"memory_fraction": 0.3}}))
    assert plan.memory(1400, 21) == (420, 20)
    # a fraction of 0 (which the config allows) keeps one image per class, everywhere the quota is used
    assert resolve_plan(parse_config({"continual": {"memory_fraction": 0.0}})).memory(1400, 21) == (0, 1)


def test_unknown_method_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        run_protocol(parse_config(TINY), out_dir=tmp_path, methods=["nope"], progress=False)
