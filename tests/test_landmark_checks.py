"""Landmark files that parse but are wrong: x/y swapped, left/right swapped, interleaved x/y pairs, rows
for missing images. A few bad rows skip their images (file and line named, how many said); a file of
mostly bad rows is refused naming the likely mistake; data-info lists them instead of 'no problems'."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from landmark_shapes import cfee_points
from PIL import Image

from compound_fer import cli
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.folder import read_folder
from compound_fer.data.landmark_checks import face_problem
from compound_fer.data.schemes import CFEE78
from compound_fer.errors import DataError

CLASSES = ("happy", "sad")


def face_at(i: int) -> np.ndarray:
    """A CFEE cartoon face in a 240x180 image, a little different per file."""
    return cfee_points() * (0.8 + 0.05 * i) + (120 + 2 * i, 90 + i)


def swap_xy(p):
    return p[:, ::-1]


def swap_left_right(p):
    return p[list(CFEE78.flip)]


def interleave(p):
    """What the reader sees when a row is written x0,y0,x1,y1,... under an x0..x77,y0..y77 header."""
    v = p.reshape(-1)
    return np.stack([v[:78], v[78:]], 1)


def folder(root, rows_edit=None, n=3, extra_rows=None) -> list[str]:
    """Class folders of 240x180 images with a landmarks.csv; ``rows_edit(name, points)`` spoils rows."""
    names, lines = [], []
    for c, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for j in range(n):
            i = c * n + j
            name = f"{cls}/{j}.png"
            Image.new("RGB", (240, 180), (40 + 20 * i, 90, 120)).save(root / name)
            p = face_at(i)
            p = rows_edit(name, p) if rows_edit else p
            names.append(name)
            lines.append(",".join([name] + [f"{v:.2f}" for v in p[:, 0]] + [f"{v:.2f}" for v in p[:, 1]]))
    for name, p in (extra_rows or {}).items():
        lines.append(",".join([name] + [f"{v:.2f}" for v in p[:, 0]] + [f"{v:.2f}" for v in p[:, 1]]))
    head = ",".join(["file"] + [f"x{i}" for i in range(78)] + [f"y{i}" for i in range(78)])
    (root / "landmarks.csv").write_text("\n".join([head, *lines]) + "\n")
    return names


def read(root):
    return read_folder(root, crop=CropOptions(image_size=32, detector=None), cache=False, progress=False)


@pytest.mark.parametrize("mistake, says", [
    (swap_xy, "the eyes are not side by side"),
    (swap_left_right, "the image-left eye (x 1"),
    (interleave, ""),
    (lambda p: p * (1, -1) + (0, 180), "the mouth (y"),  # upside down
    (lambda p: (p - p.mean(0)) * (1, 0.2) + p.mean(0), "the mouth is 0.22 inter-ocular distances below the eyes"),
])
def test_each_face_check(mistake, says):
    good = face_at(0)
    assert face_problem(good, scheme="cfee78", size=(240, 180)) is None
    why = face_problem(mistake(good), scheme="cfee78", size=(240, 180))
    assert why and says in why


def test_a_few_bad_rows_skip_their_images_named_by_file_and_line(tmp_path, caplog):
    bad = {"happy/1.png": swap_left_right, "sad/2.png": swap_xy}
    folder(tmp_path, lambda name, p: bad[name](p) if name in bad else p)
    with caplog.at_level(logging.WARNING):
        fs = read(tmp_path)
    assert len(fs) == 4 and not any(s.endswith(tuple(bad)) for s in fs.sources)
    why = {s.file.rsplit("/", 2)[-2] + "/" + s.file.rsplit("/", 1)[-1]: s.reason for s in fs.meta["skipped"]}
    assert set(why) == set(bad)
    assert "landmarks.csv, line 3 (1.png): the image-left eye" in why["happy/1.png"]
    assert "left and right points look swapped" in why["happy/1.png"]
    assert "landmarks.csv, line 7 (2.png): the eyes are not side by side" in why["sad/2.png"]
    assert "the x and y columns look swapped" in why["sad/2.png"]
    assert "2 of 6 landmark row(s) fail the sanity checks; their images are skipped" in caplog.text


@pytest.mark.parametrize("mistake, named", [
    (swap_xy, "the x and y columns look swapped (undone, 6 of 6 bad rows pass)"),
    (swap_left_right, "left and right points look swapped"),
    (interleave, "the coordinates look interleaved (x0,y0,x1,y1,... under an x0..x77,y0..y77 header)"),
])
def test_a_file_of_mostly_bad_rows_is_refused_naming_the_mistake(tmp_path, capsys, mistake, named):
    folder(tmp_path, lambda name, p: mistake(p))
    with pytest.raises(DataError, match="6 of 6 landmark rows fail the sanity checks") as err:
        read(tmp_path)
    assert named in str(err.value)
    assert cli.main(["data-info", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and named in out.err and len(out.err.strip().splitlines()) == 1
    assert "no problems found" not in out.out


def test_rows_for_images_that_do_not_exist_are_named_and_ignored(tmp_path, caplog):
    folder(tmp_path, extra_rows={"happy/9.png": face_at(9), "gone.jpg": face_at(1)})
    with caplog.at_level(logging.WARNING):
        fs = read(tmp_path)
    assert len(fs) == 6 and fs.landmarks_valid.all()
    assert "2 row(s) name no image of" in caplog.text and "line 8 (happy/9.png), line 9 (gone.jpg)" in caplog.text


def test_data_info_lists_bad_and_unused_rows_instead_of_no_problems(tmp_path, capsys):
    folder(tmp_path, lambda name, p: swap_xy(p) if name == "sad/0.png" else p, extra_rows={"x.png": face_at(2)})
    assert cli.main(["data-info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" not in out
    assert "landmark rows failing the sanity checks (their images are skipped when reading): 1" in out
    assert "landmarks.csv, line 5 (0.png): the eyes are not side by side" in out
    assert "landmark rows naming no image (ignored): 1\n    line 8 (x.png)" in out
    assert cli.main(["data-info", "--json", str(tmp_path)]) == 0
    import json

    info = json.loads(capsys.readouterr().out)["landmark_rows"]
    assert info["rows"] == 7 and len(info["bad_rows"]) == 1 and info["unused_rows"] == ["line 8 (x.png)"]


def test_clean_landmarks_say_no_problems(tmp_path, capsys):
    folder(tmp_path)
    assert cli.main(["data-info", str(tmp_path)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_real_cfee_landmarks_pass_the_checks(cfee_root):
    from compound_fer.data.landmark_checks import audit
    from compound_fer.data.load import scan

    info = audit(scan(cfee_root))
    assert info["rows"] == 2005 and info["bad_rows"] == [] and info["unused_rows"] == []
