"""List-file layouts (labels.csv, RAF-DB compound's list_patition_label.txt) and unknown-label reports."""

from __future__ import annotations

import logging

import pytest

from compound_fer import taxonomy
from compound_fer.data import listfile
from compound_fer.errors import DataError


def test_raf_compound_ids_map_onto_the_taxonomy():
    names = {taxonomy.by_name(n).name for n in listfile.RAF_COMPOUND.values()}
    assert len(names) == 11 and all(taxonomy.by_name(n).kind == "compound" for n in names)
    assert listfile.RAF_COMPOUND[1] == "Happily surprised" and listfile.RAF_COMPOUND[11] == "Disgustedly surprised"
    assert set(names) <= set(taxonomy.compound_names())


def test_csv_list_rows_subjects_and_errors(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("path,label,subject\na/1.jpg,happiness,anna\nb/2.jpg,Sadly Angry,bob\nc/3.jpg,contempt,anna\n")
    rows = listfile.read_csv_list(p)
    assert [r.category for r in rows] == ["Happy", "Sadly angry", ""]
    assert listfile.subject_ids(rows) == ([0, 1, 0], True)
    assert listfile.unknown_counts(rows) == {"contempt": 1}
    assert listfile.find_list(tmp_path) == p
    p.write_text("path,label\na.jpg,happy\nb.jpg\n")
    with pytest.raises(DataError, match=r"labels\.csv, line 3: expected 2 non-empty cells"):
        listfile.read_csv_list(p)
    p.write_text("file,class\na.jpg,happy\n")
    with pytest.raises(DataError, match="line 1: expected the header 'path,label'"):
        listfile.read_csv_list(p)


def test_raf_list_and_image_lookup(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    lst = tmp_path / "EmoLabel" / listfile.RAF_LIST
    lst.write_text("train_0001.jpg 1\ntest_0002.jpg 11\ntrain_0003.jpg 12\n")
    assert listfile.find_list(tmp_path) == lst
    rows = listfile.read_raf_list(lst)
    assert [r.category for r in rows] == ["Happily surprised", "Disgustedly surprised", ""]
    assert listfile.unknown_counts(rows) == {"RAF-DB compound id 12": 1}
    assert listfile.subject_ids(rows) == ([1_000_000, 1_000_001, 1_000_002], False)
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    (tmp_path / "Image" / "aligned" / "train_0001_aligned.jpg").write_bytes(b"x")
    assert listfile.raf_image(tmp_path, "train_0001.jpg", {}).name == "train_0001_aligned.jpg"
    assert listfile.raf_image(tmp_path, "test_0002.jpg", {}) is None
    lst.write_text("train_0001.jpg happy\n")
    with pytest.raises(DataError, match="line 1: expected '<image name> <compound id 1..11>'"):
        listfile.read_raf_list(lst)


def test_unknown_labels_warn_once_each_or_refuse(caplog):
    with caplog.at_level(logging.WARNING):
        listfile.report_unknown({"contempt": 54, "pain": 2}, strict=False, where="ROOT", what="class folder")
    assert "contempt: 54 images skipped, not a CFEE category" in caplog.text
    assert "pain: 2 images skipped" in caplog.text
    with pytest.raises(DataError, match=r"'contempt' \(54 images\).*strict_classes"):
        listfile.report_unknown({"contempt": 54}, strict=True, where="ROOT")
