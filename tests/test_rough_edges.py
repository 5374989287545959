"""Rough edges a new user met (issue 30): an empty --seeds value is refused, a .gif in a folder is read,
the data folder a packaged config found is logged with its origin, the method names answer without torch,
Grad-CAM region shares of zero CAMs do not warn, GDumb/Replay steps do not warn about avalanche's
deprecated update, and `synth --images` folders carry their subject ids back into the folder reader."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from compound_fer import cli
from compound_fer.commands._common import PACKAGED, PROJECT_ROOT, parse_int_list, resolve_data_path
from compound_fer.errors import ConfigError


@pytest.mark.parametrize("text", ["0,,1", "0,1,", ",0", " , 2"])
def test_an_empty_seed_between_commas_is_refused(text):
    with pytest.raises(ConfigError, match="empty value"):
        parse_int_list(text, "--seeds")
    assert parse_int_list(" 0, 1 ", "--seeds") == [0, 1]


def test_seeds_with_an_empty_value_exit_2_naming_the_option(capsys):
    assert cli.main(["run", "--config", "demo", "--seeds", "0,,1"]) == 2
    err = capsys.readouterr().err
    assert "--seeds '0,,1'" in err and "empty value" in err


def test_a_gif_inside_a_folder_is_read_like_one_named_alone(tmp_path):
    from compound_fer.data.folder import scan_folder
    from compound_fer.data.images import read_image

    for cat, name in (("happy", "a.gif"), ("sad", "b.png")):
        (tmp_path / cat).mkdir()
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / cat / name)
    index = scan_folder(tmp_path)
    assert sorted(p.rsplit("/", 1)[-1] for p in index.files) == ["a.gif", "b.png"]
    img, _ = read_image(tmp_path / "happy" / "a.gif")
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8


def test_the_data_folder_found_through_the_project_root_is_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # another folder: only the project-root rule finds it
    with caplog.at_level(logging.INFO, logger="compound_fer.commands._common"):
        found = resolve_data_path("compound_fer", key="data.path", config_file=PACKAGED / "cfee_cpu.yaml")
    assert found == str(PROJECT_ROOT / "compound_fer")
    line = " ".join(r.getMessage() for r in caplog.records)
    assert f"using {PROJECT_ROOT / 'compound_fer'}" in line and "relative to the project root" in line
    assert "--data PATH" in line


def test_the_method_table_is_the_registry():
    from compound_fer.commands._methods import METHODS
    from compound_fer.training.registry import available

    assert METHODS == {name: e.summary for name, e in available().items()}


PROBE = """
import json, sys
from compound_fer import cli
out = []
for argv in json.loads(sys.argv[1]):
    out.append([cli.main(argv), "torch" in sys.modules])
print(json.dumps(out))
"""


def test_list_methods_and_an_unknown_method_answer_without_torch(tmp_path):
    cases = [["run", "--list-methods"], ["run", "--config", "demo", "--methods", "naive,nosuch"]]
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[0, False], [2, False]]
    assert "kdpsmr " in out.stdout and "The paper" in out.stdout
    assert "--methods: unknown method 'nosuch'; available: ewc, gdumb" in out.stderr


def test_region_shares_of_zero_cams_are_none_without_a_warning():
    from compound_fer import taxonomy
    from compound_fer.explain.regions import region_attention

    n, size = 4, 8
    cams = np.random.default_rng(0).random((n, size, size))
    cams[2:] = 0.0  # the second class's CAMs are all zero: no mass to share
    labels = [taxonomy.label_of("happy")] * 2 + [taxonomy.label_of("sad")] * 2
    masks = np.zeros((n, len(taxonomy.REGIONS), size, size), bool)
    masks[:, :, 2:6, 2:6] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = region_attention(cams, labels, masks)
    sad = report["per_class"][taxonomy.name_of(labels[-1])]
    assert sad["face_share"] is None and sad["expected_share"] is None
    assert set(sad["region_shares"].values()) == {None}
    assert 0 < report["per_class"][taxonomy.name_of(labels[0])]["face_share"] < 1


@pytest.mark.parametrize("name", ["replay", "gdumb", "herding"])
def test_replay_and_gdumb_steps_do_not_warn_about_the_deprecated_update(name):
    import torch
    from avalanche.benchmarks import nc_benchmark

    from compound_fer.training.registry import make_strategy

    x = torch.randn(24, 8)
    y = torch.arange(4).repeat_interleave(6)
    ds = torch.utils.data.TensorDataset(x, y)
    ds.targets = y.tolist()
    stream = nc_benchmark(ds, ds, n_experiences=2, task_labels=False, seed=0, fixed_class_order=[0, 1, 2, 3])
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    model.features = lambda t: t  # herding selects on model features
    strategy = make_strategy(name, model=model, train_epochs=1, train_mb_size=8, mem_size=8, num_classes_total=4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for exp in stream.train_stream:
            strategy.train(exp)
    assert [str(w.message) for w in seen if "deprecated function update" in str(w.message)] == []
    buffer = next(p.storage_policy for p in strategy.plugins if hasattr(p, "storage_policy"))
    assert len(buffer.buffer) > 0  # the buffer was still filled (post_adapt ran)


def test_synth_images_carry_their_subjects_into_the_folder_reader(tmp_path):
    from compound_fer.commands.synth import save_images
    from compound_fer.data.folder import scan_folder

    save_images(tmp_path, n=3, size=32, classes=["happy", "sad"])
    with open(tmp_path / "images.csv", newline="") as f:
        written = {r["path"]: int(r["subject"]) for r in csv.DictReader(f)}
    index = scan_folder(tmp_path)
    assert index.subjects_known
    read = {str(p).replace(str(tmp_path) + "/", ""): s for p, s in zip(index.files, index.subjects)}
    assert read == written and len(set(read.values())) == 3
