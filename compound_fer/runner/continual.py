"""One method over one class order, as named stages: build, resume, train one step, score, write the row.

Experience 0 replays the shared basic model through the strategy with zero epochs (so its plugins record
their state), then one compound class (or ``classes_per_step``) per experience.
"""

from __future__ import annotations

import copy
import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.logging import CSVLogger, TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from torch import nn

from compound_fer import distributed as dist
from compound_fer.checkpoint import CheckpointError, StepCheckpoint, benchmark_refs, step_pause
from compound_fer.config import ProtocolConfig
from compound_fer.evaluation.metrics import ContinualRecord
from compound_fer.evaluation.rows import ContinualRow
from compound_fer.fusion import sidecar
from compound_fer.inputs import Inputs
from compound_fer.labels import to_model_labels
from compound_fer.model_io import save_model
from compound_fer.prediction.recipe import build_recipe
from compound_fer.runner.basic import basic_labels
from compound_fer.runner.dataset import Splits
from compound_fer.runner.plan import MethodPlan, RunPlan
from compound_fer.scenarios import basic_to_compound
from compound_fer.seeding import seed_everything
from compound_fer.training.bias_correction import bias_history, plugins_for
from compound_fer.training.component_init import ComponentInitPlugin
from compound_fer.training.heads import pregrow_head
from compound_fer.training.prototypes import PrototypePlugin
from compound_fer.training.purified import benchmark_subjects
from compound_fer.training.registry import make_strategy

log = logging.getLogger(__name__)


def make_evaluator(cfg: ProtocolConfig, log_dir: Path | None) -> Any:
    """Avalanche's epoch loss/accuracy metrics to its CSV and TensorBoard loggers (nothing on stdout)."""

    loggers = []
    if log_dir is not None:
        if "csv" in cfg.loggers:
            loggers.append(CSVLogger(log_folder=str(log_dir / "csv")))
        if "tensorboard" in cfg.loggers:
            loggers.append(TensorboardLogger(tb_log_dir=str(log_dir / "tensorboard")))
    return EvaluationPlugin(loss_metrics(epoch=True), accuracy_metrics(epoch=True), loggers=loggers)


def _close_loggers(evaluator: Any) -> None:
    for lg in getattr(evaluator, "loggers", []):
        close = getattr(lg, "close", None)
        if close:
            close()


@dataclass(frozen=True)
class OrderJob:
    """One continual run: a method of the plan over one class order, with the seed of its basic model."""

    method: MethodPlan
    order_index: int
    order: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class RunFiles:
    """Where a continual run writes: its model (``save_to``), Avalanche logs, its step checkpoint (``resume``:
    continue from it)."""

    save_to: Path | None = None
    log_dir: Path | None = None
    checkpoint: Path | None = None
    resume: bool = False


@dataclass
class ContinualRun:
    """Everything one (method, order) run holds between stages. ``model`` is the FERModel being trained,
    ``net`` what the strategy trains (the model itself, or its tail + head on cached maps)."""

    method: str
    order_index: int
    order: list[str]
    seed: int
    model: nn.Module
    net: nn.Module
    strategy: Any
    evaluator: Any
    bench: Any
    memory_total: int
    quota: int
    self_capping: bool
    test_x: torch.Tensor
    test_y: np.ndarray
    record: ContinualRecord
    step_seconds: list[float] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)
    first_step: int = 0
    prior: Any = None  # ComponentInitPlugin (continual.component_init): its zero-shot scores go in the row
    bias: str = "none"  # continual.bias_correction, as the row says it
    samples: SampleCount | None = None  # training samples per experience

    @property
    def experience_classes(self) -> list[list[int]]:
        return [list(c) for c in self.bench.experience_classes]


