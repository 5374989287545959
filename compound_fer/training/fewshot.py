"""The reference's few-shot protocol, scored both ways.

For one compound class: copy the basic model, grow it to 7 outputs (6 basic + the new class), train on
``shots`` images of the new class ONLY, distilling from the frozen basic model (gamma = kd_gamma(0) = 0.1,
T = 3, no replay). The reference scores only the new class's test images (new-class recall), which is
why one shot can give 100%: a model that answers "new class" for everything is perfect on it. We also
report the accuracy over all 7 classes and on the basic classes (retention), which it never measured.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.errors import ConfigError
from compound_fer.evaluation.metrics import accuracy, balanced_accuracy, harmonic_mean, step_accuracy
from compound_fer.inputs import Inputs
from compound_fer.training.predict import predict

__all__ = ["FewShotResult", "run_fewshot", "run_zero_shot", "score_fewshot", "fewshot_table"]


@dataclass(frozen=True)
class FewShotResult:
    """One few-shot episode. Accuracies are over the test images of the episode's classes (model labels).

    ``shot_indices``: the ``train`` FaceSet rows used as shots. ``seven_way_accuracy``: accuracy over the
    basic + new classes' test images (8-way when neutral is included; ``n_way`` says which).
    ``basic_accuracy_before``: the basic model's accuracy on the same basic images, for retention.
    """

    compound: str
    shots: int
    seed: int
    shot_indices: list[int]
    new_class_recall: float
    seven_way_accuracy: float
    basic_accuracy: float
    harmonic_mean: float = float("nan")
    balanced_accuracy: float = float("nan")
    basic_accuracy_before: float = float("nan")
    n_way: int = 7
    n_test_new: int = 0
    n_test_basic: int = 0
    epochs: int = 0
    lr: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_fewshot(y_true: Any, y_pred: Any, *, new_class: int, basic_classes: Iterable[int]) -> dict[str, float]:
    """The three scores of an episode from predictions (any label space).

    ``new_class_recall``: correct among the new class's images (the reference's number);
    ``seven_way_accuracy``: correct among all images of the basic and new classes;
    ``basic_accuracy``: correct among the basic classes' images (with the new class a possible answer);
    ``harmonic_mean`` of the recall and the basic accuracy, and ``balanced_accuracy`` (mean per-class recall of
    the basic classes and the new one): the generalised few-shot scores.
    """
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    basic = [int(c) for c in basic_classes]
    keep = np.isin(t, basic + [int(new_class)])
    recall, basic_acc = step_accuracy(t, p, [int(new_class)]), step_accuracy(t, p, basic)
    return {
        "new_class_recall": recall,
        "seven_way_accuracy": accuracy(t[keep], p[keep]),
        "basic_accuracy": basic_acc,
        "harmonic_mean": harmonic_mean(recall, basic_acc),
        "balanced_accuracy": balanced_accuracy(t[keep], p[keep], basic + [int(new_class)]),
    }


def _kd_settings(kd: Any, temperature: float, gamma0: float, teacher_padding: str) -> tuple[float, float, str]:
    if kd is None:
        return temperature, gamma0, teacher_padding
    get = (lambda k, d: kd.get(k, d)) if isinstance(kd, Mapping) else (lambda k, d: getattr(kd, k, d))
    return float(get("temperature", temperature)), float(get("gamma0", gamma0)), str(get("teacher_padding", teacher_padding))


def run_fewshot(
    *,
    basic_model: nn.Module,
    train: FaceSet,
    test: FaceSet,
    compound: str,
    shots: int,
    seed: int = 0,
    epochs: int = 20,
    lr: float = 1e-4,
    batch_size: int = 32,
    inputs: Inputs | None = None,
    include_neutral: bool = False,
    kd: Any = None,
    temperature: float = 3.0,
    gamma0: float = 0.1,
    teacher_padding: str = "zeros",
    trainable: str | None = "tail_head",
    optimizer: str = "adam",
    device: str = "cpu",
    mode: str = "reference",
    quota: int = 17,
    component_init: bool = True,
    prototypes: str = "none",
    bias_correction: Any = None,
    save_to: Any = None,
) -> FewShotResult:
    """Train one 7-way few-shot model from ``basic_model`` (left untouched) and score it both ways.

    ``basic_model`` outputs the basic classes in taxonomy order (6, or 7 with neutral first), as the
    basic phase trains it. ``inputs`` (its ``train`` / ``test`` rows match ``train`` / ``test``) replace
    the images, e.g. cached trunk maps. ``kd`` (a KDConfig or a mapping) overrides ``temperature``,
    ``gamma0`` and ``teacher_padding`` (the KD weight is ``gamma0``: step i = 0). ``trainable`` is the
    FERModel policy (reference: ``"tail_head"``); ``None`` leaves the model's flags as they are.

    ``mode="kept"`` keeps the basic classes: KD+PSMR (a PSMR memory of ``quota`` basic faces per class
    replayed with the shots, KD from the basic model) and, with ``component_init``, the new output
    initialised from the compound's basic components; ``prototypes`` (``imprint`` / ``ncm``, see
    :mod:`~compound_fer.training.prototypes`) sets it from the shots' mean embedding; ``bias_correction`` (a
    BiasCorrection config section, kept mode) corrects the lean toward the basic faces; ``save_to``: the model.
    """
    if shots < 0:
        raise ConfigError(f"few-shot: shots={shots} must be >= 0 (0: the zero-shot row)")
    inputs = inputs if inputs is not None else Inputs.of_images(train=train, test=test)
    if shots == 0:
        return run_zero_shot(basic_model=basic_model, train=train, test=test, compound=compound, inputs=inputs,
                             include_neutral=include_neutral, device=device)
    temperature, gamma0, teacher_padding = _kd_settings(kd, temperature, gamma0, teacher_padding)
    name = taxonomy.by_name(compound).name
    if taxonomy.by_name(name).kind != "compound":
        raise ConfigError(f"few-shot: {name} is not a compound class")
    bench = _episode(basic_model, train=train, test=test, compound=name, shots=shots, seed=seed,
                     include_neutral=include_neutral, inputs=inputs)
    torch.manual_seed(seed)
    student = copy.deepcopy(basic_model)
    if trainable is not None and hasattr(student, "set_trainable"):
        student.set_trainable(trainable)
    teacher_net = inputs.wrap(copy.deepcopy(basic_model))
    kd_opts = {"temperature": temperature, "gamma0": gamma0, "teacher_padding": teacher_padding}
    train_opts = {"lr": lr, "optimizer": optimizer, "epochs": epochs, "batch_size": batch_size, "device": device,
                  "seed": seed}
    strategy, plugin = _episode_strategy(mode, inputs.wrap(student), teacher_net, bench, kd_opts=kd_opts,
                                         train_opts=train_opts, quota=quota, component_init=component_init,
                                         prototypes=prototypes, bias_correction=bias_correction)
    strategy.train(bench.train_stream[1])  # reference: the shots only; kept: the shots + the basic memory
    scores, counts = _score(bench, test, inputs, strategy.model, teacher_net, device=device)
    shot_rows = (bench.settings.get("shots") or {}).get(name, [])
    result = FewShotResult(
        compound=name, shots=shots, seed=seed, shot_indices=[int(i) for i in shot_rows], **counts, epochs=epochs,
        lr=lr, settings={**kd_opts, "gamma": float(plugin.gamma0), "trainable": trainable, "batch_size": batch_size,
                         "mode": mode, "cached": inputs.cached, "classes": list(bench.names),
                         **({"quota": quota, "component_init": component_init, "prototypes": prototypes,
                             "bias_correction": getattr(bias_correction, "label", "none")}
                            if mode == "kept" else {})},
        **scores,
    )
    if save_to is not None:
        _save(student, save_to, bench=bench, mode=mode, compound=name, shots=shots, seed=seed)
    return result


def run_zero_shot(*, basic_model: nn.Module, train: FaceSet, test: FaceSet, compound: str, inputs: Inputs,
                  include_neutral: bool = False, device: str = "cpu") -> FewShotResult:
    """The zero-shot row: the compound's output built from its basic components, no image of it seen, no
    training; scored like a few-shot episode (``shots`` 0, ``settings['mode']`` "zero-shot")."""
    from compound_fer.training.component_init import init_from_components

    name = taxonomy.by_name(compound).name
    bench = _episode(basic_model, train=train, test=test, compound=name, shots=1, seed=0,
                     include_neutral=include_neutral, inputs=inputs)  # the structure only: no shot is used
    model = copy.deepcopy(basic_model)
    model.head.grow(1)
    n_basic = len(bench.experience_classes[0])
    if not init_from_components(model.head, [n_basic], bench.class_order):
        raise ConfigError(f"zero-shot: {name} has no basic components among the model's classes")
    teacher_net = inputs.wrap(copy.deepcopy(basic_model))
    scores, counts = _score(bench, test, inputs, inputs.wrap(model), teacher_net, device=device)
    return FewShotResult(compound=name, shots=0, seed=0, shot_indices=[], **counts, epochs=0, lr=0.0,
                         settings={"mode": "zero-shot", "rule": "mean of the components' output units",
                                   "cached": inputs.cached, "classes": list(bench.names)}, **scores)


def _episode(basic_model: nn.Module, *, train: FaceSet, test: FaceSet, compound: str, shots: int, seed: int,
             include_neutral: bool, inputs: Inputs) -> Any:
    """The episode's benchmark (basic classes, then the shots of ``compound``), checked against the model."""
    from compound_fer.scenarios import fewshot_benchmark

    bench = fewshot_benchmark(
        train=train, test=test, compound=compound, shots=shots, seed=seed, include_neutral=include_neutral,
        train_inputs=inputs.train, test_inputs=inputs.test_view,
        train_transform=inputs.train_transform, eval_transform=inputs.eval_transform,
    )
    n_basic = len(bench.experience_classes[0])
    head_out = getattr(getattr(basic_model, "head", None), "num_classes", None)
    if head_out is not None and head_out != n_basic:
        raise ConfigError(
            f"few-shot: the basic model has {head_out} outputs but the episode has {n_basic} basic classes "
            f"({', '.join(bench.names[:n_basic])}); use the model of the basic phase (include_neutral={include_neutral})"
        )
    return bench


