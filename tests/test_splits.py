"""Behaviour of subject-disjoint splits, k-shot sampling, class orders and caps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.data.splits import (
    class_orders,
    external_test,
    keep_subjects,
    per_class_cap,
    reference_split,
    sample_shots,
    split_by_subject,
    subject_kfold,
)
from compound_fer.errors import ConfigError, DataError


def _cfee_like(n_subjects=230, seed=0, drop=0.1):
    """Subjects x 21 classes, some (subject, class) pairs missing as in real data."""
    rng = np.random.default_rng(seed)
    subj, lab = [], []
    for s in range(n_subjects):
        for c in range(1, 22):
            if rng.random() > drop:
                subj.append(s)
                lab.append(c)
    return np.array(subj), np.array(lab)


def _faces(subjects, labels):
    n = len(labels)
    return FaceSet(images=torch.zeros(n, 3, 4, 4, dtype=torch.uint8), labels=torch.as_tensor(labels),
                   subjects=torch.as_tensor(subjects))


def test_subject_kfold_covers_every_sample_once_with_23_subjects_per_fold():
    subj, _ = _cfee_like()
    folds = subject_kfold(subj, k=10, seed=3)
    assert len(folds) == 10
    allidx = np.concatenate(folds)
    assert sorted(allidx.tolist()) == list(range(len(subj)))  # every sample exactly once
    fold_subjects = [set(subj[f].tolist()) for f in folds]
    assert [len(s) for s in fold_subjects] == [23] * 10
    for i in range(10):
        for j in range(i + 1, 10):
            assert not fold_subjects[i] & fold_subjects[j]
    again = subject_kfold(subj, k=10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = subject_kfold(subj, k=10, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_subject_kfold_balances_uneven_subject_counts_and_rejects_too_few():
    subj = np.repeat(np.arange(25), 3)
    sizes = sorted(len(np.unique(subj[f])) for f in subject_kfold(subj, k=10))
    assert sizes == [2] * 5 + [3] * 5
    with pytest.raises(ConfigError, match="subjects"):
        subject_kfold(np.arange(5), k=10)


def test_split_by_subject_is_disjoint_complete_and_keeps_every_class():
    subj, lab = _cfee_like(n_subjects=40, drop=0.4, seed=1)
    sp = split_by_subject(subj, val=0.15, test=0.15, seed=7, labels=lab)
    parts = [set(subj[p].tolist()) for p in sp]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert sorted(np.concatenate(list(sp)).tolist()) == list(range(len(subj)))
    assert len(parts[1]) == 6 and len(parts[2]) == 6
    for p in sp:
        assert set(lab[p].tolist()) == set(range(1, 22))
    again = split_by_subject(subj, val=0.15, test=0.15, seed=7, labels=lab)
    assert all(np.array_equal(a, b) for a, b in zip(sp, again))
    assert not sp.test_is_val
    no_test = split_by_subject(subj, val=0.15, test=0.0, seed=7, labels=lab)  # external-test mode
    assert len(no_test.test) == 0 and len(no_test.train) + len(no_test.val) == len(subj)


def test_split_by_subject_warns_when_a_class_cannot_be_everywhere():
    subj = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    lab = np.array([1, 2, 1, 2, 1, 2, 1, 9])  # class 9 (sadly angry) belongs to one subject only
    with pytest.warns(UserWarning, match=f"val lacks Sadly angry \\(label {taxonomy.label_of('sadly angry')}\\)"):
        sp = split_by_subject(subj, val=0.25, test=0.25, labels=lab, seed=0)
    assert not set(subj[sp.train]) & set(subj[sp.val])


def test_reference_split_reuses_the_validation_fold_as_test():
    subj, _ = _cfee_like(n_subjects=50)
    sp = reference_split(subj, k=10, fold=2, seed=0)
    assert sp.test is sp.val and sp.test_is_val
    assert not set(subj[sp.train]) & set(subj[sp.val])
    assert sorted(np.concatenate([sp.train, sp.val]).tolist()) == list(range(len(subj)))
    assert np.array_equal(sp.val, subject_kfold(subj, k=10, seed=0)[2])
    with pytest.raises(ConfigError, match="fold=10"):
        reference_split(subj, k=10, fold=10)


def test_external_test_warns_on_shared_subject_ids_only():
    a = _faces([1, 1, 2, 2], [1, 2, 1, 2])
    b = _faces([2, 3], [1, 2])
    with pytest.warns(UserWarning, match="1 subject id"):
        ext = external_test(a, b)
    assert ext.shared_subjects == (2,) and ext.train is a and ext.test is b
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert external_test(a, _faces([7, 8], [1, 2])).shared_subjects == ()
    with pytest.raises(DataError, match="share none"):
        external_test(a, _faces([7], [9]))


def test_sample_shots_records_k_per_class_reproducibly():
    _, lab = _cfee_like(n_subjects=30)
    shots = sample_shots(lab, k=5, seed=11)
    assert set(shots.indices) == set(range(1, 22))
    for c, idx in shots.indices.items():
        assert len(idx) == 5 == len(set(idx))
        assert (lab[idx] == c).all()
    assert shots.indices == sample_shots(lab, k=5, seed=11).indices
    assert shots.indices != sample_shots(lab, k=5, seed=12).indices
    # a class's shots do not depend on which other classes are drawn
    only = sample_shots(lab, k=5, seed=11, classes=[9])
    assert only.indices == {9: shots.indices[9]}
    assert len(shots.all) == 21 * 5
    assert shots.to_json()["indices"]["9"] == shots.indices[9]


def test_sample_shots_too_few_images_names_the_class_or_clamps():
    lab = np.array([2] * 10 + [9] * 2)
    with pytest.raises(ConfigError, match=r"Sadly angry \(label 9\) has 2"):
        sample_shots(lab, k=3)
    shots = sample_shots(lab, k=3, allow_fewer=True)
    assert shots.clamped == {9: 2} and sorted(shots.indices[9]) == [10, 11] and len(shots.indices[2]) == 3


def test_class_orders_are_seeded_permutations_of_the_15_compounds():
    orders = class_orders(10, seed=42)
    compounds = set(taxonomy.compound_names())
    assert len(orders) == 10
    for o in orders:
        assert len(o) == 15 and set(o) == compounds
    assert len(set(orders)) == 10
    assert orders == class_orders(10, seed=42)
    assert class_orders(3, seed=42) == orders[:3]  # order i does not depend on how many are asked
    assert class_orders(3, seed=1) != orders[:3]
    sub = class_orders(4, classes=["awed", "Hatred", "sadly fearful"])
    assert all(set(o) == {"Awed", "Hatred", "Sadly fearful"} for o in sub)


def test_per_class_cap_keeps_at_most_cap_per_class():
    lab = np.array([1] * 50 + [2] * 3 + [3] * 10)
    keep = per_class_cap(lab, cap=5, seed=0)
    counts = {c: int((lab[keep] == c).sum()) for c in (1, 2, 3)}
    assert counts == {1: 5, 2: 3, 3: 5}
    assert np.array_equal(keep, per_class_cap(lab, cap=5, seed=0))
    assert not np.array_equal(keep, per_class_cap(lab, cap=5, seed=1))
    assert len(np.unique(keep)) == len(keep)


def test_keep_subjects_nests_smaller_fractions_in_larger_ones():
    subj, _ = _cfee_like(n_subjects=40)
    train = np.flatnonzero(subj >= 10)  # 30 training subjects
    kept = {f: keep_subjects(train, subj, fraction=f, seed=3) for f in (0.25, 0.5, 1.0)}
    ids = {f: set(subj[k].tolist()) for f, k in kept.items()}
    assert [len(ids[f]) for f in (0.25, 0.5, 1.0)] == [8, 15, 30]  # 0.25 x 30 = 7.5: half up
    assert ids[0.25] < ids[0.5] < ids[1.0] == set(range(10, 40))
    assert np.array_equal(kept[1.0], train)
    assert set(kept[0.5].tolist()) <= set(train.tolist())
    assert sorted(kept[0.5].tolist()) == np.flatnonzero(np.isin(subj, list(ids[0.5]))).tolist()  # whole subjects
    assert np.array_equal(keep_subjects(train, subj, fraction=0.5, seed=3), kept[0.5])
    assert ids[0.5] != set(subj[keep_subjects(train, subj, fraction=0.5, seed=4)].tolist())
    assert len(set(subj[keep_subjects(train, subj, fraction=0.01, seed=3)].tolist())) == 1  # at least one subject
    with pytest.raises(ConfigError, match="fraction=0"):
        keep_subjects(train, subj, fraction=0, seed=3)


def test_train_subjects_fraction_leaves_validation_and_test_subjects_alone():
    from compound_fer.config import parse_config
    from compound_fer.runner.dataset import make_splits

    subj, lab = _cfee_like(n_subjects=100, seed=2)
    faces = _faces(subj, lab)
    parts = {}
    for f in (0.25, 0.5, 1.0):
        cfg = parse_config({"evaluation": {"mode": "strict", "val_fraction": 0.15, "test_fraction": 0.2,
                                           "train_subjects_fraction": f}})
        sp = make_splits(cfg, faces, seed=5)
        parts[f] = {k: set(getattr(sp, k).subjects.tolist()) for k in ("train", "val", "test")} | {"info": sp.info}
    for k in ("val", "test"):
        assert parts[0.25][k] == parts[0.5][k] == parts[1.0][k]
    assert len(parts[1.0]["train"]) == 65 and len(parts[1.0]["test"]) == 20 and len(parts[1.0]["val"]) == 15
    assert [len(parts[f]["train"]) for f in (0.25, 0.5)] == [16, 33]  # 0.25 x 65 = 16.25, 0.5 x 65 = 32.5: half up
    assert parts[0.25]["train"] < parts[0.5]["train"] < parts[1.0]["train"]
    assert parts[0.25]["info"]["train_subjects"] == 16 and parts[0.25]["info"]["train_subjects_fraction"] == 0.25
    assert "train_subjects_fraction" not in parts[1.0]["info"]


@pytest.mark.parametrize("evaluation, match", [
    ({"train_subjects_fraction": 0.0}, "train_subjects_fraction"),
    ({"train_subjects_fraction": 1.5}, "train_subjects_fraction"),
    ({"mode": "reference", "train_subjects_fraction": 0.5}, "needs evaluation.mode: strict"),
])
def test_train_subjects_fraction_out_of_range_is_refused(evaluation, match):
    from compound_fer.config import parse_config

    with pytest.raises(ConfigError, match=match):
        parse_config({"evaluation": evaluation})
