"""Every data check of a run happens before any training (compound_fer.runner.checks): classes per split,
subject ids, a test set apart from training. Through the CLI a failed check is exit 2, one message naming
what is missing, and no model file (the basic phase never started)."""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import yaml
from PIL import Image
from test_external_test import CLASSES, SIZE, TINY, full_frame_landmarks

from compound_fer import cli, taxonomy
from compound_fer.config import parse_config
from compound_fer.data.splits import external_test
from compound_fer.data.synthetic import generate
from compound_fer.errors import ConfigError, DataError
from compound_fer.runner.checks import check_splits, needs_of

CFG = parse_config(TINY)  # strict split, kdpsmr continual, no few-shot phase


def synthetic(classes=CLASSES, subjects: int = 8, offset: int = 100):
    return generate(categories=classes, n_subjects=subjects, per_subject=1, image_size=SIZE, seed=0,
                    subject_offset=offset, masks=False)


def drop(faces, name: str, keep_subjects: int):
    """``faces`` without the images of ``name`` but those of its first ``keep_subjects`` subjects."""
    first = sorted(set(faces.subjects.tolist()))[:keep_subjects]
    bad = (faces.labels == taxonomy.label_of(name)).numpy() & ~np.isin(faces.subjects.numpy(), first)
    return faces.subset(np.flatnonzero(~bad))


