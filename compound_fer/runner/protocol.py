"""The whole protocol: for each seed the basic phase, every (method, class order), then the few-shot phase.

Every row is written to disk atomically as soon as it is complete, so a killed run loses at most the row
in progress (``resume=True`` skips completed rows). The ``config.yaml`` written first is the config that
runs, every argument of :func:`run_protocol` applied (:func:`~compound_fer.runner.plan.resolve_plan`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from torch import nn

from compound_fer import distributed as dist
from compound_fer import fingerprint, taxonomy
from compound_fer.config import ProtocolConfig, dump_config
from compound_fer.data.splits import class_orders
from compound_fer.evaluation.report import load_rows, merge_rows, write_report
from compound_fer.evaluation.rows import BasicRow, Row, row_from_dict
from compound_fer.inputs import Inputs, make_inputs
from compound_fer.io import provenance, write_json, write_text
from compound_fer.run_lock import locked
from compound_fer.runner.basic import basic_labels, build_basic_model, train_basic_phase
from compound_fer.runner.checks import check_splits, check_test_split
from compound_fer.runner.continual import OrderJob, RunFiles, run_continual
from compound_fer.runner.dataset import Splits, load_dataset, make_splits
from compound_fer.runner.episodes import run_episodes
from compound_fer.runner.fewshot import run_fewshot_phase
from compound_fer.runner.geometry import fuse_geometry
from compound_fer.runner.plan import RunPlan, resolve_plan
from compound_fer.runner.rows import read_row, remove_stale_temp_files
from compound_fer.seeding import seed_everything
from compound_fer.threads import configure

log = logging.getLogger(__name__)


def _row_path(out_dir: Path, seed: int, method: str, order: int) -> Path:
    return out_dir / "rows" / f"continual_seed{seed}_{method.replace('+', '-')}_order{order}.json"


def _basic_stage(cfg: ProtocolConfig, splits: Splits, *, seed: int, out_dir: Path, resume: bool,
                 progress: bool, mirrored: bool = False) -> tuple[nn.Module, Inputs, BasicRow]:
    """The basic model of ``seed`` and the inputs of the continual steps (cached maps, or images);
    ``mirrored``: a method flips its inputs (iCaRL), so the pooled embeddings come in mirrored pairs too."""
    t0 = time.perf_counter()
    if cfg.cache_trunk and cfg.basic.trainable != "all":
        # the trunk never trains: cache its maps once and train the basic phase on them too
        seed_everything(seed)  # seeded init: the same config and seed give the same model
        model = build_basic_model(cfg, len(basic_labels(cfg)))
        inputs = make_inputs(cfg, model, splits, seed=seed, progress=progress)
        cache_seconds = time.perf_counter() - t0
        model, info = train_basic_phase(cfg, splits, seed=seed, out_dir=out_dir, resume=resume, progress=progress,
                                        model=model, inputs=inputs)
    else:
        model, info = train_basic_phase(cfg, splits, seed=seed, out_dir=out_dir, resume=resume, progress=progress)
        t1 = time.perf_counter()
        inputs = make_inputs(cfg, model, splits, seed=seed, progress=progress)
        cache_seconds = time.perf_counter() - t1
    if cfg.model.geometry == "landmarks":  # fuse each face's landmark geometry; a new head trained on basic faces
        inputs, info["geometry"] = fuse_geometry(cfg, model, splits, inputs, seed=seed, progress=progress)
    if cfg.cache_trunk and cfg.cache_pooled and cfg.continual.trainable == "head":
        t2 = time.perf_counter()  # head-only steps: every view's pooled embedding, once per seed
        inputs = inputs.with_embeddings(model, device=cfg.device, progress=progress, mirrored=mirrored)
        cache_seconds += time.perf_counter() - t2
    row = BasicRow.from_dict({"kind": "basic", "seed": seed, "split": splits.info,
                              "trunk_cache_seconds": round(cache_seconds, 2), **info})
    return model, inputs, row


def _continual_stage(plan: RunPlan, *, basic_model: nn.Module, splits: Splits, inputs: Inputs, seed: int,
                     out_dir: Path, resume: bool, cache_seconds: float | None) -> list[Row]:
    """Every (method, class order) of ``seed``: a row from disk (resume) or a new run, written at once."""
    cfg = plan.config
    compounds = [c.name for c in taxonomy.categories("compound")]
    all_orders = class_orders(cfg.continual.orders, seed=cfg.continual.order_seed, classes=compounds)
    rows: list[Row] = []
    for method in plan.methods:
        for oi, order in enumerate(all_orders):
            path = _row_path(out_dir, seed, method.name, oi)
            ckpt_path = out_dir / "checkpoints" / path.with_suffix(".ckpt").name
            if not resume and dist.is_main():
                ckpt_path.unlink(missing_ok=True)  # a fresh run never continues an old one
            done = dist.broadcast_object(read_row(path) if resume else None)
            if done is not None:
                rows.append(row_from_dict(done))
                log.info("resume: %s order %d seed %d already done", method.name, oi, seed)
                continue
            log.info("continual: %s, order %d/%d, seed %d", method.name, oi + 1, len(all_orders), seed)
            files = RunFiles(save_to=out_dir / "models" / f"{method.name}_seed{seed}.pt" if oi == 0 else None,
                             log_dir=out_dir / "logs" / f"{method.name}_seed{seed}_order{oi}",
                             checkpoint=ckpt_path, resume=resume)
            row = run_continual(plan, OrderJob(method, oi, tuple(order), seed), basic_model=basic_model,
                                splits=splits, inputs=inputs, files=files, trunk_cache_seconds=cache_seconds)
            if dist.is_main():
                write_json(path, row.to_dict())
                ckpt_path.unlink(missing_ok=True)  # the row is safe: its step checkpoint is not needed
            rows.append(row)
    return rows


def _seed_stage(plan: RunPlan, faces, test_faces, *, seed: int, out_dir: Path, resume: bool,  # noqa: ANN001
                progress: bool, seconds: dict[str, float] | None = None) -> list[Row]:
    """Splits, basic phase, continual phase and few-shot phase of one seed; ``seconds`` receives each stage's
    wall time (basic phase with its caches, each continual method, few-shot, episodes)."""
    cfg = plan.config
    seconds = {} if seconds is None else seconds
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[stage] = round(seconds.get(stage, 0.0) + now - t, 2)
        t = now

    splits = make_splits(cfg, faces, seed=seed, test_faces=test_faces)
    check_test_split(splits.test)
    basic_model, inputs, basic_row = _basic_stage(cfg, splits, seed=seed, out_dir=out_dir, resume=resume,
                                                  progress=progress,
                                                  mirrored=any(m.entry.flips_inputs for m in plan.methods))
    lap("basic")
    rows: list[Row] = [basic_row]
    for method in plan.methods:
        rows += _continual_stage(replace(plan, methods=(method,)), basic_model=basic_model, splits=splits,
                                 inputs=inputs, seed=seed, out_dir=out_dir, resume=resume,
                                 cache_seconds=basic_row.trunk_cache_seconds)
        lap(f"continual {method.name}")
    if cfg.fewshot.enabled:
        rows += run_fewshot_phase(plan, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed,
                                  out_dir=out_dir, resume=resume, progress=progress)
        lap("fewshot")
    if cfg.fewshot.enabled and cfg.fewshot.episodes.enabled:
        rows += _episode_stage(plan, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed,
                               out_dir=out_dir, resume=resume, progress=progress)
        lap("episodes")
    return rows


def _episode_stage(plan: RunPlan, *, basic_model, splits, inputs, seed: int, out_dir: Path,  # noqa: ANN001
                   resume: bool, progress: bool) -> list[Row]:
    """N-way K-shot episodes (runner/episodes.py), one row file per learner and K (kept on resume)."""
    spec = plan.config.fewshot.episodes

    def path(learner: str, shots: int) -> Path:
        return out_dir / "rows" / f"episodes_seed{seed}_{learner}_{shots}shot.json"

    done = [read_row(path(name, k)) for k in spec.shots for name in spec.learners] if resume else []
    if done and all(d is not None for d in done):
        return [row_from_dict(d) for d in done]
    rows = run_episodes(plan, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed, progress=progress)
    for row in rows:
        write_json(path(row.learner, row.shots), row.to_dict())
    return list(rows)


@locked  # <out>/.lock: one run at a time per folder (compound_fer.run_lock)
def run_plan(plan: RunPlan, *, out_dir: str | Path, resume: bool = False, overwrite: bool = False,
             progress: bool = True, command: str | None = None) -> list[dict]:
    """Run a resolved plan and write results (JSON, CSV, Markdown, figures) under ``out_dir``; returns the
    rows as written (JSON objects).

    ``out_dir`` carries a fingerprint of config and data (compound_fer.fingerprint): ``resume`` into a folder
    of another config or data, or a fresh run into a folder holding results without ``overwrite``, is a
    ConfigError. With ``resume`` the report covers every row on disk, not only this call's."""
    cfg = dist.init_from_env(plan.config)  # under torchrun: process group, per-rank device; else unchanged
    plan = replace(plan, config=cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main():  # before any data is made: never mix two runs' rows in one folder
        fingerprint.claim(out_dir, fingerprint.make(cfg, data_path=None, test_path=cfg.data.test_path),
                          resume=resume, overwrite=overwrite)
    log.info("torch threads: %d", configure(cfg.threads))  # threads 0: every usable core; idle workers sleep
    if dist.is_main():
        if resume:
            remove_stale_temp_files(out_dir)
        write_text(out_dir / "config.yaml", dump_config(cfg))
    seeds = list(cfg.seeds)
    header = provenance(command=command, seed=seeds[0] if len(seeds) == 1 else None, seeds=seeds,
                        config=cfg.name, data=str(cfg.data.path or "synthetic"),
                        test_data=str(cfg.data.test_path or ""))
    t0 = time.perf_counter()
    faces = load_dataset(cfg, progress=progress)
    test_faces = load_dataset(cfg, path=cfg.data.test_path, progress=progress) if cfg.data.test_path else None
    check_splits(cfg, faces, test_faces=test_faces)  # every data check, before the basic phase of any seed
    # wall seconds per stage (a resumed run times only what it did): results.json "stage_seconds"
    header["stage_seconds"] = {"load": round(time.perf_counter() - t0, 2)}
    rows: list[Row] = []
    for seed in seeds:
        header["stage_seconds"][f"seed {seed}"] = per_seed = {}
        rows += _seed_stage(plan, faces, test_faces, seed=seed, out_dir=out_dir, resume=resume, progress=progress,
                            seconds=per_seed)
    dicts = [r.to_dict() for r in rows]
    if dist.is_main():  # resumed: rows of earlier calls (other methods, phases, seeds) stay in the report
        write_report(out_dir, rows=merge_rows(load_rows(out_dir)[1], dicts) if resume else dicts, header=header,
                     config=cfg)
    dist.barrier()
    return dicts


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
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> list[dict]:
    """:func:`run_plan` of the plan of ``cfg`` with these arguments applied (``methods=[]``: no continual
    phase); ``config.yaml`` in ``out_dir`` records the config with them applied."""
    plan = resolve_plan(cfg, data_path=data_path, test_path=test_path, methods=methods, orders=orders, seeds=seeds,
                        fewshot=fewshot)
    return run_plan(plan, out_dir=out_dir, resume=resume, overwrite=overwrite, progress=progress, command=command)
