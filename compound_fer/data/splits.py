"""Subject-disjoint splits, k-shot sampling, class orders and per-class caps.

Pure functions on numpy arrays, deterministic per seed, so a run's data can be rebuilt from its seed
alone. Samples of one subject never straddle two parts: a face seen in training must not be scored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import numpy as np

from compound_fer import taxonomy
from compound_fer.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from compound_fer.data.faceset import FaceSet

__all__ = [
    "Split",
    "Shots",
    "ExternalSplit",
    "subject_kfold",
    "split_by_subject",
    "keep_subjects",
    "reference_split",
    "external_test",
    "sample_shots",
    "class_orders",
    "per_class_cap",
]


def _as_array(values, name: str) -> np.ndarray:
    """Accept numpy arrays, torch tensors and sequences; return a 1-D numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _class_name(label) -> str:
    """Readable name of a global label (falls back to the raw value outside the taxonomy)."""
    try:
        return f"{taxonomy.name_of(int(label))} (label {int(label)})"
    except (IndexError, ValueError, TypeError):
        return repr(label)


def _class_rng(seed: int, label) -> np.random.Generator:
    """A generator per (seed, class): a class's draw does not depend on which other classes are drawn."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(label) & 0xFFFFFFFF])


@dataclass(frozen=True)
class Split:
    """Index arrays (sorted, into the sample arrays) of a subject-disjoint train/val/test split.

    In :func:`reference_split` ``test is val``: the reference reports its validation fold.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.train, self.val, self.test))

    @property
    def test_is_val(self) -> bool:
        """True for the reference protocol, where the reported fold also drove early stopping."""
        return self.test is self.val

    def subsets(self, faces: "FaceSet") -> tuple["FaceSet", "FaceSet", "FaceSet"]:
        """The three parts of ``faces`` as FaceSets (train, val, test)."""
        return faces.subset(self.train), faces.subset(self.val), faces.subset(self.test)


@dataclass(frozen=True)
class Shots:
    """k-shot draw: ``indices[class] = [sample indices]`` in draw order, plus the settings used."""

    indices: Mapping[int, list[int]]
    k: int
    seed: int
    clamped: Mapping[int, int] = field(default_factory=dict)  # class -> images available when < k

    @property
    def all(self) -> np.ndarray:
        """Every chosen index, sorted."""
        return np.sort(np.fromiter((i for v in self.indices.values() for i in v), dtype=np.int64))

    def to_json(self) -> dict:
        """Plain-JSON record (class labels as string keys) for provenance files."""
        return {"k": self.k, "seed": self.seed, "indices": {str(c): list(v) for c, v in self.indices.items()},
                "clamped": {str(c): n for c, n in self.clamped.items()}}