def _episode_strategy(mode: str, net: nn.Module, teacher_net: nn.Module, bench: Any, *, kd_opts: dict,
                      train_opts: dict, quota: int, component_init: bool, prototypes: str = "none",
                      bias_correction: Any = None) -> tuple[Any, Any]:
    """(strategy, its distillation plugin): naive + KD from the basic model (reference), or KD+PSMR (kept)."""
    from compound_fer.training.distillation import DistillationPlugin
    from compound_fer.training.registry import make_strategy

    t = train_opts
    if mode == "kept":
        return _kept_strategy(net, bench, **kd_opts, **t, quota=quota, component_init=component_init,
                              prototypes=prototypes, bias_correction=bias_correction)
    if mode != "reference":
        raise ConfigError(f"fewshot.mode must be 'reference' or 'kept', got {mode!r}")
    plugin = DistillationPlugin(teacher=teacher_net, **kd_opts, teacher_mode="basic")
    strategy = make_strategy("naive", model=net, plugins=[plugin], lr=t["lr"], optimizer=t["optimizer"],
                             train_epochs=t["epochs"], train_mb_size=t["batch_size"], eval_mb_size=256,
                             device=t["device"], seed=t["seed"])
    return strategy, plugin


def _score(bench: Any, test: FaceSet, inputs: Inputs, model: nn.Module, teacher: nn.Module, *,
           device: str) -> tuple[dict[str, float], dict[str, Any]]:
    """The episode's three scores (:func:`score_fewshot`), and the basic model's accuracy and test counts."""
    n_basic = len(bench.experience_classes[0])
    new_label = bench.experience_classes[1][0]
    rows = np.concatenate(list(bench.test_index))
    y_true = bench.to_model_labels(test.labels[torch.as_tensor(rows)]).numpy()
    x_test = inputs.test_x[torch.as_tensor(rows)].float()
    y_pred = predict(model, x_test, device=device).numpy()
    before = predict(teacher, x_test[torch.as_tensor(y_true < n_basic)], device=device).numpy()
    scores = score_fewshot(y_true, y_pred, new_class=new_label, basic_classes=range(n_basic))
    counts = {"basic_accuracy_before": accuracy(y_true[y_true < n_basic], before), "n_way": n_basic + 1,
              "n_test_new": int((y_true == new_label).sum()), "n_test_basic": int((y_true < n_basic).sum())}
    return scores, counts


