"""Cases a new user met (issue 21): data-info tells how faces are placed, --limit refuses a negative count,
a link loop lists each file once, a key given twice in a config is refused, a single method name is a list,
KDPSMR from Python checks memory_fraction as the config does, a head that cannot grow is named, and the
Grad-CAM subject figure of data without subject ids shows one face per class."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from compound_fer import cli, taxonomy
from compound_fer.commands.data_info import format_text
from compound_fer.config import load_config, parse_config
from compound_fer.data.load import scan
from compound_fer.errors import ConfigError, ModelError


def _images(folder, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")


# ---------------------------------------------------------------------------------------------- data-info
def test_data_info_names_the_detector_that_places_the_faces(tmp_path, capsys, monkeypatch):
    _images(tmp_path / "Happy", 2)
    assert cli.main(["data-info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "landmarks:" in x)
    if importlib.util.find_spec("mediapipe") is not None:  # installed by `make install`
        assert "the mediapipe landmark detector places each face" in line and "Haar cascades, no landmarks" in line
    else:
        assert "none: Haar cascades" in line
    info = {**scan(tmp_path).summary(), "landmark_detector": None}  # mediapipe not installed
    assert "none: Haar cascades (the mediapipe landmark detector is not installed" in format_text(info)
    (tmp_path / "landmarks.csv").write_text("file\n")
    info = {**scan(tmp_path).summary(), "landmark_detector": "mediapipe"}
    assert "landmarks.csv (faces without a row: the mediapipe landmark detector)" in format_text(info)


@pytest.mark.parametrize("value, said", [("-1", "give 0 or more"), ("many", "'many' is not a whole number")])
def test_data_info_refuses_a_negative_or_non_numeric_limit(tmp_path, capsys, value, said):
    _images(tmp_path / "Happy", 2)
    with pytest.raises(SystemExit) as exc:
        cli.main(["data-info", str(tmp_path), "--limit", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--limit" in err and said in err


def test_data_info_limit_zero_prints_counts_only(tmp_path, capsys):
    _images(tmp_path / "Happy", 2)
    (tmp_path / "stray.png").write_bytes((tmp_path / "Happy" / "0.png").read_bytes())
    assert cli.main(["data-info", str(tmp_path), "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "unmatched image files (ignored): 1" in out and "... and 1 more" in out and "more of" not in out


def test_a_link_loop_lists_each_file_once(tmp_path):
    _images(tmp_path / "Happy", 3)
    (tmp_path / "Happy" / "loop").symlink_to(tmp_path / "Happy")  # Happy/loop/loop/... without end
    (tmp_path / "Happy" / "again").symlink_to(tmp_path / "Happy")
    _images(tmp_path / "elsewhere", 2)
    (tmp_path / "Happy" / "more").symlink_to(tmp_path / "elsewhere")  # a linked folder is still read, once
    index = scan(tmp_path)
    assert index.category_counts() == {"Happy": 5}
    from compound_fer.fingerprint import data_digest

    assert data_digest(tmp_path)["files"] == 5


# ---------------------------------------------------------------------------------------------- configs
def test_a_key_given_twice_is_refused_naming_key_file_and_lines(tmp_path):
    cfg = tmp_path / "twice.yaml"
    cfg.write_text("name: twice\nbasic:\n  epochs: 2\n  lr: 0.01\n  epochs: 30\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'epochs' is given twice in one mapping \(lines 3 and "
                                          r"5\).*delete one"):
        load_config(cfg)
    cfg.write_text("name: once\nbasic: {epochs: 2}\ncontinual: {epochs: 2}\n")  # one key per mapping: fine
    assert load_config(cfg).basic.epochs == 2


def test_packaged_configs_have_no_key_twice():
    from compound_fer.commands._common import PACKAGED

    for path in PACKAGED.glob("*.yaml"):
        load_config(path)


def test_one_method_or_compound_may_be_given_as_a_string(tmp_path):
    cfg = tmp_path / "one.yaml"
    cfg.write_text("continual:\n  methods: KDPSMR\nfewshot:\n  compounds: awed\n")
    loaded = load_config(cfg)
    assert loaded.continual.methods == ("kdpsmr",) and loaded.fewshot.compounds == ("Awed",)
    assert parse_config({"continual": {"methods": "naive, kdpsmr"}}).continual.methods == ("naive", "kdpsmr")


# ---------------------------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("fraction", [1.5, -0.1])
def test_kdpsmr_checks_memory_fraction_as_the_config_does(fraction):
    from compound_fer.training.strategies import KDPSMR

    with pytest.raises(ConfigError, match=f"memory_fraction must be between 0 and 1.*{fraction}"):
        KDPSMR(model=nn.Linear(4, 2), memory_fraction=fraction)
    with pytest.raises(ConfigError):
        parse_config({"continual": {"memory_fraction": fraction}})
    KDPSMR(model=nn.Linear(4, 2), memory_fraction=1.0)  # the bounds themselves are allowed, as in YAML
    KDPSMR(model=nn.Linear(4, 2), memory_fraction=0.0)


def test_a_head_that_does_not_grow_is_named_before_any_update():
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training.plugins import EvaluationPlugin
    from torch.utils.data import TensorDataset

    from compound_fer.training.strategies import KDPSMR

    torch.manual_seed(0)
    x, y = torch.randn(90, 8), torch.arange(9).repeat_interleave(10)
    bench = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=4, task_labels=False, shuffle=False,
                         seed=0, fixed_class_order=list(range(9)), per_exp_classes={0: 6})
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6))
    strategy = KDPSMR(model=model, train_mb_size=16, train_epochs=1, evaluator=EvaluationPlugin(loggers=[]))
    strategy.train(bench.train_stream[0])  # 6 classes, 6 units: fine
    before = model[2].weight.detach().clone()
    with pytest.raises(ModelError, match=r"output layer has 6 units for 7 classes.*must grow.*build_model.*"
                                         r"IncrementalClassifier"):
        strategy.train(bench.train_stream[1])
    assert torch.equal(before, model[2].weight)  # refused before the first update


# ---------------------------------------------------------------------------------------------- Grad-CAM
def test_subject_figure_of_data_without_subject_ids_shows_one_face_per_class():
    from compound_fer.data.synthetic import generate
    from compound_fer.explain.pipeline import _subject_faces

    names = ["Happy", "Sad", "Awed"]
    faces = generate(categories=names, n_subjects=3, per_subject=1, image_size=32, masks=False)
    faces = replace(faces, subjects=torch.arange(len(faces)) + 1_000_000,  # a labelled folder: one id per file
                    meta={"subjects_known": False})
    cc = SimpleNamespace(labels=faces.labels.numpy(), subjects=faces.subjects.numpy(),
                         cams=np.zeros((len(faces), 4, 4), np.float32))
    images, cams, who = _subject_faces(cc, faces, None)
    assert sorted(images) == sorted(taxonomy.label_of(n) for n in names) == sorted(cams)
    assert "one face per class" in who and "no subject ids" in who
    images, _, who = _subject_faces(cc, faces, 1_000_001)  # a subject asked for: that one, as before
    assert len(images) == 1 and who == "subject 1000001"
    known = replace(faces, subjects=faces.subjects % 3, meta={})
    cc.subjects = known.subjects.numpy()
    images, _, who = _subject_faces(cc, known, None)
    assert who.startswith("subject ") and len(images) >= 1