class SampleCount(SupervisedPlugin):
    """Counts the training samples (minibatch rows, replayed ones included) of each experience: what a step's
    time is spent on, so methods' step times compare per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.per_step: list[int] = []

    def before_training_exp(self, strategy, **kwargs):  # noqa: ANN001
        self.per_step.append(0)

    def after_training_iteration(self, strategy, **kwargs):  # noqa: ANN001
        self.per_step[-1] += len(strategy.mb_y)


def component_plugins(*, class_order: Sequence[int], rule: str, prototypes: str, device: str, probe: Any = None,
                      bias: Any = None, seed: int = 0) -> tuple[list[Any], Any]:
    """The plugins that set new outputs (continual and kept few-shot runs alike): compound outputs from their
    basic components (``rule`` "none": off), then class prototypes, then the old/new bias corrections of
    ``bias`` (a BiasCorrection section); returns (plugins, the component plugin)."""
    plugins: list[Any] = []
    prior = None
    if rule != "none":
        prior = ComponentInitPlugin(class_order=class_order, probe=probe, rule=rule, device=device)
        plugins.append(prior)
    if prototypes != "none":  # after component init: imprinting sees the class's faces
        plugins.append(PrototypePlugin(mode=prototypes, device=device))
    if bias is not None:
        plugins.extend(plugins_for(bias, seed=seed))
    return plugins, prior


def build(plan: RunPlan, job: OrderJob, *, basic_model: nn.Module, splits: Splits, inputs: Inputs,
          log_dir: Path | None = None) -> ContinualRun:
    """Stage 1: a seeded copy of the basic model, the benchmark of this order and the method's strategy."""
    cfg, entry = plan.config, job.method.entry
    seed_everything(job.seed * 1000 + job.order_index)
    model = copy.deepcopy(basic_model)
    model.set_trainable(cfg.continual.trainable)
    n_total = len(basic_labels(cfg)) + len(job.order)
    if dist.is_distributed():  # DDP needs fixed parameter shapes: grow the head now, units masked until trained
        pregrow_head(model.head, n_total)
    net = inputs.wrap(model)
    resolved = plan.resolve(job.method, n_train_images=len(splits.train), n_classes_total=n_total)
    budget = resolved.memory  # the memory this method uses, as its row records it
    self_capping = entry.caps_new_class
    bench = basic_to_compound(
        train=splits.train, test=splits.test, compound_order=list(job.order),
        include_neutral=cfg.data.include_neutral, classes_per_exp=cfg.continual.classes_per_step,
        new_class_cap=budget.quota if (cfg.continual.cap_new_class and not self_capping
                                       and cfg.continual.shots is None) else None,
        shots=cfg.continual.shots, seed=job.seed, inputs=inputs,
    )
    # PurifiedLearning: subject ids of every training sample, experience by experience
    subjects = benchmark_subjects(bench, splits.train) if entry.needs_subjects else None
    evaluator = make_evaluator(cfg, log_dir)
    counter = SampleCount()
    test_y = to_model_labels(splits.test.labels, bench.class_order).numpy()
    bias = cfg.continual.bias_correction.for_method(job.method.name)
    own, prior = component_plugins(class_order=bench.class_order, probe=(inputs.test_x, test_y), device=cfg.device,
                                   rule=cfg.continual.component_rule if cfg.continual.component_init else "none",
                                   prototypes=cfg.continual.prototypes, bias=bias, seed=job.seed)
    strategy = make_strategy(
        job.method.name, model=net, evaluator=evaluator, lr=cfg.continual.lr, optimizer=cfg.continual.optimizer,
        train_epochs=cfg.continual.epochs, train_mb_size=cfg.continual.batch_size, eval_mb_size=256,
        device=cfg.device, mem_size=budget.total, num_classes_total=n_total, seed=job.seed,
        options=resolved.options, subjects=subjects, plugins=[*dist.training_plugins(), *own, counter],
    )
    exp_classes = [list(c) for c in bench.experience_classes]
    return ContinualRun(
        method=job.method.name, order_index=job.order_index, order=list(job.order), seed=job.seed, model=model,
        net=net, strategy=strategy, evaluator=evaluator, bench=bench, memory_total=budget.total, quota=budget.quota,
        self_capping=self_capping, test_x=inputs.test_x, test_y=test_y,
        record=ContinualRecord(basic_classes=exp_classes[0]), prior=prior,
        bias=bias.label, samples=counter,
    )


_STATE = ("strategy", "model", "net", "record", "step_seconds", "samples")


def resume_state(run: ContinualRun, *, checkpoint: Path | None, inputs: Inputs, resume: bool) -> Any:
    """Stage 2: the step checkpoint of this run (None without one); with ``resume`` its saved state is
    loaded into ``run``, which then continues with the next experience."""
    if checkpoint is None:
        return None
    # saved by reference (rebuilt bit for bit on resume): the evaluator (open log files), cached maps, the
    # benchmark's data sets, and every tensor equal to the untrained model's (frozen trunk, KD teacher)
    ckpt = StepCheckpoint(path=checkpoint, reference=run.model,
                          external={"evaluator": run.evaluator, "train_inputs": inputs.train,
                                    "test_inputs": inputs.test, **benchmark_refs(run.bench.benchmark)})
    if not resume:
        return ckpt
    try:
        loaded = ckpt.load()
    except CheckpointError as err:
        log.warning("resume: %s; starting this run from step 0", err)
        return ckpt
    if loaded is not None:
        done, st = loaded
        for k in _STATE:
            setattr(run, k, st[k])
        run.start -= st["elapsed"]
        run.first_step = done + 1
        log.info("resume: %s order %d from step %d (checkpoint %s)", run.method, run.order_index, run.first_step,
                 checkpoint)
    return ckpt


def train_step(run: ContinualRun, step: int, experience: Any, *, pause: bool = False) -> None:
    """Stage 3: train one experience (zero epochs on experience 0: the basic model is shared)."""
    t0 = time.perf_counter()
    epochs = run.strategy.train_epochs
    if step == 0:
        run.strategy.train_epochs = 0  # record plugin state, train nothing
    try:
        run.strategy.train(experience)
    finally:
        run.strategy.train_epochs = epochs
    if pause:
        step_pause()  # test hook (COMPOUND_FER_STEP_PAUSE): lets a test kill the run mid-step
    run.step_seconds.append(time.perf_counter() - t0)


