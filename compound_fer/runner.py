"""The protocol runner: basic phase, continual phase (N class orders x methods), few-shot phase.

Data flows one way: files -> faces -> splits -> basic model -> cached trunk maps -> scenario ->
strategy -> per-step predictions -> metrics rows -> tables and figures. Every row is written to disk
atomically as soon as it is complete, so a killed run loses at most the row in progress (`resume=True`
skips completed rows).
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig, dump_config
from compound_fer.data.faceset import FaceSet
from compound_fer.errors import ConfigError, DataError, WeightsError
from compound_fer.io import provenance, write_json, write_text

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU determinism; one source of truth for the seed in force)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------- data
def load_dataset(cfg: ProtocolConfig, *, path: str | None = None, progress: bool = True) -> FaceSet:
    """The faces the config names: the procedural synthetic set, or a CFEE / labelled folder."""
    names = [c.name for c in taxonomy.categories(("neutral", "basic", "compound") if cfg.data.include_neutral
                                                  else ("basic", "compound"))]
    if path is None and cfg.data.source == "synthetic":
        from compound_fer.data.synthetic import generate

        s = cfg.data.synthetic
        return generate(categories=names, n_subjects=s.n_subjects, per_subject=s.per_subject,
                        image_size=cfg.data.image_size, seed=s.seed, progress=progress)
    from compound_fer.data.load import load_faces

    root = path or cfg.data.path
    faces = load_faces(root, image_size=cfg.data.image_size, method=cfg.data.face_method,
                       margin=cfg.data.face_margin, progress=progress)
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


_EXTERNAL_NEEDS_STRICT = ("--test-data (data.test_path) needs evaluation.mode: strict, got {mode!r}: the reference "
                          "mode reports its validation fold and has no test set; drop --mode reference or --test-data")


def make_splits(cfg: ProtocolConfig, faces: FaceSet, *, seed: int, test_faces: FaceSet | None = None) -> Splits:
    """strict: subject-disjoint train/val/test, or an external test set; reference: val fold doubles as test."""
    from compound_fer.data import splits as sp

    subjects = faces.subjects.numpy()
    labels = faces.labels.numpy()
    ev = cfg.evaluation
    if test_faces is not None:
        if ev.mode != "strict":
            raise ConfigError(_EXTERNAL_NEEDS_STRICT.format(mode=ev.mode))
        # Every subject of --data trains (a small validation share for early stopping); the folder tests.
        ext = sp.external_test(faces, test_faces)  # warns when subject ids overlap, fails when no class is shared
        s = sp.split_by_subject(subjects, val=ev.val_fraction, test=0.0, seed=seed, labels=labels)
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
    if ev.mode == "strict":
        s = sp.split_by_subject(subjects, val=ev.val_fraction, test=ev.test_fraction, seed=seed, labels=labels)
    else:
        s = sp.reference_split(subjects, k=ev.folds, fold=ev.fold, seed=seed)
    parts = {k: faces.subset(getattr(s, k)) for k in ("train", "val", "test")}
    info = {"mode": ev.mode, **{f"{k}_subjects": int(len(np.unique(v.subjects.numpy()))) for k, v in parts.items()},
            **{f"{k}_images": len(v) for k, v in parts.items()}}
    if ev.mode == "reference":
        info["note"] = "reference quirk: the validation fold drives early stopping and is also the reported test"
    return Splits(parts["train"], parts["val"], parts["test"], info)


# ------------------------------------------------------------------------------------------ phases
def basic_labels(cfg: ProtocolConfig) -> tuple[int, ...]:
    return tuple(taxonomy.label_of(n) for n in taxonomy.basic_names(include_neutral=cfg.data.include_neutral))


def build_basic_model(cfg: ProtocolConfig, num_classes: int):
    from compound_fer.models import build_model

    return build_model(cfg.model.backbone, num_classes=num_classes, pretrained=cfg.model.pretrained,
                       head=cfg.model.head, dropout=cfg.model.dropout, image_size=cfg.data.image_size)


def _to_model_labels(global_labels: torch.Tensor, class_order: Sequence[int]) -> torch.Tensor:
    lut = torch.full((len(taxonomy.CATEGORIES),), -1, dtype=torch.long)
    lut[torch.as_tensor(list(class_order))] = torch.arange(len(class_order))
    return lut[global_labels]


def train_basic_phase(cfg: ProtocolConfig, splits: Splits, *, seed: int, out_dir: Path, resume: bool = False,
                      progress: bool = True, model=None, inputs: "Inputs | None" = None):
    """Train (or, on resume, load) the basic model; returns (model, info dict).

    With ``inputs`` (cached trunk maps of the pretrained trunk; only valid when the trunk stays frozen,
    ``basic.trainable`` = tail_head or head) the basic phase trains on the maps too: ~10x faster on CPU.
    """
    from compound_fer.data.augment import make_augment
    from compound_fer.model_io import load_state_dict, save_model
    from compound_fer.training.basic import accuracy, train_basic

    labels = basic_labels(cfg)
    seed_everything(seed)  # before building: the head's (and an unpretrained trunk's) init is seeded too
    model = model if model is not None else build_basic_model(cfg, len(labels))
    weights = out_dir / "models" / f"basic_seed{seed}.pt"
    meta_path = weights.with_suffix(".json")
    if resume and weights.is_file() and meta_path.is_file():
        try:
            info = json.loads(meta_path.read_text())
            model.load_state_dict(load_state_dict(weights))
        except (WeightsError, ValueError, RuntimeError) as err:  # half-written or foreign files: train again
            log.warning("resume: %s cannot be reloaded (%s); training the basic phase again", weights, err)
        else:
            info.pop("format", None)  # file metadata, not a result: the row equals a fresh run's
            log.info("basic phase: loaded %s (resume)", weights)
            return model, info
    tr, va, te = (s.where(labels=labels) for s in (splits.train, splits.val, splits.test))
    for part, name in ((tr, "train"), (va, "validation"), (te, "test")):
        if len(part) == 0:
            raise DataError(f"the {name} split has no image of the basic classes; use more subjects or other fractions")
    model.set_trainable(cfg.basic.trainable)
    seed_everything(seed)
    if inputs is not None and inputs.cached:
        from compound_fer.features import CachedTrunkModel, PickView

        if cfg.basic.trainable == "all":
            raise ConfigError("basic.trainable: all changes the trunk, so the basic phase cannot use cached maps")
        net = CachedTrunkModel(model=model)
        pick = lambda fs, x: x[torch.isin(fs.labels, torch.as_tensor(labels))]  # noqa: E731
        train_x, val_x = pick(splits.train, inputs.train), pick(splits.val, inputs.val)[:, 0]
        test_x = pick(splits.test, inputs.test)[:, 0]
        augment = PickView(random=True)
    else:
        net, train_x, val_x, test_x = model, tr.images, va.images, te.float_images()
        augment = make_augment(cfg.augment) if cfg.basic.augment else None
    res = train_basic(
        net, train_x=train_x, train_y=_to_model_labels(tr.labels, labels), val_x=val_x,
        val_y=_to_model_labels(va.labels, labels), epochs=cfg.basic.epochs, lr=cfg.basic.lr,
        batch_size=cfg.basic.batch_size, weight_decay=cfg.basic.weight_decay, patience=cfg.basic.patience,
        augment=augment, seed=seed, device=cfg.device, progress=progress,
    )
    test_acc = accuracy(net, test_x, _to_model_labels(te.labels, labels), device=cfg.device)
    info = {
        "classes": [taxonomy.name_of(x) for x in labels], "backbone": cfg.model.backbone, "head": cfg.model.head,
        "image_size": cfg.data.image_size, "input": "float RGB in [0,1], (N,3,H,W); normalisation inside the model",
        "best_epoch": res.best_epoch, "val_accuracy": res.best_val_accuracy, "test_accuracy": test_acc,
        "seconds": round(res.seconds, 2), "seed": seed,
    }
    from compound_fer import distributed as dist

    if dist.is_distributed():  # every rank must hold the same basic model (a collective: all ranks call it)
        info["ranks_in_sync"] = dist.same_on_all_ranks(model)
    if dist.is_main():
        save_model(model, weights, meta=info)
    log.info("basic phase: val %.3f, test %.3f (%.0f s)", res.best_val_accuracy, test_acc, res.seconds)
    return model, info


@dataclass
class Inputs:
    """What the continual steps train and test on: cached trunk maps (or images) per FaceSet row."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    cached: bool


