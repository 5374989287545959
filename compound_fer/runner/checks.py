"""The data checks of a run, all made before any training (:func:`check_splits`): the classes each split
needs, subject ids for a subject-disjoint split, and a test set apart from the training data. A failed
check is a DataError (a ConfigError for a setting) naming what is missing and how to go on."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.data.faceset import FaceSet
from compound_fer.data.images import find_duplicates
from compound_fer.data.load import scan
from compound_fer.errors import ConfigError, DataError
from compound_fer.runner.dataset import split_indices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    """The classes a run uses: the fewest training images of each (0: scored only, e.g. zero-shot), and
    why (the phase or setting that asks for them), by class name in taxonomy order."""

    train: dict[str, int]
    why: dict[str, str]

    @property
    def test(self) -> tuple[str, ...]:
        """Every class the run scores (all it uses)."""
        return tuple(self.train)


def needs_of(cfg: ProtocolConfig) -> Needs:
    """The classes ``cfg`` trains and scores: the basic classes (basic phase), every compound class (the
    continual phase; ``continual.shots`` images each) and ``fewshot.compounds`` (the largest shot count)."""
    train = {n: 1 for n in taxonomy.basic_names(include_neutral=cfg.data.include_neutral)}
    why = dict.fromkeys(train, "the basic phase")
    if cfg.continual.methods:
        for n in taxonomy.compound_names():
            train[n], why[n] = max(1, cfg.continual.shots or 1), "the continual phase" + (
                f" at continual.shots {cfg.continual.shots}" if cfg.continual.shots else "")
    if cfg.fewshot.enabled:  # shots 0 (the zero-shot row) trains on no image of the compound
        k = max(cfg.fewshot.shots, default=0)
        for n in cfg.fewshot.compounds or taxonomy.compound_names():
            if n not in train or k > train[n]:
                train[n], why[n] = max(k, train.get(n, 0)), f"the few-shot phase at fewshot.shots {k}"
    order = {n: i for i, n in enumerate(c.name for c in taxonomy.CATEGORIES)}
    names = sorted(train, key=order.__getitem__)
    return Needs(train={n: train[n] for n in names}, why={n: why[n] for n in names})


def check_paths(data_path: str | None, test_path: str | None) -> None:
    """The test folder is not the training folder (data.test_path vs data.path, resolved): ConfigError (the
    command line names the keys by their flags, ``--test-data`` and ``--data``)."""
    if data_path and test_path and Path(data_path).expanduser().resolve() == Path(test_path).expanduser().resolve():
        raise ConfigError(f"data.test_path {test_path} is the training folder: it is the data.path folder "
                          f"({data_path}), so the run would test on its training images; give a folder of other "
                          f"people's faces, or no test folder (the strict split then holds out test subjects of "
                          f"the data)")


#: what ``data.test_path`` needs
EXTERNAL_NEEDS_STRICT = ("data.test_path needs evaluation.mode: strict, got {mode!r}: the reference mode reports its "
                         "validation fold and has no test set")


def check_plan(cfg: ProtocolConfig) -> None:
    """The checks that need no face decoded, made when the run is planned: an external test folder needs the
    strict mode, is not the training folder, and holds the classes the run tests (from a listing)."""
    if not cfg.data.test_path:
        return
    if cfg.evaluation.mode != "strict":
        raise ConfigError(EXTERNAL_NEEDS_STRICT.format(mode=cfg.evaluation.mode))
    check_paths(cfg.data.path, cfg.data.test_path)
    check_test_classes(cfg)


class MissingTestClasses(DataError):
    """The external test folder lacks compound classes the run tests; ``present``: those it has."""

    def __init__(self, message: str, *, missing: Sequence[str], present: Sequence[str], needs_all: bool) -> None:
        super().__init__(message)
        self.missing, self.present, self.needs_all = list(missing), list(present), needs_all


def check_test_classes(cfg: ProtocolConfig) -> None:
    """``data.test_path`` holds every class the run tests (:func:`needs_of`, the one rule; checked again on the
    decoded faces by :func:`check_splits`) and shares classes with ``data.path``, from a listing, before any
    image is decoded. A folder holding none of the protocol's classes is left to the loader, which says more."""
    test_path = str(cfg.data.test_path)
    protocol = set(taxonomy.basic_names(include_neutral=cfg.data.include_neutral)) | set(taxonomy.compound_names())
    have = set(scan(test_path).category_counts()) & protocol
    if not have:
        return
    if cfg.data.source == "path" and cfg.data.path:
        train = set(scan(cfg.data.path).category_counts()) & protocol
        if train and not train & have:
            raise DataError(f"data.test_path {test_path}: its classes ({', '.join(sorted(have))}) share none with "
                            f"data.path {cfg.data.path} ({', '.join(sorted(train))}); check the folder names")
    # the compound classes, from the listing; a missing basic class is named by the checks of the decoded faces
    missing = [n for n in needs_of(cfg).test if n not in have and n in taxonomy.compound_names()]
    if not missing:
        return
    present = [n for n in taxonomy.compound_names() if n in have]
    hint = ("the continual phase tests every compound class, so add their images" if cfg.continual.methods
            else "add their images")
    if present:
        hint += ", or run the few-shot phase alone (continual.methods: []) on the classes it has (fewshot.compounds)"
    raise MissingTestClasses(f"data.test_path {test_path}: no image of {len(missing)} class(es) this run "
                             f"tests ({', '.join(missing)}); {hint}", missing=missing, present=present,
                             needs_all=bool(cfg.continual.methods))