def score(run: ContinualRun, step: int, *, device: str) -> None:
    """Stage 4: predict the test images of every class seen so far and add the step to the record."""
    exp_classes = run.experience_classes
    seen = [c for cs in exp_classes[: step + 1] for c in cs]
    mask = np.isin(run.test_y, seen)
    # strategy.model, not net: GDumb replaces the model and iCaRL wraps it with its class-mean classifier
    pred = dist.predict(run.strategy.model, run.test_x[torch.from_numpy(mask)], device=device).numpy()
    run.record.add_step(run.test_y[mask], pred, new_classes=exp_classes[step])


def save_step(run: ContinualRun, ckpt: Any, step: int) -> Any:
    """After a step: its checkpoint (rank 0); returns the checkpoint, or None once the state cannot be pickled."""
    if ckpt is None or not dist.is_main():
        return ckpt
    state = {k: getattr(run, k) for k in _STATE}
    try:
        ckpt.save(step=step, state={**state, "elapsed": time.perf_counter() - run.start})
    except (pickle.PicklingError, TypeError, AttributeError) as err:  # a plugin holding an unpicklable object
        log.warning("step checkpoints off for %s order %d: its state cannot be pickled (%s); the row is "
                    "still written when the order ends, and a resumed run redoes this order from step 0",
                    run.method, run.order_index, err)
        return None
    return ckpt


def finish(cfg: ProtocolConfig, run: ContinualRun, *, mode: str, save_to: Path | None = None,
           trunk_cache_seconds: float | None = None) -> ContinualRow:
    """Stage 5: close the loggers, save the model (rank 0) and build the results row."""
    seconds = time.perf_counter() - run.start
    # under torchrun: every rank must end with the same weights (a collective: all ranks call it)
    in_sync = dist.same_on_all_ranks(run.strategy.model) if dist.is_distributed() else None
    _close_loggers(run.evaluator)
    if save_to is not None and run.strategy.model is run.net and dist.is_main():  # GDumb/iCaRL: not saved
        save_run_model(run.model, save_to, classes=run.bench.names,
                       info={"backbone": cfg.model.backbone, "head": cfg.model.head, "image_size": cfg.data.image_size,
                             "method": run.method, "order": run.order, "seed": run.seed,
                             "recipe": build_recipe(cfg, run.model)})
    return ContinualRow(
        method=run.method, order_index=run.order_index, order=run.order, seed=run.seed,
        memory_total=run.memory_total, memory_quota=run.quota, new_class_cap=None if run.self_capping else run.quota,
        seconds=round(seconds, 2), step_seconds=[round(s, 3) for s in run.step_seconds],
        step_samples=list(run.samples.per_step) if run.samples is not None else None,
        train_seconds_after_basic=round(sum(run.step_seconds[1:]), 2), class_names=list(run.bench.names),
        **run.record.to_dict(), ranks_in_sync=in_sync,
        trunk_cache_seconds=None if trunk_cache_seconds is None else round(trunk_cache_seconds, 2),
        mode=mode, world_size=dist.world_size(), zero_shot=run.prior.zero_shot if run.prior is not None else None,
        bias_correction=run.bias, bias_steps=bias_history(run.strategy),
    )


def save_run_model(model: nn.Module, path: Path, *, classes: Sequence[str], info: dict[str, Any]) -> None:
    """Write a trained model with its classes, ``info`` and its fusion sidecar (continual and few-shot runs)."""
    save_model(model, path, meta={"classes": list(classes), **info, **sidecar(model)})


def run_continual(plan: RunPlan, job: OrderJob, *, basic_model: nn.Module, splits: Splits, inputs: Inputs,
                  files: RunFiles = RunFiles(), trunk_cache_seconds: float | None = None) -> ContinualRow:
    """One method over one class order, stage by stage; returns its results row.

    ``files.checkpoint``: after every completed experience the state is saved there (compound_fer.checkpoint);
    with ``files.resume`` a saved state is loaded and the run continues with the next experience."""
    entry = job.method.entry
    if not entry.needs_maps:  # head only: pooled embeddings (mirrored pairs for iCaRL), if made
        inputs = inputs.for_trainable(plan.config.continual.trainable, mirrored=entry.flips_inputs)
    run = build(plan, job, basic_model=basic_model, splits=splits, inputs=inputs, log_dir=files.log_dir)
    ckpt = resume_state(run, checkpoint=files.checkpoint, inputs=inputs, resume=files.resume)
    for step, experience in enumerate(run.bench.benchmark.train_stream):
        if step < run.first_step:
            continue
        train_step(run, step, experience, pause=ckpt is not None)
        score(run, step, device=plan.device)
        ckpt = save_step(run, ckpt, step)
    return finish(plan.config, run, mode=splits.info["mode"], save_to=files.save_to,
                  trunk_cache_seconds=trunk_cache_seconds)