def make_inputs(cfg: ProtocolConfig, model, splits: Splits, *, seed: int, progress: bool = True) -> Inputs:
    from compound_fer.data.augment import make_augment
    from compound_fer.features import trunk_maps

    if not cfg.cache_trunk:
        return Inputs(splits.train.float_images(), splits.val.float_images(), splits.test.float_images(), cached=False)
    views = cfg.continual.augment_views
    train = trunk_maps(model, splits.train.images, views=views, augment=make_augment(cfg.augment) if views else None,
                       seed=seed, device=cfg.device, progress=progress, desc="trunk maps (train)")
    val, test = (trunk_maps(model, part.images, views=0, seed=seed, device=cfg.device, progress=progress,
                            desc=f"trunk maps ({name})") for part, name in ((splits.val, "val"), (splits.test, "test")))
    return Inputs(train, val, test, cached=True)


def memory_budget(cfg: ProtocolConfig, n_train_images: int, n_classes_total: int) -> tuple[int, int]:
    """The reference's budget: M = memory_fraction x all training images; quota m = M // classes."""
    total = int(round(cfg.continual.memory_fraction * n_train_images))
    return total, max(1, total // n_classes_total)


def make_evaluator(cfg: ProtocolConfig, log_dir: Path | None):
    """Avalanche's epoch loss/accuracy metrics to its CSV and TensorBoard loggers (nothing on stdout)."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.logging import CSVLogger, TensorboardLogger
    from avalanche.training.plugins import EvaluationPlugin

    loggers = []
    if log_dir is not None:
        if "csv" in cfg.loggers:
            loggers.append(CSVLogger(log_folder=str(log_dir / "csv")))
        if "tensorboard" in cfg.loggers:
            loggers.append(TensorboardLogger(tb_log_dir=str(log_dir / "tensorboard")))
    return EvaluationPlugin(loss_metrics(epoch=True), accuracy_metrics(epoch=True), loggers=loggers)


def _close_loggers(evaluator) -> None:
    for lg in getattr(evaluator, "loggers", []):
        close = getattr(lg, "close", None)
        if close:
            close()


def read_row(path: Path) -> dict | None:
    """A completed row written by this runner, or None when absent or unusable (then it is recomputed).

    Rows are written atomically, so a torn row means outside damage; it is logged and never trusted.
    """
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("resume: %s is unreadable (%s); recomputing it", path, err)
        return None
    if not isinstance(row, dict) or "kind" not in row or "seed" not in row:
        log.warning("resume: %s is not a results row; recomputing it", path)
        return None
    return row


def _load_checkpoint(ckpt) -> tuple[int, dict] | None:
    """The saved step of ``ckpt``, or None when it is absent or unusable (the run then starts at step 0)."""
    from compound_fer.checkpoint import CheckpointError

    try:
        return ckpt.load()
    except CheckpointError as err:
        log.warning("resume: %s; starting this run from step 0", err)
        return None


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete the temporary files a killed atomic write left (``.<name>.*.tmp``); they are never read."""
    gone = []
    for sub in ("rows", "checkpoints", "models"):
        for tmp in (out_dir / sub).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    if gone:
        log.info("resume: removed %d temporary file(s) left by an interrupted write", len(gone))
    return gone


def _row_path(out_dir: Path, seed: int, method: str, order: int) -> Path:
    return out_dir / "rows" / f"continual_seed{seed}_{method.replace('+', '-')}_order{order}.json"


def run_continual(
    cfg: ProtocolConfig,
    *,
    method: str,
    order_index: int,
    order: Sequence[str],
    basic_model,
    splits: Splits,
    inputs: Inputs,
    seed: int,
    progress: bool = True,
    save_to: Path | None = None,
    log_dir: Path | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> dict:
    """One method over one class order: experience 0 replays the shared basic model through the strategy
    with zero epochs (so its plugins record their state), then one compound class per experience.

    ``checkpoint``: after every completed experience the state is saved there (compound_fer.checkpoint);
    with ``resume`` a saved state is loaded and the run continues with the next experience."""
    from compound_fer import distributed as dist
    from compound_fer.evaluation import metrics as M
    from compound_fer.features import CachedTrunkModel, PickView
    from compound_fer.scenarios import basic_to_compound
    from compound_fer.training.registry import available, make_strategy

    entry = available()[method]
    seed_everything(seed * 1000 + order_index)
    model = copy.deepcopy(basic_model)
    model.set_trainable(cfg.continual.trainable)
    n_total = len(basic_labels(cfg)) + len(order)
    if dist.is_distributed():  # DDP needs fixed parameter shapes: grow the head now, units masked until trained
        dist.pregrow_head(model.head, n_total)
    net = CachedTrunkModel(model=model) if inputs.cached else model
    mem_total, quota = memory_budget(cfg, len(splits.train), n_total)
    self_capping = getattr(entry, "caps_new_class", False)
    bench = basic_to_compound(
        train=splits.train, test=splits.test, compound_order=list(order),
        include_neutral=cfg.data.include_neutral, classes_per_exp=cfg.continual.classes_per_step,
        new_class_cap=quota if (cfg.continual.cap_new_class and not self_capping) else None, seed=seed,
        train_inputs=inputs.train, test_inputs=inputs.test[:, :1] if inputs.cached else inputs.test,
        train_transform=PickView(random=True) if inputs.cached else None,
        eval_transform=PickView(random=False) if inputs.cached else None,
    )
    kd = cfg.continual.kd
    options = dict(cfg.continual.method_options.get(method, {}))
    extra = {"temperature": kd.temperature, "gamma0": kd.gamma0, "teacher_padding": kd.teacher_padding,
             "teacher_mode": kd.teacher_mode, "memory_mode": cfg.continual.memory_mode, "quota": quota, **options}
    if entry.needs_subjects:  # PurifiedLearning: subject ids of every training sample, experience by experience
        from compound_fer.training.purified import benchmark_subjects

        extra["subjects"] = benchmark_subjects(bench, splits.train)
    evaluator = make_evaluator(cfg, log_dir)
    strategy = make_strategy(
        method, model=net, evaluator=evaluator, lr=cfg.continual.lr, optimizer=cfg.continual.optimizer,
        train_epochs=cfg.continual.epochs, train_mb_size=cfg.continual.batch_size, eval_mb_size=256,
        device=cfg.device, mem_size=mem_total, num_classes_total=n_total, seed=seed, extra=extra,
        plugins=dist.training_plugins(),
    )
    test_y = _to_model_labels(splits.test.labels, bench.class_order).numpy()
    test_x = inputs.test[:, 0] if inputs.cached else inputs.test
    exp_classes = [list(c) for c in bench.experience_classes]
    record = M.ContinualRecord(basic_classes=exp_classes[0])
    step_seconds: list[float] = []
    start = time.perf_counter()
    ckpt, first_step = None, 0
    if checkpoint is not None:
        from compound_fer.checkpoint import StepCheckpoint, step_pause

        # evaluator (open log files) and cached maps (recomputed bit for bit) are saved by reference
        ckpt = StepCheckpoint(path=checkpoint, external={"evaluator": evaluator, "train_inputs": inputs.train,
                                                         "test_inputs": inputs.test})
        loaded = _load_checkpoint(ckpt) if resume else None
        if loaded is not None:
            done, st = loaded
            strategy, model, net, record, step_seconds = (st[k] for k in ("strategy", "model", "net", "record",
                                                                          "step_seconds"))
            start -= st["elapsed"]
            first_step = done + 1
            log.info("resume: %s order %d from step %d (checkpoint %s)", method, order_index, first_step, checkpoint)
    for step, experience in enumerate(bench.benchmark.train_stream):
        if step < first_step:
            continue
        t0 = time.perf_counter()
        epochs = strategy.train_epochs
        if step == 0:
            strategy.train_epochs = 0  # the basic model is shared: record plugin state, train nothing
        try:
            strategy.train(experience)
        finally:
            strategy.train_epochs = epochs
        if ckpt is not None:
            step_pause()  # test hook (COMPOUND_FER_STEP_PAUSE): lets a test kill the run mid-step
        step_seconds.append(time.perf_counter() - t0)
        seen = [c for cs in exp_classes[: step + 1] for c in cs]
        mask = np.isin(test_y, seen)
        # strategy.model, not net: GDumb replaces the model and iCaRL wraps it with its class-mean classifier
        pred = dist.predict(strategy.model, test_x[torch.from_numpy(mask)], device=cfg.device).numpy()
        record.add_step(test_y[mask], pred, new_classes=exp_classes[step])
        if ckpt is not None and dist.is_main():
            try:
                ckpt.save(step=step, state={"strategy": strategy, "model": model, "net": net, "record": record,
                                            "step_seconds": step_seconds, "elapsed": time.perf_counter() - start})
            except (pickle.PicklingError, TypeError, AttributeError) as err:  # a plugin holding an unpicklable object
                log.warning("step checkpoints off for %s order %d: its state cannot be pickled (%s); the row is "
                            "still written when the order ends, and --resume redoes this order from step 0",
                            method, order_index, err)
                ckpt = None
    seconds = time.perf_counter() - start
    # under torchrun: every rank must end with the same weights (a collective: all ranks call it)
    in_sync = dist.same_on_all_ranks(strategy.model) if dist.is_distributed() else None
    _close_loggers(evaluator)
    if save_to is not None and strategy.model is net and dist.is_main():  # GDumb/iCaRL replace or wrap the model: not saved
        from compound_fer.model_io import save_model

        save_model(model, save_to, meta={"classes": list(bench.names), "backbone": cfg.model.backbone,
                                         "head": cfg.model.head, "image_size": cfg.data.image_size,
                                         "method": method, "order": list(order), "seed": seed})
    return {
        "kind": "continual", "method": method, "order_index": order_index, "order": list(order), "seed": seed,
        "memory_total": mem_total, "memory_quota": quota, "new_class_cap": None if self_capping else quota,
        "seconds": round(seconds, 2), "step_seconds": [round(s, 3) for s in step_seconds],
        "train_seconds_after_basic": round(sum(step_seconds[1:]), 2),
        "class_names": list(bench.names), **record.to_dict(),
        **({"ranks_in_sync": in_sync} if in_sync is not None else {}),
    }


def run_protocol(
    cfg: ProtocolConfig,
    *,
    out_dir: str | Path,
    data_path: str | None = None,
    test_path: str | None = None,
    methods: Sequence[str] | None = None,
    orders: int | None = None,
    seeds: Sequence[int] | None = None,
    fewshot: bool | None = None,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> list[dict]:
    """Run the whole protocol and write results (JSON, CSV, Markdown, figures) under ``out_dir``."""
    from compound_fer.data.splits import class_orders
    from compound_fer.evaluation.report import write_report
    from compound_fer import distributed as dist
    from compound_fer.training.registry import available

    cfg = dist.init_from_env(cfg)  # under torchrun: process group, per-rank device; else unchanged
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = [m.lower() for m in (cfg.continual.methods if methods is None else methods)]  # [] = no continual
    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; available: {', '.join(available())}")
    seeds = list(seeds if seeds is not None else cfg.seeds)
    n_orders = orders or cfg.continual.orders
    do_fewshot = cfg.fewshot.enabled if fewshot is None else fewshot
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if dist.is_main():
        if resume:
            remove_stale_temp_files(out_dir)
        write_text(out_dir / "config.yaml", dump_config(cfg))
    header = provenance(command=command, seed=seeds[0] if len(seeds) == 1 else None, seeds=seeds,
                        config=cfg.name, data=str(data_path or cfg.data.path or "synthetic"),
                        test_data=str(test_path or cfg.data.test_path or ""))
    if (test_path or cfg.data.test_path) and cfg.evaluation.mode != "strict":  # fail before minutes of loading
        raise ConfigError(_EXTERNAL_NEEDS_STRICT.format(mode=cfg.evaluation.mode))
    faces = load_dataset(cfg, path=data_path, progress=progress)
    test_faces = None
    if test_path or cfg.data.test_path:
        test_faces = load_dataset(cfg, path=test_path or cfg.data.test_path, progress=progress)
    rows: list[dict] = []
    compounds = [c.name for c in taxonomy.categories("compound")]
    all_orders = class_orders(n_orders, seed=cfg.continual.order_seed, classes=compounds)
    for seed in seeds:
        splits = make_splits(cfg, faces, seed=seed, test_faces=test_faces)
        if len(splits.test) == 0:
            raise DataError("the test split is empty: give more subjects, a larger evaluation.test_fraction, "
                            "or --test-data")
        t0 = time.perf_counter()
        if cfg.cache_trunk and cfg.basic.trainable != "all":
            # the trunk never trains: cache its maps once and train the basic phase on them too
            seed_everything(seed)  # seeded init: the same config and seed give the same model
            basic_model = build_basic_model(cfg, len(basic_labels(cfg)))
            inputs = make_inputs(cfg, basic_model, splits, seed=seed, progress=progress)
            cache_seconds = time.perf_counter() - t0
            basic_model, basic_info = train_basic_phase(cfg, splits, seed=seed, out_dir=out_dir, resume=resume,
                                                        progress=progress, model=basic_model, inputs=inputs)
        else:
            basic_model, basic_info = train_basic_phase(cfg, splits, seed=seed, out_dir=out_dir, resume=resume,
                                                        progress=progress)
            t1 = time.perf_counter()
            inputs = make_inputs(cfg, basic_model, splits, seed=seed, progress=progress)
            cache_seconds = time.perf_counter() - t1
        rows.append({"kind": "basic", "seed": seed, "split": splits.info, "trunk_cache_seconds": round(cache_seconds, 2),
                     **basic_info})
        for method in methods:
            for oi, order in enumerate(all_orders):
                path = _row_path(out_dir, seed, method, oi)
                ckpt_path = out_dir / "checkpoints" / path.with_suffix(".ckpt").name
                if not resume and dist.is_main():
                    ckpt_path.unlink(missing_ok=True)  # a fresh run never continues an old one
                done = dist.broadcast_object(read_row(path) if resume else None)
                if done is not None:
                    rows.append(done)
                    log.info("resume: %s order %d seed %d already done", method, oi, seed)
                    continue
                log.info("continual: %s, order %d/%d, seed %d", method, oi + 1, len(all_orders), seed)
                row = run_continual(cfg, method=method, order_index=oi, order=order, basic_model=basic_model,
                                    splits=splits, inputs=inputs, seed=seed, progress=progress,
                                    save_to=out_dir / "models" / f"{method}_seed{seed}.pt" if oi == 0 else None,
                                    log_dir=out_dir / "logs" / f"{method}_seed{seed}_order{oi}",
                                    checkpoint=ckpt_path, resume=resume)
                row["trunk_cache_seconds"] = round(cache_seconds, 2)
                row["mode"] = splits.info["mode"]
                row["world_size"] = dist.world_size()
                if dist.is_main():
                    write_json(path, row)
                    ckpt_path.unlink(missing_ok=True)  # the row is safe: its step checkpoint is not needed
                rows.append(row)
        if do_fewshot:
            rows.extend(run_fewshot_phase(cfg, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed,
                                          out_dir=out_dir, resume=resume, progress=progress))
    if dist.is_main():
        write_report(out_dir, rows=rows, header=header, config=cfg)
    dist.barrier()
    return rows


def run_fewshot_phase(cfg: ProtocolConfig, *, basic_model, splits: Splits, inputs: Inputs, seed: int, out_dir: Path,
                      resume: bool = False, progress: bool = True) -> list[dict]:
    """The reference's few-shot protocol for every compound class and shot count; one row each."""
    from dataclasses import asdict

    from compound_fer.training.fewshot import run_fewshot

    compounds = cfg.fewshot.compounds or tuple(c.name for c in taxonomy.categories("compound"))
    rows = []
    for shots in cfg.fewshot.shots:
        for rep in range(cfg.fewshot.repeats):
            for name in compounds:
                path = out_dir / "rows" / f"fewshot_seed{seed}_{taxonomy.normalise_name(name)}_{shots}shot_r{rep}.json"
                done = read_row(path) if resume else None
                if done is not None:
                    rows.append(done)
                    continue
                res = run_fewshot(basic_model=basic_model, train=splits.train, test=splits.test, compound=name,
                                  shots=shots, seed=seed * 100 + rep, epochs=cfg.fewshot.epochs, lr=cfg.fewshot.lr,
                                  batch_size=cfg.fewshot.batch_size, train_inputs=inputs.train,
                                  test_inputs=inputs.test, cached=inputs.cached,
                                  include_neutral=cfg.data.include_neutral, kd=cfg.continual.kd)
                row = {"kind": "fewshot", "seed": seed, "repeat": rep, **asdict(res)}
                write_json(path, row)
                rows.append(row)
    return rows