def subject_kfold(subjects, *, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Split samples into ``k`` subject-disjoint folds with equal subject counts (230 subjects -> 10 x 23).

    Subjects are shuffled by ``seed`` and dealt round-robin, so fold sizes differ by at most one subject.
    Returns sorted sample-index arrays; together they cover every sample exactly once.
    """
    subj = _as_array(subjects, "subjects")
    unique = np.unique(subj)
    if k < 2:
        raise ConfigError(f"subject_kfold: k={k}; need at least 2 folds")
    if len(unique) < k:
        raise ConfigError(f"subject_kfold: {len(unique)} subjects cannot fill k={k} folds; lower k")
    order = np.random.default_rng(seed).permutation(unique)
    fold_of = {s: i % k for i, s in enumerate(order.tolist())}
    which = np.array([fold_of[s] for s in subj.tolist()], dtype=np.int64)
    return [np.flatnonzero(which == f) for f in range(k)]


def split_by_subject(subjects, *, val: float = 0.15, test: float = 0.15, seed: int = 0,
                     labels=None, attempts: int = 200) -> Split:
    """Subject-disjoint train/val/test split with about ``val`` and ``test`` of the subjects.

    When ``labels`` is given, draws are retried (deterministically from ``seed``) until every class
    appears in every non-empty part; if none of ``attempts`` draws manages, the best one is used
    with a warning naming the missing classes.
    """
    subj = _as_array(subjects, "subjects")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"split_by_subject: val={val}, test={test}; need 0 <= val, test and val + test < 1")
    unique = np.unique(subj)
    n = len(unique)
    n_val = max(1, int(round(val * n))) if val > 0 else 0
    n_test = max(1, int(round(test * n))) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise ConfigError(f"split_by_subject: {n} subjects are too few for val={val}, test={test}")
    lab = None if labels is None else _as_array(labels, "labels")
    if lab is not None and len(lab) != len(subj):
        raise ValueError(f"labels has {len(lab)} entries for {len(subj)} subjects")
    classes = None if lab is None else np.unique(lab)

    rng = np.random.default_rng(seed)
    best, best_missing = None, None
    for _ in range(max(1, attempts) if lab is not None else 1):
        order = rng.permutation(unique)
        parts_subj = (order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test])
        parts = tuple(np.flatnonzero(np.isin(subj, p)) for p in parts_subj)
        if lab is None:
            best, best_missing = parts, {}
            break
        missing = {name: sorted(set(classes.tolist()) - set(np.unique(lab[p]).tolist()))
                   for name, p in zip(("train", "val", "test"), parts) if len(p)}
        missing = {k_: v for k_, v in missing.items() if v}
        if best is None or sum(map(len, missing.values())) < sum(map(len, best_missing.values())):
            best, best_missing = parts, missing
        if not missing:
            break
    if best_missing:
        detail = "; ".join(f"{part} lacks {', '.join(_class_name(c) for c in cs)}" for part, cs in best_missing.items())
        warnings.warn(f"split_by_subject: no subject-disjoint draw kept every class in every part ({detail})",
                      stacklevel=2)
    return Split(*best)


def keep_subjects(indices, subjects, *, fraction: float, seed: int = 0) -> np.ndarray:
    """The samples (sorted) among ``indices`` of a seeded ``fraction`` of their subjects, at least one subject.

    One seeded ranking of the subjects decides, so a smaller fraction keeps a subset of a larger one's.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"keep_subjects: fraction={fraction}; need 0 < fraction <= 1")
    idx = np.sort(_as_array(indices, "indices").astype(np.int64))
    subj = _as_array(subjects, "subjects")[idx]
    unique = np.unique(subj)
    if fraction == 1 or len(unique) == 0:
        return idx
    ranked = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5B1EC7]).permutation(unique)
    kept = ranked[:max(1, int(np.floor(fraction * len(unique) + 0.5)))]  # half up: 32.5 -> 33
    return idx[np.isin(subj, kept)]


def reference_split(subjects, *, k: int = 10, fold: int = 0, seed: int = 0) -> Split:
    """The reference's split: fold ``fold`` of :func:`subject_kfold` validates, the rest trains.

    The reference has no test set: its validation fold drives early stopping AND is reported, so
    here ``Split.test is Split.val`` (``Split.test_is_val``). Use :func:`split_by_subject` for a
    strict held-out test.
    """
    if not 0 <= fold < k:
        raise ConfigError(f"reference_split: fold={fold} is outside 0..{k - 1}")
    folds = subject_kfold(subjects, k=k, seed=seed)
    val = folds[fold]
    train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != fold]))
    return Split(train=train, val=val, test=val)


@dataclass(frozen=True)
class ExternalSplit:
    """All of ``train`` trains, all of ``test`` (another folder) tests; ``shared_subjects`` are ids in both."""

    train: "FaceSet"
    test: "FaceSet"
    shared_subjects: tuple[int, ...] = ()


