"""Avalanche benchmarks for the basic-to-compound protocol: experience 0 = basic classes, then compound.

Built on ``avalanche.benchmarks.nc_benchmark`` over in-memory tensors, so LwF (which needs task
labels), iCaRL (which reads the benchmark's class order), Replay and EWC all run on it. Labels are
remapped to model labels 0..K-1 in order of appearance, so a growing head only ever appends units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.data.splits import per_class_cap, sample_shots
from compound_fer.errors import ConfigError
from compound_fer.inputs import Inputs
from compound_fer.labels import to_model_labels

__all__ = ["ContinualBenchmark", "basic_to_compound", "fewshot_benchmark"]


@dataclass(frozen=True)
class ContinualBenchmark:
    """An Avalanche benchmark plus the bookkeeping to map its labels and rows back to the FaceSets.

    ``class_order[m]`` is the global taxonomy label of model label ``m``; ``experience_classes[j]``
    the model labels experience ``j`` adds; ``train_index[j]`` / ``test_index[j]`` the (sorted)
    FaceSet rows that went into experience ``j`` of the train / test stream.
    """

    benchmark: Any
    class_order: tuple[int, ...]
    experience_classes: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]
    train_index: tuple[np.ndarray, ...]
    test_index: tuple[np.ndarray, ...]
    settings: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_order)

    @property
    def n_experiences(self) -> int:
        return len(self.experience_classes)

    @property
    def train_stream(self):
        return self.benchmark.train_stream

    @property
    def test_stream(self):
        return self.benchmark.test_stream

    def model_label(self, global_label: int) -> int:
        """Model label of a global taxonomy label."""
        try:
            return self.class_order.index(int(global_label))
        except ValueError:
            raise ConfigError(f"{taxonomy.name_of(int(global_label))} is not part of this benchmark "
                              f"({', '.join(self.names)})") from None

    def to_model_labels(self, global_labels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Map global taxonomy labels to model labels (-1 for labels outside the benchmark)."""
        return to_model_labels(global_labels, self.class_order)

    def to_global_labels(self, model_labels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Map model labels back to global taxonomy labels."""
        return torch.as_tensor(self.class_order, dtype=torch.long)[torch.as_tensor(np.asarray(model_labels),
                                                                                    dtype=torch.long)]

    def seen_classes(self, experience: int) -> tuple[int, ...]:
        """Model labels seen after training experience ``experience`` (0-based): 0..n-1."""
        return tuple(c for exp in self.experience_classes[: experience + 1] for c in exp)


def _group_sizes(classes_per_exp: int | Sequence[int], n: int) -> list[int]:
    if isinstance(classes_per_exp, int):
        if classes_per_exp < 1:
            raise ConfigError(f"classes_per_exp={classes_per_exp} must be >= 1")
        return [min(classes_per_exp, n - i) for i in range(0, n, classes_per_exp)]
    sizes = [int(s) for s in classes_per_exp]
    if any(s < 1 for s in sizes) or sum(sizes) != n:
        raise ConfigError(f"classes_per_exp={sizes} must be positive and sum to the {n} compound classes")
    return sizes


def _inputs_for(faces: FaceSet, given: torch.Tensor | None, which: str) -> torch.Tensor:
    if given is None:
        return faces.float_images()
    if len(given) != len(faces):
        raise ConfigError(f"inputs.{which} has {len(given)} rows for {len(faces)} faces; pass one row per FaceSet row")
    return given if given.is_floating_point() else given.float()


def _require_classes(faces: FaceSet, labels: Sequence[int], which: str) -> None:
    present = set(faces.class_labels)
    missing = [taxonomy.name_of(c) for c in labels if c not in present]
    if missing:
        raise ConfigError(f"the {which} set has no images of {', '.join(missing)}; it holds "
                          f"{', '.join(faces.class_names) or 'nothing'}. Add their images, or (few-shot) choose "
                          f"classes the data has with `compound-fer fewshot --compounds` / fewshot.compounds")


def basic_to_compound(*, train: FaceSet, test: FaceSet, compound_order: Sequence[str] | None = None,
                      include_neutral: bool = False, basic: Sequence[str] | None = None,
                      classes_per_exp: int | Sequence[int] = 1, new_class_cap: int | None = None,
                      shots: int | None = None, seed: int = 0, inputs: Inputs | None = None,
                      train_transform=None, eval_transform=None) -> ContinualBenchmark:
    """Experience 0 = the basic classes (6, or 7 with neutral), then the compound classes in order.

    ``compound_order`` defaults to the compound classes present in ``train``, in taxonomy order;
    ``classes_per_exp`` groups them (1 = the reference). ``new_class_cap`` keeps at most that many
    random training images per compound class (the reference's m); ``shots`` keeps exactly k
    (recorded in ``settings['shots']``). Basic classes always keep all their images; the test
    stream is never capped. ``inputs`` (:class:`~compound_fer.inputs.Inputs`) replace the images with
    its ``train`` and ``test_view`` rows (one per FaceSet row, e.g. cached trunk maps) and bring its
    transforms; default: ``FaceSet.float_images()``. ``train_transform`` / ``eval_transform``, when
    given, are the per-sample transforms instead (e.g. an augmentation of images).
    """
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    if new_class_cap is not None and shots is not None:
        raise ConfigError("give either new_class_cap (at most m images per new class) or shots (exactly k), not both")
    if new_class_cap is not None and new_class_cap < 1:
        raise ConfigError(f"new_class_cap={new_class_cap} must be >= 1")

    basic_names, compound = _stream_classes(train, basic=basic, include_neutral=include_neutral,
                                            compound_order=compound_order)

    class_order = tuple(taxonomy.label_of(n) for n in basic_names + compound)
    _require_classes(train, class_order, "training")
    _require_classes(test, class_order, "test")
    sizes = [len(basic_names)] + (_group_sizes(classes_per_exp, len(compound)) if compound else [])

    train_model = to_model_labels(train.labels, class_order).numpy()
    test_model = to_model_labels(test.labels, class_order).numpy()
    n_basic = len(basic_names)

    train_rows, shot_record = _training_rows(train, train_model, n_basic=n_basic, compound=compound, shots=shots,
                                             new_class_cap=new_class_cap, seed=seed)
    test_rows = np.flatnonzero(test_model >= 0)

    x_train = _inputs_for(train, None if inputs is None else inputs.train, "train")[torch.as_tensor(train_rows)]
    x_test = _inputs_for(test, None if inputs is None else inputs.test_view, "test")[torch.as_tensor(test_rows)]
    if inputs is not None:
        train_transform = inputs.train_transform if train_transform is None else train_transform
        eval_transform = inputs.eval_transform if eval_transform is None else eval_transform
    y_train = torch.as_tensor(train_model[train_rows])
    y_test = torch.as_tensor(test_model[test_rows])

    bounds = np.cumsum([0] + sizes)
    experience_classes = tuple(tuple(range(bounds[j], bounds[j + 1])) for j in range(len(sizes)))
    bench = nc_benchmark(
        TensorDataset(x_train, y_train), TensorDataset(x_test, y_test),
        n_experiences=len(sizes), task_labels=False, shuffle=False, seed=seed,
        fixed_class_order=list(range(len(class_order))),
        per_exp_classes={j: s for j, s in enumerate(sizes)},
        train_transform=train_transform, eval_transform=eval_transform,
    )
    y_tr, y_te = y_train.numpy(), y_test.numpy()
    train_index = tuple(np.sort(train_rows[np.isin(y_tr, cls)]) for cls in experience_classes)
    test_index = tuple(np.sort(test_rows[np.isin(y_te, cls)]) for cls in experience_classes)
    settings = {"basic": list(basic_names), "compound_order": list(compound), "classes_per_exp": sizes[1:],
                "new_class_cap": new_class_cap, "shots": shot_record, "k_shots": shots, "seed": seed}
    return ContinualBenchmark(
        benchmark=bench,
        class_order=class_order,
        experience_classes=experience_classes,
        names=tuple(taxonomy.name_of(c) for c in class_order),
        train_index=train_index,
        test_index=test_index,
        settings=settings,
    )


def _stream_classes(train: FaceSet, *, basic: Sequence[str] | None, include_neutral: bool,
                    compound_order: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(basic names, compound names in stream order), checked: no class twice, none both, some basic."""
    basic_names = tuple(taxonomy.by_name(b).name for b in basic) if basic is not None else \
        taxonomy.basic_names(include_neutral=include_neutral)
    if compound_order is None:
        present = set(train.class_labels)
        compound = tuple(n for n in taxonomy.compound_names() if taxonomy.label_of(n) in present)
    else:
        compound = tuple(taxonomy.by_name(c).name for c in compound_order)
    if len(set(compound)) != len(compound):
        raise ConfigError(f"compound order lists a class twice: {list(compound)}")
    if set(compound) & set(basic_names):
        raise ConfigError(f"{sorted(set(compound) & set(basic_names))} cannot be both basic and compound")
    if not basic_names:
        raise ConfigError("no basic classes for experience 0")
    return basic_names, compound


def _training_rows(train: FaceSet, train_model: np.ndarray, *, n_basic: int, compound: Sequence[str],
                   shots: int | None, new_class_cap: int | None, seed: int) -> tuple[np.ndarray, dict | None]:
    """Rows that enter training (all basic rows, compound rows capped or k-shot sampled), sorted, and the
    shots drawn per compound name (None without ``shots``)."""
    train_rows = np.flatnonzero(train_model >= 0)
    basic_rows = train_rows[train_model[train_rows] < n_basic]
    new_rows = train_rows[train_model[train_rows] >= n_basic]
    shot_record = None
    if shots is not None:
        drawn = sample_shots(train.labels.numpy()[new_rows], k=shots, seed=seed,
                             classes=[taxonomy.label_of(n) for n in compound])
        new_rows = new_rows[drawn.all]
        shot_record = {taxonomy.name_of(c): _rows_of(train.labels.numpy(), new_rows, c)
                       for c in drawn.indices}
    elif new_class_cap is not None:
        new_rows = new_rows[per_class_cap(train.labels.numpy()[new_rows], cap=new_class_cap, seed=seed)]
    return np.sort(np.concatenate([basic_rows, new_rows])), shot_record


def _rows_of(labels: np.ndarray, rows: np.ndarray, label: int) -> list[int]:
    """The FaceSet rows among ``rows`` whose global label is ``label`` (sorted list, for records)."""
    return sorted(int(r) for r in rows[labels[rows] == label])


def fewshot_benchmark(*, train: FaceSet, test: FaceSet, compound: str, shots: int, seed: int = 0,
                      include_neutral: bool = False, inputs: Inputs | None = None) -> ContinualBenchmark:
    """The reference's few-shot episode: experience 0 = basic classes, experience 1 = k shots of ONE
    compound class (a 7-way model); the test stream holds all 7 classes.

    The reference scores only experience 1 of the test stream (the new class); the honest figure is
    the accuracy over the whole test stream (basic retention included). Report both.
    """
    return basic_to_compound(train=train, test=test, compound_order=[compound], include_neutral=include_neutral,
                             shots=shots, seed=seed, inputs=inputs)
