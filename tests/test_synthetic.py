"""Procedural FACS faces: AU rates, determinism, identities, region masks and learnability."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from compound_fer import taxonomy
from compound_fer.data import synthetic as sy

cv2.setNumThreads(1)


@pytest.mark.parametrize("cat", [c.name for c in taxonomy.CATEGORIES])
def test_au_rates_match_the_cfee_table(cat):
    rng = np.random.default_rng(123)
    m = sy.sample_au_matrix(cat, 10_000, rng)
    got = (m > 0).mean(axis=0)
    c = taxonomy.by_name(cat)
    for j, au in enumerate(taxonomy.ACTION_UNITS):
        want = sy.PROTOTYPE_RATE if au in c.prototypical else c.variants.get(au, 0.0)
        assert abs(got[j] - want) < 0.02, (cat, au, got[j], want)
    active = m[m > 0]
    if len(active):
        assert active.min() >= sy.INTENSITY_RANGE[0] and active.max() <= 1.0


def test_sample_aus_is_the_same_path_and_neutral_has_none():
    assert sy.sample_aus("Neutral", np.random.default_rng(0)) == {}
    d = sy.sample_aus("Surprised", np.random.default_rng(5))
    row = sy.sample_au_matrix("Surprised", 1, np.random.default_rng(5))[0]
    assert d == {au: pytest.approx(float(row[j])) for j, au in enumerate(taxonomy.ACTION_UNITS) if row[j] > 0}
    assert all(0 < v <= 1 for v in d.values())


def test_generate_faceset_fields():
    f = sy.generate(categories=["Happy", "Sad"], n_subjects=3, per_subject=2, seed=7)
    assert f.images.shape == (12, 3, 64, 64) and f.images.dtype == torch.uint8
    assert set(f.labels.tolist()) == {taxonomy.label_of("Happy"), taxonomy.label_of("Sad")}
    assert sorted(set(f.subjects.tolist())) == [0, 1, 2]
    assert f.sources[3] == "synthetic:7:3"
    assert f.aus.shape == (12, len(taxonomy.ACTION_UNITS))
    assert f.region_masks.shape == (12, len(taxonomy.REGIONS), 64, 64) and f.region_masks.dtype == torch.bool
    assert f.meta["generator"] == "synthetic" and f.meta["seed"] == 7
    # happy images carry AU12 almost always; sad never does
    j12 = taxonomy.ACTION_UNITS.index(12)
    assert (f.aus[f.labels == taxonomy.label_of("Sad"), j12] == 0).all()


def test_same_seed_identical_different_seed_differs():
    a = sy.generate(n_subjects=2, per_subject=1, seed=3)
    b = sy.generate(n_subjects=2, per_subject=1, seed=3)
    c = sy.generate(n_subjects=2, per_subject=1, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.aus, b.aus) and torch.equal(a.region_masks, b.region_masks)
    assert (a.images.float() - c.images.float()).abs().mean() > 10


def test_subjects_are_identities_independent_of_the_rest_of_the_set():
    full = sy.generate(categories=["Neutral", "Angry"], n_subjects=6, per_subject=2, seed=0, masks=False)
    part = sy.generate(categories=["Angry"], n_subjects=2, per_subject=2, seed=0, subject_offset=4, masks=False)
    assert part.subjects.tolist() == [4, 4, 5, 5]
    sel = full.where(labels=[taxonomy.label_of("Angry")], subjects=[4, 5])
    assert torch.equal(sel.images, part.images) and torch.equal(sel.aus, part.aus)
    # identity shows: clean neutral faces of one subject are closer to each other than to other subjects
    f = sy.generate(categories=["Neutral"], n_subjects=6, per_subject=2, seed=0, masks=False, nuisance=False)
    x = f.images.float().flatten(1)
    d = torch.cdist(x, x)
    same = f.subjects[:, None] == f.subjects[None, :]
    off = ~torch.eye(len(x), dtype=torch.bool)
    assert d[same & off].max() < d[~same].min()


def test_region_masks_cover_the_regions_of_the_active_aus():
    f = sy.generate(n_subjects=3, per_subject=1, seed=2)
    masks = f.region_masks
    assert masks.flatten(2).any(-1).all(), "every region has pixels in every face"
    act = sy.active_regions(f.aus.numpy())
    for i in range(len(f)):
        want = set(taxonomy.regions_of(au for j, au in enumerate(taxonomy.ACTION_UNITS) if f.aus[i, j] > 0))
        assert {r for k, r in enumerate(taxonomy.REGIONS) if act[i, k]} == want
    am = sy.active_region_masks(f)
    neutral = f.labels == taxonomy.label_of("Neutral")
    assert not am[neutral].any() and am[~neutral].flatten(1).any(1).all()
    # regions sit where their features are: brows above eyes above nose above mouth above chin
    rows = torch.arange(64).float()
    centre = (masks.float() * rows[:, None]).sum((2, 3)) / masks.float().sum((2, 3))
    assert (centre[:, :-1] < centre[:, 1:]).float().mean() > 0.95
    # the pixels an AU changes lie in its regions: render a face with and without AU12
    idn = sy.make_identity(0, 0)
    au = np.zeros(len(taxonomy.ACTION_UNITS), np.float32)
    au12 = au.copy()
    au12[taxonomy.ACTION_UNITS.index(12)] = 1.0
    img0, m0 = sy.render_face(idn, au, nuisance=False)
    img1, m1 = sy.render_face(idn, au12, nuisance=False)
    changed = np.abs(img0.astype(int) - img1.astype(int)).sum(-1) > 30
    mouth = m1[taxonomy.REGIONS.index("mouth")] | m0[taxonomy.REGIONS.index("mouth")]
    assert changed.sum() > 20 and (changed & mouth).sum() / changed.sum() > 0.95


def _hog(faces) -> np.ndarray:
    hog = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9)
    imgs = faces.images.permute(0, 2, 3, 1).numpy()
    return np.stack([hog.compute(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)).ravel() for x in imgs])


def _ridge_accuracy(cats, seed=0) -> float:
    """Train a ridge classifier on HOG of 30 subjects, score 20 unseen subjects drawn with another seed."""
    tr = sy.generate(categories=cats, n_subjects=30, per_subject=2, seed=seed, masks=False)
    te = sy.generate(categories=cats, n_subjects=20, per_subject=2, seed=seed + 1, subject_offset=1000, masks=False)
    x, xt = _hog(tr), _hog(te)
    mu = x.mean(0)
    x, xt = x - mu, xt - mu
    classes = np.unique(tr.labels.numpy())
    y = np.where(tr.labels.numpy()[:, None] == classes[None], 1.0, -1.0)
    w = np.linalg.solve(x.T @ x + 10.0 * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
    pred = classes[(xt @ w + y.mean(0)).argmax(1)]
    return float((pred == te.labels.numpy()).mean())


def test_learnable_on_unseen_identities_and_identical_prototypes_are_harder():
    skill = lambda acc, k: (acc - 1 / k) / (1 - 1 / k)  # noqa: E731  0 = chance, 1 = perfect
    basic = list(taxonomy.basic_names(include_neutral=True))
    acc_basic = _ridge_accuracy(basic)
    assert acc_basic > 0.6, acc_basic  # chance 1/7
    groups = [["Sad", "Sadly angry"], ["Appalled", "Hatred", "Sadly disgusted"], ["Fearful", "Sadly fearful"]]
    group_skill = np.mean([skill(_ridge_accuracy(g), len(g)) for g in groups])
    assert 0.0 < group_skill < skill(acc_basic, 7) - 0.2, (group_skill, acc_basic)


def test_synth_command_writes_grid_images_and_csv(tmp_path):
    import csv

    from compound_fer.cli import main

    assert main(["synth", "--out", str(tmp_path), "--identities", "1", "--grid-size", "48", "--images", "1"]) == 0
    assert (tmp_path / "synthetic_grid.png").stat().st_size > 1000 and (tmp_path / "synthetic_grid.pdf").exists()
    rows = list(csv.DictReader(open(tmp_path / "images.csv")))
    assert len(rows) == 22 and {r["category"] for r in rows} == {c.name for c in taxonomy.CATEGORIES}
    for r in rows:
        assert (tmp_path / r["path"]).exists() and r["subject"] == "0"
        active = {int(a) for a in r["active_aus"].split()}
        assert active == {au for au in taxonomy.ACTION_UNITS if float(r[f"AU{au}"]) > 0}
        assert taxonomy.by_name(r["path"].split("/")[0]).name == r["category"]