def external_test(train_set: "FaceSet", test_set: "FaceSet") -> ExternalSplit:
    """Train on every subject of ``--data``, test on a separate folder.

    Warns (does not fail) when subject ids overlap: ids from two readers may coincide by chance,
    but if they are the same people the test is not subject-disjoint (ids of a folder without subject
    ids, one per file, are not compared). Fails when no class is shared.
    """
    known = all(fs.meta.get("subjects_known", True) for fs in (train_set, test_set))
    shared = sorted(set(_as_array(train_set.subjects, "subjects").tolist())
                    & set(_as_array(test_set.subjects, "subjects").tolist())) if known else []
    if shared:
        shown = ", ".join(map(str, shared[:10])) + (" ..." if len(shared) > 10 else "")
        warnings.warn(f"external_test: {len(shared)} subject id(s) appear in both the training data and the "
                      f"test folder ({shown}); if they are the same people the test is not subject-disjoint",
                      stacklevel=2)
    common = set(train_set.class_labels) & set(test_set.class_labels)
    if not common:
        raise DataError(f"external_test: the test folder's classes {list(test_set.class_names)} share none with "
                        f"the training data's {list(train_set.class_names)}; check the folder names")
    return ExternalSplit(train=train_set, test=test_set, shared_subjects=tuple(int(s) for s in shared))


def sample_shots(labels, *, k: int, seed: int = 0, classes: Sequence[int] | None = None,
                 allow_fewer: bool = False) -> Shots:
    """Draw ``k`` sample indices per class (default: every class in ``labels``), recorded in ``Shots``.

    Each class has its own generator seeded by (seed, class), so adding a class does not change
    another's shots. A class with fewer than ``k`` images is a ConfigError naming it, unless
    ``allow_fewer=True``: then all its images are taken and ``Shots.clamped`` records how many.
    """
    lab = _as_array(labels, "labels")
    if k < 1:
        raise ConfigError(f"sample_shots: k={k}; need at least one shot per class")
    wanted = np.unique(lab).tolist() if classes is None else [int(c) for c in classes]
    indices: dict[int, list[int]] = {}
    clamped: dict[int, int] = {}
    short = []
    for c in wanted:
        pool = np.flatnonzero(lab == c)
        if len(pool) < k:
            if not allow_fewer:
                short.append(f"{_class_name(c)} has {len(pool)}")
                continue
            clamped[int(c)] = len(pool)
        take = min(k, len(pool))
        indices[int(c)] = sorted(_class_rng(seed, c).choice(pool, size=take, replace=False).tolist())
    if short:
        raise ConfigError(f"sample_shots: k={k} shots per class, but " + "; ".join(short)
                          + " images; lower the shot count (--shots, fewshot.shots) or add images of that class")
    return Shots(indices=indices, k=k, seed=seed, clamped=clamped)


def class_orders(n_orders: int, *, seed: int = 42, classes: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """``n_orders`` seeded permutations of the compound classes (default: the 15 of the taxonomy).

    Orders are drawn one after another from one generator, so order ``i`` is the same whatever
    ``n_orders`` is (asking for 3 or 10 gives the same first 3).
    """
    names = tuple(taxonomy.compound_names() if classes is None else (taxonomy.by_name(c).name for c in classes))
    if n_orders < 0:
        raise ConfigError(f"class_orders: n_orders={n_orders} must be >= 0")
    rng = np.random.default_rng(seed)
    return [tuple(names[i] for i in rng.permutation(len(names))) for _ in range(n_orders)]


def per_class_cap(labels, *, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` random indices per class (all of a smaller class), sorted.

    The per-class sample cap of the reference (m new-class images per step); seeded per class.
    """
    lab = _as_array(labels, "labels")
    if cap < 0:
        raise ConfigError(f"per_class_cap: cap={cap} must be >= 0")
    keep = []
    for c in np.unique(lab):
        pool = np.flatnonzero(lab == c)
        keep.append(pool if len(pool) <= cap else _class_rng(seed, c).choice(pool, size=cap, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64) if keep else np.zeros(0, dtype=np.int64)
