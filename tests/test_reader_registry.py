"""The reader table (data/load.READERS): every reader takes one CropOptions, and load_faces' crop keywords
are only a shorthand for it (same crops, same face-cache file)."""

from __future__ import annotations

import inspect
from dataclasses import fields

from compound_fer import taxonomy
from compound_fer.data.crop_options import READER_CROP, CropOptions
from compound_fer.data.load import READERS, load_faces


def test_every_reader_takes_one_crop_options_and_no_crop_keyword():
    crop_keys = {f.name for f in fields(CropOptions)}
    for reader in READERS:
        params = inspect.signature(reader.read).parameters
        assert params["crop"].default is READER_CROP, reader.name
        assert not crop_keys & set(params), f"{reader.name} still takes {sorted(crop_keys & set(params))}"


def test_load_faces_keywords_are_a_shorthand_for_crop_with_the_same_cache_file(tmp_path):
    from PIL import Image

    from compound_fer.data.synthetic import generate

    faces = generate(categories=["Happy", "Sad"], n_subjects=2, per_subject=1, image_size=48, seed=0)
    data = tmp_path / "faces"
    for i, label in enumerate(faces.labels):
        folder = data / taxonomy.CATEGORIES[int(label)].name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    kw = {"cache_dir": tmp_path / "cache", "progress": False}
    short = load_faces(data, image_size=32, method="haar", detector=None, **kw)
    given = load_faces(data, crop=CropOptions(image_size=32, method="haar"), **kw)
    assert short.meta["cache_file"] == given.meta["cache_file"] and given.meta["cache_hits"] > 0
    assert (short.images == given.images).all() and short.image_size == 32
