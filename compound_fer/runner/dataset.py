"""The data stage of the runner: the faces a config names, and their train / validation / test splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.data import splits as sp
from compound_fer.data.crop_options import CropOptions
from compound_fer.data.faceset import FaceSet
from compound_fer.data.load import load_faces
from compound_fer.errors import DataError

log = logging.getLogger(__name__)


def load_dataset(cfg: ProtocolConfig, *, path: str | None = None, progress: bool = True) -> FaceSet:
    """The faces the config names: the procedural synthetic set, or a CFEE / labelled folder."""
    names = [c.name for c in taxonomy.categories(("neutral", "basic", "compound") if cfg.data.include_neutral
                                                  else ("basic", "compound"))]
    if path is None and cfg.data.source == "synthetic":
        from compound_fer.data.synthetic import generate

        s = cfg.data.synthetic
        return generate(categories=names, n_subjects=s.n_subjects, per_subject=s.per_subject,
                        image_size=cfg.data.image_size, seed=s.seed, progress=progress)

    root = path or cfg.data.path
    faces = load_faces(root, crop=CropOptions.from_data_config(cfg.data), progress=progress,
                       strict_classes=cfg.data.strict_classes)
    kept = faces.where(labels=[taxonomy.label_of(n) for n in names])
    if len(kept) == 0:
        hint = " (set data.include_neutral: true to use Neutral)" if "Neutral" in faces.class_names else ""
        raise DataError(f"{root}: none of its {len(faces)} face(s) is of a class this protocol uses; it holds "
                        f"{', '.join(faces.class_names)}{hint}")
    return kept


@dataclass(frozen=True)
class Splits:
    """Train / validation / test faces and how they were made."""

    train: FaceSet
    val: FaceSet
    test: FaceSet
    info: dict


def split_indices(cfg: ProtocolConfig, faces: FaceSet, *, seed: int, external: bool = False):
    """The config's split of ``faces`` for ``seed`` as index arrays (:class:`~compound_fer.data.splits.Split`):
    subject-disjoint train/val/test (strict), train/val only (``external``: another folder tests), or the
    reference folds (test is val); ``evaluation.scored: validation`` scores the validation part;
    ``evaluation.train_subjects_fraction`` < 1 (strict) keeps a seeded share of the training subjects."""
    subjects, labels = faces.subjects.numpy(), faces.labels.numpy()
    ev = cfg.evaluation
    if external:
        s = sp.split_by_subject(subjects, val=ev.val_fraction, test=0.0, seed=seed, labels=labels)
    elif ev.mode == "strict":
        s = sp.split_by_subject(subjects, val=ev.val_fraction, test=ev.test_fraction, seed=seed, labels=labels)
    else:
        s = sp.reference_split(subjects, k=ev.folds, fold=ev.fold, seed=seed)
    if ev.train_subjects_fraction < 1:  # validation and test subjects unchanged (config: strict only)
        s = sp.Split(sp.keep_subjects(s.train, subjects, fraction=ev.train_subjects_fraction, seed=seed), s.val, s.test)
    if external:
        return s
    return sp.Split(s.train, s.val, s.val) if ev.scored == "validation" else s


def make_splits(cfg: ProtocolConfig, faces: FaceSet, *, seed: int, test_faces: FaceSet | None = None) -> Splits:
    """strict: subject-disjoint train/val/test, or an external test set; reference: val fold doubles as test."""
    subjects = faces.subjects.numpy()
    ev = cfg.evaluation
    if test_faces is not None:  # strict mode (runner/plan.py checks it)
        # Every subject of data.path trains (a small validation share for early stopping); the folder tests.
        ext = sp.external_test(faces, test_faces)  # warns when subject ids overlap, fails when no class is shared
        s = split_indices(cfg, faces, seed=seed, external=True)
        train_ids, val_ids, test_ids = (sorted(int(x) for x in np.unique(a))
                                        for a in (subjects[s.train], subjects[s.val], test_faces.subjects.numpy()))
        missing = sorted(set(faces.class_names) - set(test_faces.class_names), key=taxonomy.label_of)
        if missing:
            log.warning("the external test folder has no image of %s: their test accuracy cannot be measured",
                        ", ".join(missing))
        info = {"mode": "strict", "test": "external",
                "train_subjects": len(train_ids), "val_subjects": len(val_ids), "test_subjects": len(test_ids),
                "train_images": len(s.train), "val_images": len(s.val), "test_images": len(test_faces),
                "test_root": str(test_faces.meta.get("root", "")), "test_missing_classes": missing,
                "shared_subject_ids": list(ext.shared_subjects),
                "train_subject_ids": train_ids, "val_subject_ids": val_ids, "test_subject_ids": test_ids}
        return Splits(faces.subset(s.train), faces.subset(s.val), test_faces, info)
    s = split_indices(cfg, faces, seed=seed)
    parts = {k: faces.subset(getattr(s, k)) for k in ("train", "val")}
    parts["test"] = parts["val"] if s.test is s.val else faces.subset(s.test)
    info = {"mode": ev.mode, **{f"{k}_subjects": int(len(np.unique(v.subjects.numpy()))) for k, v in parts.items()},
            **{f"{k}_images": len(v) for k, v in parts.items()}}
    if ev.mode == "reference":
        info["note"] = "reference quirk: the validation fold drives early stopping and is also the reported test"
    if ev.scored == "validation":  # tuning: the validation subjects are scored, the test subjects never touched
        info["scored"] = "validation"
    if ev.train_subjects_fraction < 1:
        info["train_subjects_fraction"] = ev.train_subjects_fraction
    return Splits(parts["train"], parts["val"], parts["test"], info)
