"""The packaged `cfee_best` and `cfee_best_landmarks` configs run on any folder through the CLI, with
`--test-data`, with or without landmark files: their levers (auxiliary heads, component init, fused
geometry, head-only steps, few-shot in both modes and the zero-shot row) on tiny synthetic faces, and on
real CFEE faces (skipped when absent) without a landmarks file."""

from __future__ import annotations

import json

import pytest
import yaml
from test_external_test import SIZE, write_cfee_folder

from compound_fer import cli
from compound_fer.commands._common import resolve_config

SMALL = {  # only the size of the run changes: every lever of the packaged config stays as shipped
    "data": {"image_size": SIZE, "face_method": "landmarks", "face_margin": 0.0, "landmark_detector": None},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 1, "batch_size": 32},
    "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "augment_views": 1},
    "fewshot": {"compounds": ["Happily surprised"], "epochs": 1},
    "threads": 1,
    "loggers": [],
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def small_config(name: str, path, **extra) -> str:
    """The packaged config ``name`` with SMALL (and ``extra``) applied, written as YAML at ``path``."""
    cfg = _merge(yaml.safe_load(resolve_config(name).read_text()), _merge(SMALL, extra))
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("best")
    write_cfee_folder(root / "train", subjects=10, offset=100)
    write_cfee_folder(root / "test", subjects=4, offset=200)
    return root


@pytest.fixture(autouse=True)
def face_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "face_cache"))  # never the user's cache


def run(cfg: str, root, out, test: str = "test") -> dict:
    rc = cli.main(["run", "--config", cfg, "--data", str(root / "train"), "--test-data", str(root / test),
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


def test_cfee_best_runs_on_a_folder_with_every_lever(folders, tmp_path):
    res = run(small_config("cfee_best", tmp_path / "best.yaml"), folders, tmp_path / "out")
    basic = next(r for r in res["rows"] if r["kind"] == "basic")
    assert basic["auxiliary"]["geometry_weight"] == 1.0 and basic["auxiliary"]["au_weight"] == 1.0
    assert basic["auxiliary"]["au_targets"] == "class prototypes"  # no aus.csv in the folder
    assert "kdpsmr" in res["summary"]
    assert {r["mode"] for r in res["fewshot"]} == {"reference", "kept", "zero-shot"}
    row = next(r for r in res["rows"] if r["kind"] == "continual")
    assert len(row["zero_shot"]) == 15  # component init: every compound step scored before training
    assert (tmp_path / "out" / "models" / "fewshot_seed0_happily_surprised_5shot_kept.pt").is_file()


def _cover(by_subject: dict[int, set[str]], need: set[str], skip: set[int] = frozenset()) -> list[int]:
    """Subjects (greedy) whose images together show every category of ``need``."""
    chosen: list[int] = []
    left = set(need)
    while left:
        best = max(
            (s for s in by_subject if s not in skip and s not in chosen), key=lambda s: len(by_subject[s] & left)
        )
        chosen.append(best)
        left -= by_subject[best]
    return chosen


def test_cfee_best_runs_on_real_faces_without_landmark_files(cfee_root, tmp_path):
    """Image-only on real faces with no landmarks.csv: the offline detector places the faces and gives the
    auxiliary geometry its targets; the model itself takes pixels."""
    by_subject: dict[int, set[str]] = {}
    for f in (cfee_root / "Images").glob("*.jpg"):
        by_subject.setdefault(int(f.name.split("_")[1]), set()).add(f.name.split("_")[0])
    every = set().union(*by_subject.values())
    test = _cover(by_subject, every)
    train = _cover(by_subject, every, skip=set(test))
    train += [s for s in sorted(by_subject) if s not in test and s not in train][:12]  # a few more to learn from
    for part, subjects in (("train", train), ("test", test)):
        (tmp_path / part / "Images").mkdir(parents=True)
        for f in (cfee_root / "Images").glob("*.jpg"):
            if int(f.name.split("_")[1]) in subjects:
                (tmp_path / part / "Images" / f.name).symlink_to(f)
    cfg = small_config("cfee_best", tmp_path / "best.yaml", fewshot={"shots": [1], "mode": "kept"},
                       data={"image_size": 48, "face_method": "auto", "face_margin": 0.15,
                             "landmark_detector": "mediapipe"})
    res = run(cfg, tmp_path, tmp_path / "out")
    basic = next(r for r in res["rows"] if r["kind"] == "basic")
    assert basic["auxiliary"]["geometry_weight"] == 1.0 and basic["auxiliary"]["au_weight"] == 1.0
    assert "kdpsmr" in res["summary"] and res["fewshot"][0]["mode"] == "kept"


def test_cfee_best_landmarks_fuses_the_folders_landmarks(folders, tmp_path):
    cfg = small_config("cfee_best_landmarks", tmp_path / "lm.yaml", fewshot={"shots": [1]})
    res = run(cfg, folders, tmp_path / "out")
    basic = next(r for r in res["rows"] if r["kind"] == "basic")
    assert basic["geometry"]["scheme"] == "cfee78" and basic["geometry"]["faces_without_landmarks"]["test"] == 0
    assert "kdpsmr" in res["summary"]