def _save(student: nn.Module, path: Any, *, bench: Any, mode: str, compound: str, shots: int, seed: int) -> None:
    """Write the few-shot model (for Grad-CAM of the compound it learned)."""
    from compound_fer.fusion import sidecar
    from compound_fer.model_io import save_model

    save_model(student, path, meta={"classes": list(bench.names), "backbone": getattr(student, "name", ""),
                                    "image_size": getattr(student, "image_size", 0), "method": f"fewshot-{mode}",
                                    "compound": compound, "shots": shots, "seed": seed, **sidecar(student)})


def _kept_strategy(net: nn.Module, bench: Any, *, temperature: float, gamma0: float, teacher_padding: str, lr: float,
                   optimizer: str, epochs: int, batch_size: int, device: str, seed: int, quota: int,
                   component_init: bool, prototypes: str = "none", bias_correction: Any = None) -> tuple[Any, Any]:
    """KD+PSMR over the episode: experience 0 (zero epochs) fills the PSMR memory with basic faces and
    snapshots the basic model as the KD teacher; the returned strategy then trains the shots + memory."""
    from compound_fer.training.component_init import ComponentInitPlugin
    from compound_fer.training.registry import make_strategy

    plugins = [ComponentInitPlugin(class_order=bench.class_order)] if component_init else []
    if prototypes != "none":
        from compound_fer.training.prototypes import PrototypePlugin

        plugins.append(PrototypePlugin(mode=prototypes, device=device))
    if bias_correction is not None:
        from compound_fer.training.bias_correction import plugins_for

        plugins.extend(plugins_for(bias_correction, seed=seed))
    n_total = len(bench.class_order)
    strategy = make_strategy(
        "kdpsmr", model=net, plugins=plugins, lr=lr, optimizer=optimizer, train_epochs=epochs, train_mb_size=batch_size,
        eval_mb_size=256, device=device, seed=seed, mem_size=quota * n_total, num_classes_total=n_total,
        extra={"temperature": temperature, "gamma0": gamma0, "teacher_padding": teacher_padding, "quota": quota},
    )
    strategy.train_epochs = 0
    strategy.train(bench.train_stream[0])  # zero epochs: memory of basic faces, teacher = the basic model
    strategy.train_epochs = epochs
    return strategy, strategy.kd


_SCORES = ("harmonic_mean", "new_class_recall", "basic_accuracy", "balanced_accuracy", "seven_way_accuracy")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fewshot_table(results: Iterable[FewShotResult | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof=1; 0 for a single run) of the three scores per shot count (``compound``
    = "all", over every compound class and seed) and per (compound, shots); rows sorted by shots."""
    rows = [r.to_dict() if isinstance(r, FewShotResult) else dict(r) for r in results]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault(("all", int(r["shots"])), []).append(r)
        groups.setdefault((str(r["compound"]), int(r["shots"])), []).append(r)
    out = []
    for (compound, shots), members in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0] != "all", kv[0][0])):
        row: dict[str, Any] = {"compound": compound, "shots": shots, "n": len(members)}
        for key in _SCORES:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([m[key] for m in members])
        out.append(row)
    return out
