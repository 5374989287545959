"""The few-shot phase beside the continual one, as the same stages: build, train, score, row.

One episode: copy the basic model, grow it by one compound class, train on ``shots`` images of it (the
reference: the shots only, distilling from the frozen basic model; ``kept``: KD + PSMR with a memory of basic
faces) and score it both ways (:func:`~compound_fer.training.fewshot.score_fewshot`). Plugin assembly and
model saving are the continual run's (:mod:`compound_fer.runner.continual`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from compound_fer import distributed as dist
from compound_fer import taxonomy
from compound_fer.config import KDConfig, ProtocolConfig
from compound_fer.data.faceset import FaceSet
from compound_fer.errors import ConfigError
from compound_fer.evaluation.metrics import accuracy
from compound_fer.evaluation.rows import FewShotRow, Row, row_from_dict
from compound_fer.inputs import Inputs
from compound_fer.io import write_json
from compound_fer.prediction.recipe import build_recipe
from compound_fer.runner.continual import component_plugins, save_run_model
from compound_fer.runner.dataset import Splits
from compound_fer.runner.plan import RunPlan, config_options
from compound_fer.runner.rows import read_row
from compound_fer.scenarios import fewshot_benchmark
from compound_fer.training.component_init import init_from_components
from compound_fer.training.distillation import DistillationPlugin
from compound_fer.training.entry import KDOptions
from compound_fer.training.fewshot import FewShotResult, score_fewshot
from compound_fer.training.imprinting import TEEN_TAU, ImprintPlugin
from compound_fer.training.predict import predict
from compound_fer.training.registry import make_strategy

__all__ = ["Episode", "EpisodeSettings", "FewShotRun", "run_episode", "run_fewshot_phase", "run_zero_shot"]

MODES = ("reference", "kept")


@dataclass(frozen=True)
class Episode:
    """What one episode learns: ``shots`` images of ``compound`` (0: the zero-shot row), the episode's seed
    and its mode (``reference``: the shots only + KD; ``kept``: KD + PSMR memory of basic faces)."""

    compound: str
    shots: int
    seed: int = 0
    mode: str = "reference"


@dataclass(frozen=True, kw_only=True)
class EpisodeSettings:
    """How episodes train. Defaults ``epochs``/``lr`` are ours: the reference used Adam 1e-5 with early
    stopping on the fold it reports. ``trainable``: the FERModel policy (reference: conv5 + head, ``tail_head``;
    None leaves the flags); ``quota``, ``component_init`` and ``prototypes`` apply to kept episodes."""

    epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 32
    include_neutral: bool = False
    kd: KDConfig = field(default_factory=KDConfig)
    trainable: str | None = "tail_head"
    optimizer: str = "adam"
    device: str = "cpu"
    quota: int = 17
    component_init: bool = True
    prototypes: str = "none"
    bias_correction: Any = None  # a BiasCorrection section (kept episodes): the lean toward the basic faces
    memory_selection: str = "top"  # kept episodes: which ranks of each basic class the memory keeps
    imprint: Any = None  # an ImprintConfig (kept episodes): the new unit weighs its shots against its components

    @classmethod
    def from_config(cls, cfg: ProtocolConfig, *, mode: str, quota: int) -> "EpisodeSettings":
        """The settings of the config's few-shot phase (kept episodes train what continual steps train)."""
        few = cfg.fewshot
        return cls(epochs=few.epochs, lr=few.lr, batch_size=few.batch_size, include_neutral=cfg.data.include_neutral,
                   kd=config_options(cfg, KDOptions),
                   trainable="tail_head" if mode == "reference" else cfg.continual.trainable,
                   quota=quota, component_init=few.component_init, prototypes=few.prototypes,
                   bias_correction=few.bias_correction, memory_selection=few.memory_selection,
                   imprint=few.imprint, device=cfg.device)