def write_cfee(root, faces) -> None:
    """``faces`` as CFEE-named JPEGs (``Images/EE_SSS_NNNN.jpg``) with a landmarks.csv framing each image."""
    (root / "Images").mkdir(parents=True)
    lm = full_frame_landmarks(SIZE)
    lines = [",".join(["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)])]
    for i, (img, label, subject) in enumerate(zip(faces.images, faces.labels, faces.subjects)):
        name = f"{taxonomy.CATEGORIES[int(label)].cfee_id:02d}_{int(subject):03d}_{i:04d}.jpg"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "Images" / name, quality=95)
        lines.append(",".join([name] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]))
    (root / "landmarks.csv").write_text("\n".join(lines) + "\n")


def write_labelled(root, faces) -> None:
    """``faces`` as labelled class folders ``ROOT/<class>/<n>.jpg`` (no subjects.csv) with a landmarks.csv."""
    lm = full_frame_landmarks(SIZE)
    lines = [",".join(["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)])]
    for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
        d = root / taxonomy.name_of(int(label))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:04d}.jpg", quality=95)
        lines.append(",".join([f"{i:04d}.jpg"] + [f"{v:.2f}" for v in lm[:, 0]] + [f"{v:.2f}" for v in lm[:, 1]]))
    (root / "landmarks.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def cli_run(tmp_path, monkeypatch):
    """Run the CLI on the tiny config; the basic phase must never start. Returns (exit code, stderr)."""
    import compound_fer.runner.protocol as protocol

    def never(*a, **k):
        raise AssertionError("the basic phase started although a data check should have refused the run")

    monkeypatch.setattr(protocol, "_basic_stage", never)
    monkeypatch.setenv("COMPOUND_FER_CACHE", str(tmp_path / "face_cache"))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))

    def run(*argv, capsys):
        rc = cli.main(["run", "--config", str(cfg), "--out", str(tmp_path / "out"), "--no-progress", *map(str, argv)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert not list((tmp_path / "out").glob("models/*")), "a model file was written"
        return rc, err

    return run


def test_one_class_folder_is_refused_before_the_basic_phase(tmp_path, cli_run, capsys):
    write_cfee(tmp_path / "happy", synthetic(["Happy"]))
    rc, err = cli_run("--data", tmp_path / "happy", capsys=capsys)
    assert rc == 2
    assert "no usable image of 20 class(es)" in err and "the basic phase: Sad, Angry" in err
    assert "it holds Happy" in err


def test_basic_classes_only_is_refused_naming_the_continual_phase(tmp_path, cli_run, capsys):
    write_cfee(tmp_path / "basic", synthetic(CLASSES[:6]))
    rc, err = cli_run("--data", tmp_path / "basic", capsys=capsys)
    assert rc == 2
    assert "the continual phase: all 15 compound classes" in err and "continual.methods: []" in err


def test_a_class_of_one_subject_leaves_a_split_without_it(tmp_path, cli_run, capsys):
    write_cfee(tmp_path / "lone", drop(synthetic(), "Awed", keep_subjects=1))
    rc, err = cli_run("--data", tmp_path / "lone", capsys=capsys)
    assert rc == 2
    assert "split of seed 0 leaves" in err and "split without Awed" in err and "Awed 1" in err
    assert "at least two subjects" in err and "--test-data" in err


def test_external_test_folder_without_a_class_is_refused(tmp_path, cli_run, capsys):
    write_cfee(tmp_path / "train", synthetic())
    write_cfee(tmp_path / "test", synthetic([c for c in CLASSES if c != "Sad"], subjects=2, offset=200))
    rc, err = cli_run("--data", tmp_path / "train", "--test-data", tmp_path / "test", capsys=capsys)
    assert rc == 2
    assert "test data" in err and "no usable image of Sad" in err


def test_folder_without_subject_ids_is_refused_in_the_strict_split(tmp_path, cli_run, capsys):
    write_labelled(tmp_path / "folders", synthetic(subjects=4))
    rc, err = cli_run("--data", tmp_path / "folders", capsys=capsys)
    assert rc == 2
    assert "no subject ids" in err and "subjects.csv" in err and "evaluation.mode: reference" in err


def test_test_data_equal_to_data_is_refused_before_loading(tmp_path, cli_run, capsys, monkeypatch):
    import compound_fer.runner.protocol as protocol

    monkeypatch.setattr(protocol, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    write_cfee(tmp_path / "train", synthetic(subjects=2))
    (tmp_path / "link").symlink_to(tmp_path / "train")
    for test in (tmp_path / "train", tmp_path / "link", f"{tmp_path}/train/"):
        rc, err = cli_run("--data", tmp_path / "train", "--test-data", test, capsys=capsys)
        assert rc == 2 and "is the --data folder" in err, err


def test_test_images_that_are_training_images_are_refused(tmp_path, cli_run, capsys):
    write_cfee(tmp_path / "train", synthetic())
    write_cfee(tmp_path / "test", synthetic(subjects=2, offset=200))
    one = sorted((tmp_path / "train" / "Images").glob("*.jpg"))[0]
    copy = sorted((tmp_path / "test" / "Images").glob("*.jpg"))[0]
    shutil.copy(one, copy)  # the same bytes under another name (its landmarks row frames it as well)
    rc, err = cli_run("--data", tmp_path / "train", "--test-data", tmp_path / "test", capsys=capsys)
    assert rc == 2
    assert "1 image(s) are also training images" in err and one.name in err and copy.name in err


# ------------------------------------------------------------------------------------ the function itself
def test_complete_data_passes_every_seed():
    check_splits(CFG.with_overrides(seeds=[0, 1, 2]), synthetic())


def test_reference_folds_of_a_folder_without_subject_ids_warn_in_one_line(caplog):
    faces = replace(synthetic(), meta={"subjects_known": False, "root": "/data/folders"})
    with pytest.raises(DataError, match="no subject ids"):
        check_splits(CFG, faces)
    with caplog.at_level(logging.WARNING):
        check_splits(CFG.with_overrides(evaluation={"mode": "reference", "folds": 4}), faces)
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    assert "reference folds split single images" in caplog.text


def test_external_test_needs_no_subject_ids_and_compares_none():
    train = replace(synthetic(), meta={"subjects_known": False})
    test = replace(synthetic(offset=100), meta={"subjects_known": False})  # ids 100.. in both, by position
    cfg = CFG.with_overrides(data={"test_path": "/elsewhere"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_splits(cfg, train, test_faces=test)
        assert external_test(train, test).shared_subjects == ()


def test_fewshot_shots_need_that_many_training_images():
    cfg = CFG.with_overrides(continual={"methods": []}, fewshot={"enabled": True, "shots": [1, 5],
                                                                   "compounds": ["Awed"]})
    assert needs_of(cfg).train["Awed"] == 5 and "Sadly angry" not in needs_of(cfg).train
    with pytest.raises(DataError, match=r"training split with \d image\(s\) of Awed \(5 needed: the few-shot "
                                        r"phase at fewshot.shots 5\).*--shots"):
        check_splits(cfg, drop(synthetic(), "Awed", keep_subjects=4))
    zero = cfg.with_overrides(fewshot={"shots": [0]})  # the zero-shot row trains on no image of the class
    assert needs_of(zero).train["Awed"] == 0 and "Awed" in needs_of(zero).test


def test_same_folder_by_config_keys_is_a_config_error(tmp_path):
    cfg = CFG.with_overrides(data={"source": "path", "path": str(tmp_path), "test_path": f"{tmp_path}/."})
    with pytest.raises(ConfigError, match="is the training folder"):
        check_splits(cfg, synthetic())