def check_test_split(test: FaceSet) -> None:
    """A seed's split leaves faces to score (DataError otherwise)."""
    if len(test) == 0:
        raise DataError("the test split is empty: give more subjects, a larger evaluation.test_fraction, "
                        "or an external test folder (data.test_path)")


def check_basic_parts(parts: Mapping[str, FaceSet]) -> None:
    """Each split the basic phase uses (by name: train, validation, test) holds basic faces."""
    for name, part in parts.items():
        if len(part) == 0:
            raise DataError(f"the {name} split has no image of the basic classes; use more subjects or other fractions")


def check_splits(cfg: ProtocolConfig, faces: FaceSet, *, test_faces: FaceSet | None = None) -> None:
    """Every data check of a run, before the basic phase: the data holds every class the run uses, has
    subject ids for a subject-disjoint split, an external test set is apart from it and holds every class
    scored, and each seed's split leaves every class where the run needs it (a DataError naming them)."""
    needs = needs_of(cfg)
    root = _where(faces, cfg.data.path)
    check_paths(cfg.data.path, cfg.data.test_path)
    absent = [n for n in needs.train if n not in set(faces.class_names)]
    if absent:
        raise DataError(f"{root}: no usable image of {len(absent)} class(es) this run needs ({_by_phase(needs, absent)}"
                        f"); it holds {', '.join(faces.class_names)}. {_hint(cfg, needs, absent, split=False)}")
    _check_subjects(cfg, faces, root, external=test_faces is not None)
    if test_faces is not None:
        _check_test_folder(cfg, test_faces, needs)
        _check_apart(faces, test_faces, root, _where(test_faces, cfg.data.test_path))
    labels, subjects = faces.labels.numpy(), faces.subjects.numpy()
    for seed in cfg.seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # split_by_subject's warning: the classes are named below
            s = split_indices(cfg, faces, seed=seed, external=test_faces is not None)
        parts = {"training": labels[s.train], "validation": labels[s.val]}
        if test_faces is None:
            parts["test"] = labels[s.test]
        phrases, named, absent = _short(parts, needs)
        if phrases:
            per = ", ".join(f"{n} {len(np.unique(subjects[labels == taxonomy.label_of(n)]))}" for n in absent)
            raise DataError(f"{root}: the {cfg.evaluation.mode} split of seed {seed} leaves " + "; ".join(phrases)
                            + (f" (subjects with images of {'it' if len(absent) == 1 else 'them'}: {per}; a class "
                               f"needs images of at least two subjects to be in both the training and the test "
                               f"split)" if absent else "") + f". {_hint(cfg, needs, named, split=True)}")


def _where(faces: FaceSet, path: str | None) -> str:
    return str(faces.meta.get("root") or path or "the synthetic faces")