@dataclass
class FewShotRun:
    """One episode between stages: its benchmark, the student being trained, the frozen basic teacher."""

    episode: Episode
    settings: EpisodeSettings
    bench: Any
    student: nn.Module
    teacher_net: nn.Module
    strategy: Any = None
    plugin: Any = None


def _episode_benchmark(basic_model: nn.Module, episode: Episode, *, train: FaceSet, test: FaceSet,
                       include_neutral: bool, inputs: Inputs) -> Any:
    """The episode's benchmark (basic classes, then the shots of the compound), checked against the model."""
    bench = fewshot_benchmark(
        train=train, test=test, compound=episode.compound, shots=max(1, episode.shots), seed=episode.seed,
        include_neutral=include_neutral, inputs=inputs,
    )
    n_basic = len(bench.experience_classes[0])
    head_out = getattr(getattr(basic_model, "head", None), "num_classes", None)
    if head_out is not None and head_out != n_basic:
        raise ConfigError(
            f"few-shot: the basic model has {head_out} outputs but the episode has {n_basic} basic classes "
            f"({', '.join(bench.names[:n_basic])}); use the model of the basic phase "
            f"(include_neutral={include_neutral})"
        )
    return bench


def build(episode: Episode, settings: EpisodeSettings, *, basic_model: nn.Module, train: FaceSet, test: FaceSet,
          inputs: Inputs) -> FewShotRun:
    """Stage 1: the episode's benchmark, a seeded copy of the basic model and the episode's strategy."""
    if episode.mode not in MODES:
        raise ConfigError(f"fewshot.mode must be 'reference' or 'kept', got {episode.mode!r}")
    bench = _episode_benchmark(basic_model, episode, train=train, test=test, include_neutral=settings.include_neutral,
                               inputs=inputs)
    torch.manual_seed(episode.seed)
    student = copy.deepcopy(basic_model)
    if settings.trainable is not None and hasattr(student, "set_trainable"):
        student.set_trainable(settings.trainable)
    run = FewShotRun(episode, settings, bench, student, inputs.wrap(copy.deepcopy(basic_model)))
    s, kd = settings, settings.kd
    common = dict(lr=s.lr, optimizer=s.optimizer, train_epochs=s.epochs, train_mb_size=s.batch_size, eval_mb_size=256,
                  device=s.device, seed=episode.seed)
    # every field of continual.kd (as its continual methods inherit them); the teacher is the basic model
    kd_opts = {**{k: getattr(kd, k) for k in KDConfig.model_fields}, "teacher_mode": "basic"}
    net = inputs.wrap(student)
    if episode.mode == "reference":
        run.plugin = DistillationPlugin(teacher=run.teacher_net, **kd_opts)
        run.strategy = make_strategy("naive", model=net, plugins=[run.plugin], **common)
        return run
    plugins, _ = component_plugins(class_order=bench.class_order, rule="mean" if s.component_init else "none",
                                   prototypes=s.prototypes, device=s.device, bias=s.bias_correction,
                                   seed=episode.seed)
    imprint = s.imprint if s.imprint is not None and s.imprint.mode != "none" else None
    if imprint is not None:  # after component init: the blend of the shots and the components' prior
        plugins.append(ImprintPlugin(class_order=bench.class_order, alpha=imprint.alpha, kappa=imprint.kappa,
                                     shots=episode.shots, device=s.device))
    n_total = len(bench.class_order)
    run.strategy = make_strategy("kdpsmr", model=net, plugins=plugins, mem_size=s.quota * n_total,
                                 num_classes_total=n_total,
                                 options={**kd_opts, "quota": s.quota, "selection": s.memory_selection}, **common)
    run.plugin = run.strategy.kd
    run.strategy.train_epochs = 0
    run.strategy.train(bench.train_stream[0])  # zero epochs: memory of basic faces, teacher = the basic model
    run.strategy.train_epochs = 0 if imprint is not None and imprint.mode == "frozen" else s.epochs
    return run


