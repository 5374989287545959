"""Text files in Windows encodings, unknown class names and impossible thread counts, as a new user gives
them: one line and exit 2 (configs, class names), or read with a warning naming the file (data CSVs)."""

from __future__ import annotations

import logging

import pytest

from compound_fer import cli, taxonomy
from compound_fer.errors import CompoundFERError


def one_line_error(capsys, *names) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in names:
        assert n in err, (n, err)
    return err


def test_a_cp1252_config_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "mine.yaml"
    cfg.write_bytes("name: mine\n# réglages de Zoé\nseeds: [0]\n".encode("cp1252"))
    assert cli.main(["run", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(cfg), "not UTF-8 text (byte 0xe9, 'é' in Windows-1252, on line 2); save the file "
                                     "as UTF-8")
    assert not (tmp_path / "out" / "rows").exists()


def test_a_utf8_config_with_a_bom_reads(tmp_path):
    from compound_fer.config import load_config

    cfg = tmp_path / "bom.yaml"
    cfg.write_bytes("\ufeffname: bom  # Zoé\nseeds: [0]\n".encode("utf-8"))
    assert load_config(cfg).name == "bom"


def test_cp1252_subjects_landmarks_and_aus_files_read_with_a_warning(tmp_path, caplog):
    from compound_fer.data.annotations import read_au_file
    from compound_fer.data.folder import read_subjects

    (tmp_path / "subjects.csv").write_bytes("file,subject\nhappy/é.png,Zoé\n".encode("cp1252"))
    (tmp_path / "aus.csv").write_bytes("file,AU12\nhappy/é.png,c\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        assert read_subjects(tmp_path / "subjects.csv", tmp_path) == {"happy/é.png": 0, "é.png": 0}
        assert set(read_au_file(tmp_path / "aus.csv")) == {"happy/é.png"}
    assert f"{tmp_path / 'subjects.csv'}: not UTF-8 text; read as cp1252" in caplog.text
    assert f"{tmp_path / 'aus.csv'}: not UTF-8 text; read as cp1252" in caplog.text


def test_synth_with_an_unknown_class_lists_the_valid_names(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "s"), "--classes", "happy,joyful"]) == 2
    one_line_error(capsys, "--classes: unknown category 'joyful'; expected one of: Neutral, Happy", "Sadly disgusted")
    assert not (tmp_path / "s").exists()
    assert cli.main(["synth", "--out", str(tmp_path / "s"), "--classes", " , "]) == 2
    one_line_error(capsys, "--classes", "name at least one category")


def test_synth_draws_only_the_classes_asked_for(tmp_path):
    import csv

    assert cli.main(["synth", "--out", str(tmp_path), "--identities", "1", "--grid-size", "48", "--images", "1",
                     "--classes", "happy, Sadly Angry,happy"]) == 0
    assert (tmp_path / "synthetic_grid.png").is_file()
    with open(tmp_path / "images.csv") as f:
        assert sorted(r["category"] for r in csv.DictReader(f)) == ["Happy", "Sadly angry"]


def test_an_unknown_category_anywhere_is_a_user_error_not_a_traceback():
    with pytest.raises(CompoundFERError, match="unknown category 'joyful'; expected one of"):
        taxonomy.by_name("joyful")
    with pytest.raises(KeyError):  # still a KeyError for code that looks names up
        taxonomy.by_name("joyful")