def _by_phase(needs: Needs, names: list[str]) -> str:
    """``the basic phase: Sad, Angry; the continual phase: ...`` (every compound class: said so)."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(needs.why[n], []).append(n)
    every = set(taxonomy.compound_names())
    return "; ".join(f"{why}: " + ("all 15 compound classes" if set(ns) == every else ", ".join(ns))
                     for why, ns in groups.items())


def _hint(cfg: ProtocolConfig, needs: Needs, names: list[str], *, split: bool) -> str:
    """How to go on when ``names`` lack images: add them, or leave out the phase that asks for them."""
    out = ["add images of them" + (" (of more subjects)" if split else "")]
    if any("few-shot" in needs.why[n] for n in names):
        out.append("lower fewshot.shots (--shots), choose fewshot.compounds (--compounds) the data has, or "
                   "--no-fewshot")
    if any("continual" in needs.why[n] for n in names):
        out.append("run without the continual phase (continual.methods: [], or `compound-fer fewshot`)")
    if split and cfg.evaluation.mode == "strict" and not cfg.data.test_path:
        out.append("test on a folder of other people's faces with --test-data (data.test_path)")
    return "To go on: " + "; or ".join(out)


def _check_subjects(cfg: ProtocolConfig, faces: FaceSet, root: str, *, external: bool) -> None:
    """Without subject ids (each file its own subject) a strict split is per image: refused, not silent."""
    if faces.meta.get("subjects_known", True) or external:
        return  # with a test folder, only the validation share (early stopping) is drawn per image
    if cfg.evaluation.mode == "strict":
        raise DataError(f"{root}: no subject ids (no subjects.csv, or a list without a subject column), so the "
                        f"strict split cannot keep a person's faces out of the test split. Add ROOT/subjects.csv "
                        f"(columns file,subject) or a subject column to labels.csv; or test on another folder with "
                        f"--test-data; or split single images into folds with evaluation.mode: reference "
                        f"(--mode reference)")
    log.warning("%s: no subject ids: the reference folds split single images, so one person's faces may be in "
                "both the training and the scored fold", root)


def _check_test_folder(cfg: ProtocolConfig, test_faces: FaceSet, needs: Needs) -> None:
    missing = [n for n in needs.test if n not in set(test_faces.class_names)]
    if missing:
        raise DataError(f"test data {cfg.data.test_path}: no usable image of {', '.join(missing)}, which this run "
                        f"tests; add their images, or run the few-shot phase alone on the classes it has "
                        f"(compound-fer fewshot --compounds ...)")


def _check_apart(faces: FaceSet, test_faces: FaceSet, root: str, test_root: str) -> None:
    """No test image is a training image: the same file (links resolved) or the same bytes."""
    train = {os.path.realpath(f) for f in faces.sources if os.path.isfile(f)}
    test = {os.path.realpath(f) for f in test_faces.sources if os.path.isfile(f)}
    pairs = [(f, f) for f in sorted(train & test)]
    for group in find_duplicates(sorted((train | test) - (train & test))):
        a, b = [f for f in group if f in train], [f for f in group if f in test]
        pairs += [(a[0], x) for x in b] if a else []
    if pairs:
        raise DataError(f"test data {test_root}: {len(pairs)} image(s) are also training images of {root} (same "
                        f"file or same bytes, e.g. {pairs[0][1]} = {pairs[0][0]}); the test set must be apart "
                        f"from training: remove them from one of the folders")


def _short(parts: dict[str, np.ndarray], needs: Needs) -> tuple[list[str], list[str], list[str]]:
    """What each split lacks, as phrases (``the test split without A, B``), the classes named, and those
    absent from a split."""
    phrases, named, gone = [], [], []
    for part, y in parts.items():
        count = {n: int((y == taxonomy.label_of(n)).sum()) for n in needs.train}
        if part == "validation":  # it only stops the basic phase early: any basic face will do
            if len(y) and not any(count[n] for n, w in needs.why.items() if w == "the basic phase"):
                phrases.append("the validation split without any basic class (it stops the basic phase early)")
            continue
        want = needs.train if part == "training" else dict.fromkeys(needs.test, 1)
        absent = [n for n, k in want.items() if k > 0 and count[n] == 0]
        few = [n for n, k in want.items() if 0 < count[n] < k]
        if absent:
            phrases.append(f"the {part} split without {', '.join(absent)}")
        phrases += [f"the {part} split with {count[n]} image(s) of {n} ({want[n]} needed: {needs.why[n]})"
                    for n in few]
        named += [n for n in absent + few if n not in named]
        gone += [n for n in absent if n not in gone]
    return phrases, sorted(named, key=taxonomy.label_of), sorted(gone, key=taxonomy.label_of)