def train_episode(run: FewShotRun) -> None:
    """Stage 2: reference: the shots only; kept: the shots + the basic memory."""
    run.strategy.train(run.bench.train_stream[1])


def score(bench: Any, test: FaceSet, inputs: Inputs, model: nn.Module, teacher: nn.Module, *,
          device: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Stage 3: the episode's three scores (:func:`score_fewshot`), the basic model's accuracy, test counts."""
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


def _imprint_label(imprint: Any) -> Any:
    """What a kept row says of fewshot.imprint: ``none`` or its mode, alpha, kappa and TEEN's tau."""
    if imprint is None or imprint.mode == "none":
        return "none"
    return {"mode": imprint.mode, "alpha": imprint.alpha, "kappa": imprint.kappa, "tau": TEEN_TAU}


def result(run: FewShotRun, scores: dict[str, float], counts: dict[str, Any], *, cached: bool) -> FewShotResult:
    """Stage 4: the episode's result (its row, without the repeat)."""
    e, s, kd = run.episode, run.settings, run.settings.kd
    shot_rows = (run.bench.settings.get("shots") or {}).get(e.compound, [])
    settings = {"temperature": kd.temperature, "gamma0": kd.gamma0, "teacher_padding": kd.teacher_padding,
                **({"feature_weight": kd.feature_weight} if kd.feature_weight else {}),
                "gamma": float(run.plugin.gamma0), "trainable": s.trainable, "batch_size": s.batch_size,
                "mode": e.mode, "cached": cached, "classes": list(run.bench.names),
                **({"quota": s.quota, "component_init": s.component_init, "prototypes": s.prototypes,
                    "bias_correction": getattr(s.bias_correction, "label", "none"),
                    "memory_selection": s.memory_selection, "imprint": _imprint_label(s.imprint)}
                   if e.mode == "kept" else {})}
    return FewShotResult(compound=e.compound, shots=e.shots, seed=e.seed, shot_indices=[int(i) for i in shot_rows],
                         **counts, epochs=s.epochs, lr=s.lr, settings=settings, **scores)


def run_episode(episode: Episode, settings: EpisodeSettings = EpisodeSettings(), *, basic_model: nn.Module,
                train: FaceSet, test: FaceSet, inputs: Inputs | None = None, save_to: Path | None = None,
                recipe: dict | None = None) -> FewShotResult:
    """Train one few-shot model from ``basic_model`` (left untouched) and score it, stage by stage.

    ``basic_model`` outputs the basic classes in taxonomy order (6, or 7 with neutral first), as the basic
    phase trains it. ``inputs`` (rows matching ``train`` / ``test``) replace the images, e.g. cached trunk
    maps. The few-shot step is continual step i = 0, so the KD weight is ``gamma0``. ``save_to``: the model,
    with ``recipe`` (:func:`compound_fer.prediction.recipe.build_recipe`) in its metadata."""
    if episode.shots < 0:
        raise ConfigError(f"few-shot: shots={episode.shots} must be >= 0 (0: the zero-shot row)")
    inputs = inputs if inputs is not None else Inputs.of_images(train=train, test=test)
    inputs = inputs.for_trainable(settings.trainable)  # head only: pooled embeddings, if made
    name = taxonomy.by_name(episode.compound).name
    if taxonomy.by_name(name).kind != "compound":
        raise ConfigError(f"few-shot: {name} is not a compound class")
    episode = Episode(name, episode.shots, episode.seed, episode.mode)
    if episode.shots == 0:
        return run_zero_shot(episode, settings, basic_model=basic_model, train=train, test=test, inputs=inputs)
    run = build(episode, settings, basic_model=basic_model, train=train, test=test, inputs=inputs)
    train_episode(run)
    scores, counts = score(run.bench, test, inputs, run.strategy.model, run.teacher_net, device=settings.device)
    if save_to is not None:
        save_run_model(run.student, save_to, classes=run.bench.names,
                       info={"backbone": getattr(run.student, "name", ""),
                             "image_size": getattr(run.student, "image_size", 0), "method": f"fewshot-{episode.mode}",
                             "compound": name, "shots": episode.shots, "seed": episode.seed,
                             **({"recipe": recipe} if recipe is not None else {})})
    return result(run, scores, counts, cached=inputs.cached)


def run_zero_shot(episode: Episode, settings: EpisodeSettings = EpisodeSettings(), *, basic_model: nn.Module,
                  train: FaceSet, test: FaceSet, inputs: Inputs) -> FewShotResult:
    """The zero-shot row: the compound's output built from its basic components, no image of it seen, no
    training; scored like a few-shot episode (``shots`` 0, ``settings['mode']`` "zero-shot")."""
    name = taxonomy.by_name(episode.compound).name
    zero = Episode(name, 0, 0, "reference")
    bench = _episode_benchmark(basic_model, zero, train=train, test=test, include_neutral=settings.include_neutral,
                               inputs=inputs)  # the structure only: no shot is used
    model = copy.deepcopy(basic_model)
    model.head.grow(1)
    n_basic = len(bench.experience_classes[0])
    if not init_from_components(model.head, [n_basic], bench.class_order):
        raise ConfigError(f"zero-shot: {name} has no basic components among the model's classes")
    teacher_net = inputs.wrap(copy.deepcopy(basic_model))
    scores, counts = score(bench, test, inputs, inputs.wrap(model), teacher_net, device=settings.device)
    return FewShotResult(compound=name, shots=0, seed=0, shot_indices=[], **counts, epochs=0, lr=0.0,
                         settings={"mode": "zero-shot", "rule": "mean of the components' output units",
                                   "cached": inputs.cached, "classes": list(bench.names)}, **scores)


def run_fewshot_phase(plan: RunPlan, *, basic_model: nn.Module, splits: Splits, inputs: Inputs, seed: int,
                      out_dir: Path, resume: bool = False, progress: bool = True) -> list[Row]:
    """The few-shot protocol for every compound class and shot count of the plan; one row each, written
    as soon as it is complete."""
    cfg = plan.config
    compounds = cfg.fewshot.compounds or tuple(c.name for c in taxonomy.categories("compound"))
    quota = plan.stream_memory(len(splits.train)).quota  # kept mode: the continual protocol's per-class memory
    rows: list[Row] = []
    modes = MODES if cfg.fewshot.mode == "both" else (cfg.fewshot.mode,)
    shots_of = {m: [s for s in cfg.fewshot.shots if s > 0 or m == modes[0]] for m in modes}  # zero-shot: once
    episodes = [(m, s, r, c) for m in modes for s in shots_of[m] for r in range(1 if s == 0 else cfg.fewshot.repeats)
                for c in compounds]
    for mode, shots, rep, name in tqdm(episodes, desc="few-shot episodes", unit="episode", disable=not progress,
                                       leave=False):
        tag = "" if mode == "reference" or shots == 0 else f"_{mode}"  # modes side by side
        stem = f"fewshot_seed{seed}_{taxonomy.normalise_name(name)}_{shots}shot"
        path = out_dir / "rows" / f"{stem}_r{rep}{tag}.json"
        done = read_row(path) if resume else None
        if done is not None:
            rows.append(row_from_dict(done))
            continue
        save = cfg.fewshot.save_models and rep == 0 and shots == max(cfg.fewshot.shots) and dist.is_main()
        res = run_episode(Episode(name, shots, seed * 100 + rep, mode),
                          EpisodeSettings.from_config(cfg, mode=mode, quota=quota), basic_model=basic_model,
                          train=splits.train, test=splits.test, inputs=inputs,
                          save_to=out_dir / "models" / f"{stem}{tag}.pt" if save else None,
                          recipe=build_recipe(cfg, basic_model) if save else None)
        row = FewShotRow(repeat=rep, **asdict(res))  # seed: the episode's (seed x 100 + repeat)
        write_json(path, row.to_dict())
        rows.append(row)
    return rows
