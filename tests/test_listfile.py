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
    p.write_text("file,class\na.jpg,happy\n")  # other common column names are read
    assert [(r.path, r.category) for r in listfile.read_csv_list(p)] == [("a.jpg", "Happy")]
    p.write_text("id,score\n7,0.5\n")
    with pytest.raises(DataError, match=r"labels\.csv: cannot tell which column holds the image file and which "
                                         r"its label \(line 1: 'id,score'\); name them in a header "
                                         r"\(path/file/filename/image"):
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


# ------------------------------------------------------------------ list files in the shapes people have
def images(root, names):
    from PIL import Image

    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 48), (10 * i, 80, 160)).save(root / name)


@pytest.mark.parametrize("text, encoding", [
    ("filename,emotion\ncafé.jpg,happy\nb.jpg,Sadly Angry\n", "utf-8"),  # other column names
    ("café.jpg,happy\nb.jpg,Sadly Angry\n", "utf-8"),  # no header
    ("Image;Expression\ncafé.jpg;happy\nb.jpg;Sadly Angry\n", "cp1252"),  # ';' and Windows text
    ("path\tlabel\tsubject\ncafé.jpg\thappy\tann\nb.jpg\tSadly Angry\tbob\n", "latin-1"),  # tabs
    ("\ufeffFile,Label\r\ncafé.jpg,happy\r\nb.jpg,Sadly Angry\r\n", "utf-8"),  # BOM, CRLF
    ("label,file\nhappy,café.jpg\nSadly Angry,b.jpg\n", "utf-8"),  # columns the other way round
    ("café.jpg happy\nb.jpg sadly_angry\n", "utf-8"),  # split by spaces
])
def test_list_files_in_the_shapes_people_have(tmp_path, caplog, capsys, text, encoding):
    from compound_fer import cli
    from compound_fer.data.load import scan

    images(tmp_path, ["café.jpg", "b.jpg"])
    (tmp_path / "labels.csv").write_bytes(text.encode(encoding))
    with caplog.at_level(logging.WARNING):
        index = scan(tmp_path)
    assert index.layout == "list" and index.category_counts() == {"Happy": 1, "Sadly angry": 1}
    assert [f.rsplit("/", 1)[-1] for f in index.files] == ["café.jpg", "b.jpg"] and not index.problems
    assert ("not UTF-8 text; read as cp1252" in caplog.text) == (encoding != "utf-8")
    assert index.subjects_known == ("subject" in text)
    assert cli.main(["data-info", str(tmp_path)]) == 0
    assert "images: 2" in capsys.readouterr().out


def test_bare_file_names_are_found_under_the_folder_like_the_fer2013_pool(tmp_path):
    from compound_fer.data.load import scan

    images(tmp_path, ["images/00000.jpg", "images/00001.jpg", "a/x.jpg", "b/x.jpg"])
    (tmp_path / "labels.csv").write_text("file,label\n00000.jpg,surprise\n00001.jpg,happy\nx.jpg,sad\n")
    index = scan(tmp_path)
    assert index.files[:2] == (str(tmp_path / "images" / "00000.jpg"), str(tmp_path / "images" / "00001.jpg"))
    assert [p.reason for p in index.problems] == [
        "listed in labels.csv, line 4 but more than one image has that name: give its path from the data folder"]


def test_no_layout_found_names_all_three(tmp_path, capsys):
    from compound_fer import cli

    images(tmp_path, ["loose.jpg"])
    (tmp_path / "train.csv").write_text("filename,emotion\nloose.jpg,happy\n")
    assert cli.main(["data-info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for layout in ("the CFEE layout", "class folders ROOT/<class name>/*.jpg", "a list file ROOT/labels.csv",
                   "if train.csv is the list, name it labels.csv"):
        assert layout in err


def test_fer2013_pool_reads_8000_faces_over_7_classes(fer_pool_root):
    from compound_fer.data.load import scan

    index = scan(fer_pool_root)
    assert index.layout == "list" and len(index.files) == 8000 and len(index.category_counts()) == 7
    assert not index.problems
