"""The CFEE reader on the research subset (skips when absent): counts, labels, AU codes, landmark crops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from compound_fer import cli, taxonomy
from compound_fer.data.cfee import read_aus, read_cfee, read_summary, scan_cfee
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.load import load_faces


@pytest.fixture()
def cfee_small(cfee_root, tmp_path) -> Path:
    """40 photos (2 per category for 20 categories, subject 110's sad photo included), symlinked into
    the nested layout of the official release, with the workbook and landmarks."""
    photos = sorted((cfee_root / "Images").glob("*.jpg"))
    pick, per_cat = [], {}
    for p in photos:
        cid = p.name[:2]
        if per_cat.get(cid, 0) < 2 and len(per_cat) <= 20:
            per_cat[cid] = per_cat.get(cid, 0) + 1
            pick.append(p)
    must = cfee_root / "Images" / "03_110_0227.jpg"
    pick = pick[:40] if must in pick else pick[:39] + [must]
    nested = tmp_path / "CFEE_Database_230" / "group1" / "Images_a"
    nested.mkdir(parents=True)
    for p in pick:
        os.symlink(p, nested / p.name)
    for name in ("AU_annotation_all_subjects.xls", "landmarks.csv"):
        os.symlink(cfee_root / name, tmp_path / name)
    return tmp_path


def test_scan_counts_the_subset(cfee_root):
    idx = scan_cfee(cfee_root)
    info = idx.summary()
    assert (info["images"], info["categories"], info["subjects"]) == (2005, 22, 184)
    assert info["images_per_category"]["Sad"] == 110 and info["images_per_category"]["Sadly surprised"] == 77
    # the subset holds one byte-identical pair under two labels: found, the first kept
    assert [[Path(f).name for f in g] for g in info["duplicates"]] == [["11_212_1068.jpg", "12_212_1174.jpg"]]
    assert info["usable"] == 2004 and not info["problems"]


def test_summary_sheet_and_au_codes(cfee_root):
    xls = cfee_root / "AU_annotation_all_subjects.xls"
    names = read_summary(xls)
    assert names[3].name == "Sad"  # the sheet says 'Sad ' (stray space)
    assert {cid: c.cfee_id for cid, c in names.items()} == {c.cfee_id: c.cfee_id for c in taxonomy.CATEGORIES}
    aus = read_aus(xls)
    # Sad sheet, subject 110: AU1 a, AU6 b, AU15 b, AU17 b
    vec = dict(zip(taxonomy.ACTION_UNITS, aus[(110, "Sad")].tolist()))
    assert vec[1] == pytest.approx(0.2) and vec[6] == pytest.approx(0.4)
    assert vec[15] == pytest.approx(0.4) and vec[17] == pytest.approx(0.4)
    assert vec[4] == 0 and vec[12] == 0
    assert len({k[0] for k in aus}) == 230  # the workbook codes all CFEE subjects


def test_read_small_subset(cfee_small, tmp_path):
    fs = load_faces(cfee_small, image_size=64, cache_dir=tmp_path / "cache", progress=False)
    assert len(fs) == 40 and fs.meta["source"] == "cfee" and fs.meta["methods"] == {"landmarks": 40}
    for src, label, subject in zip(fs.sources, fs.labels.tolist(), fs.subjects.tolist()):
        name = Path(src).name
        assert taxonomy.CATEGORIES[label].cfee_id == int(name[:2]) and subject == int(name[3:6])
    i = [Path(s).name for s in fs.sources].index("03_110_0227.jpg")
    row = dict(zip(taxonomy.ACTION_UNITS, fs.aus[i].tolist()))
    assert row[1] == pytest.approx(0.2) and row[15] == pytest.approx(0.4)
    neutral = fs.labels == taxonomy.label_of("Neutral")
    assert neutral.any() and (fs.aus[neutral] == 0).all()
    # landmark regions: mean row of each region ordered top to bottom, for every image
    ys = np.arange(64)[None, None, :, None]
    m = fs.region_masks.numpy()
    mean_y = (m * ys).sum((2, 3)) / np.maximum(m.sum((2, 3)), 1)
    assert (np.diff(mean_y, axis=1) > 0).all() and (m.sum((2, 3)) > 0).all()
    # second run: from the cache, identical
    again = load_faces(cfee_small, image_size=64, cache_dir=tmp_path / "cache", progress=False)
    assert again.meta["cache_hits"] == 40 and np.array_equal(again.images.numpy(), fs.images.numpy())


def test_include_and_haar_method(cfee_small):
    fs = read_cfee(cfee_small, crop=CropOptions(image_size=48, method="haar", detector="mediapipe"),
                   cache=False, progress=False,
                   include=["Happy", "happily surprised"])
    assert set(fs.class_names) == {"Happy", "Happily surprised"}
    assert set(fs.meta["methods"]) <= {"haar", "haar-noeyes"} and len(fs) == 4
    assert fs.meta["region_masks"] == "landmarks"  # Haar crop, masks still drawn from the landmarks


def test_data_info_cli(cfee_root, capsys):
    assert cli.main(["data-info", str(cfee_root)]) == 0
    out = capsys.readouterr().out
    assert "images: 2,005" in out and "categories: 22" in out and "subjects: 184" in out
    assert "12_212_1174.jpg" in out  # the duplicate is listed
    assert cli.main(["data-info", "--json", str(cfee_root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["images"], info["categories"], info["subjects"]) == (2005, 22, 184)
    assert sum(info["per_subject"].values()) == 2005
