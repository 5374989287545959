"""The whole protocol: for each seed the basic phase, every (method, class order), then the few-shot phase.

Every row is written to disk atomically as soon as it is complete, so a killed run loses at most the row
in progress (``resume=True`` skips completed rows). The ``config.yaml`` written first is the config that
runs, every argument of :func:`run_protocol` applied (:func:`effective_config`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig, dump_config
from compound_fer.errors import ConfigError, DataError
from compound_fer.evaluation.rows import BasicRow, FewShotRow, Row, row_from_dict
from compound_fer.inputs import Inputs, make_inputs
from compound_fer.io import provenance, write_json, write_text
from compound_fer.run_lock import locked
from compound_fer.runner.basic import basic_labels, build_basic_model, train_basic_phase
from compound_fer.runner.checks import check_paths, check_splits
from compound_fer.runner.continual import run_continual
from compound_fer.runner.dataset import EXTERNAL_NEEDS_STRICT, Splits, load_dataset, make_splits
from compound_fer.seeding import seed_everything

log = logging.getLogger(__name__)


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


def effective_config(cfg: ProtocolConfig, *, data_path: str | None = None, test_path: str | None = None,
                     methods: Sequence[str] | None = None, orders: int | None = None,
                     seeds: Sequence[int] | None = None, fewshot: bool | None = None) -> ProtocolConfig:
    """``cfg`` with every run argument applied: the config that runs and that ``config.yaml`` records.

    ``methods=[]`` means no continual phase. Unknown methods are a ConfigError naming the registered ones.
    """
    from compound_fer.training.registry import available

    over: dict = {}
    if data_path:
        over["data"] = {"source": "path", "path": str(data_path)}
    if test_path:
        over.setdefault("data", {})["test_path"] = str(test_path)
    if methods is not None or orders is not None:  # orders=0 is refused by the config, not ignored
        over["continual"] = {**({"methods": [m.lower() for m in methods]} if methods is not None else {}),
                             **({"orders": orders} if orders is not None else {})}
    if seeds is not None:
        over["seeds"] = [int(s) for s in seeds]
    if fewshot is not None:
        over["fewshot"] = {"enabled": bool(fewshot)}
    out = cfg.with_overrides(**over) if over else cfg
    unknown = [m for m in out.continual.methods if m not in available()]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; available: {', '.join(available())}")
    return out


def _basic_stage(cfg: ProtocolConfig, splits: Splits, *, seed: int, out_dir: Path, resume: bool,
                 progress: bool) -> tuple[nn.Module, Inputs, BasicRow]:
    """The basic model of ``seed`` and the inputs of the continual steps (cached maps, or images)."""
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
        from compound_fer.runner.geometry import fuse_geometry

        inputs, info["geometry"] = fuse_geometry(cfg, model, splits, inputs, seed=seed, progress=progress)
    row = BasicRow.from_dict({"kind": "basic", "seed": seed, "split": splits.info,
                              "trunk_cache_seconds": round(cache_seconds, 2), **info})
    return model, inputs, row


def _continual_stage(cfg: ProtocolConfig, *, basic_model: nn.Module, splits: Splits, inputs: Inputs, seed: int,
                     out_dir: Path, resume: bool, progress: bool, cache_seconds: float | None) -> list[Row]:
    """Every (method, class order) of ``seed``: a row from disk (resume) or a new run, written at once."""
    from compound_fer import distributed as dist
    from compound_fer.data.splits import class_orders

    compounds = [c.name for c in taxonomy.categories("compound")]
    all_orders = class_orders(cfg.continual.orders, seed=cfg.continual.order_seed, classes=compounds)
    rows: list[Row] = []
    for method in cfg.continual.methods:
        for oi, order in enumerate(all_orders):
            path = _row_path(out_dir, seed, method, oi)
            ckpt_path = out_dir / "checkpoints" / path.with_suffix(".ckpt").name
            if not resume and dist.is_main():
                ckpt_path.unlink(missing_ok=True)  # a fresh run never continues an old one
            done = dist.broadcast_object(read_row(path) if resume else None)
            if done is not None:
                rows.append(row_from_dict(done))
                log.info("resume: %s order %d seed %d already done", method, oi, seed)
                continue
            log.info("continual: %s, order %d/%d, seed %d", method, oi + 1, len(all_orders), seed)
            row = run_continual(cfg, method=method, order_index=oi, order=order, basic_model=basic_model,
                                splits=splits, inputs=inputs, seed=seed, progress=progress,
                                save_to=out_dir / "models" / f"{method}_seed{seed}.pt" if oi == 0 else None,
                                log_dir=out_dir / "logs" / f"{method}_seed{seed}_order{oi}",
                                checkpoint=ckpt_path, resume=resume, trunk_cache_seconds=cache_seconds)
            if dist.is_main():
                write_json(path, row.to_dict())
                ckpt_path.unlink(missing_ok=True)  # the row is safe: its step checkpoint is not needed
            rows.append(row)
    return rows


def run_fewshot_phase(cfg: ProtocolConfig, *, basic_model: nn.Module, splits: Splits, inputs: Inputs, seed: int,
                      out_dir: Path, resume: bool = False, progress: bool = True) -> list[Row]:
    """The reference's few-shot protocol for every compound class and shot count; one row each."""
    from dataclasses import asdict

    from compound_fer.training.fewshot import run_fewshot
    from tqdm.auto import tqdm

    from compound_fer import distributed as dist
    from compound_fer.runner.continual import memory_budget

    compounds = cfg.fewshot.compounds or tuple(c.name for c in taxonomy.categories("compound"))
    n_all = len(basic_labels(cfg)) + len(taxonomy.categories("compound"))
    quota = memory_budget(cfg, len(splits.train), n_all)[1]  # kept mode: the continual protocol's per-class memory
    rows: list[Row] = []
    modes = ("reference", "kept") if cfg.fewshot.mode == "both" else (cfg.fewshot.mode,)
    shots_of = {m: [s for s in cfg.fewshot.shots if s > 0 or m == modes[0]] for m in modes}  # zero-shot: once
    episodes = [(m, s, r, c) for m in modes for s in shots_of[m] for r in range(1 if s == 0 else cfg.fewshot.repeats)
                for c in compounds]
    for mode, shots, rep, name in tqdm(episodes, desc="few-shot episodes", unit="episode", disable=not progress,
                                       leave=False):
        tag = "" if mode == "reference" or shots == 0 else f"_{mode}"  # modes side by side
        path = out_dir / "rows" / f"fewshot_seed{seed}_{taxonomy.normalise_name(name)}_{shots}shot_r{rep}{tag}.json"
        done = read_row(path) if resume else None
        if done is not None:
            rows.append(row_from_dict(done))
            continue
        save = cfg.fewshot.save_models and rep == 0 and shots == max(cfg.fewshot.shots) and dist.is_main()
        res = run_fewshot(basic_model=basic_model, train=splits.train, test=splits.test, compound=name,
                          shots=shots, seed=seed * 100 + rep, epochs=cfg.fewshot.epochs, lr=cfg.fewshot.lr,
                          batch_size=cfg.fewshot.batch_size, inputs=inputs,
                          include_neutral=cfg.data.include_neutral, kd=cfg.continual.kd,
                          mode=mode, quota=quota, component_init=cfg.fewshot.component_init,
                          prototypes=cfg.fewshot.prototypes, bias_correction=cfg.fewshot.bias_correction,
                          trainable="tail_head" if mode == "reference" else cfg.continual.trainable,
                          save_to=out_dir / "models" / f"fewshot_seed{seed}_{taxonomy.normalise_name(name)}"
                                                      f"_{shots}shot{tag}.pt" if save else None)
        row = FewShotRow(repeat=rep, **asdict(res))  # seed: the episode's (seed x 100 + repeat)
        write_json(path, row.to_dict())
        rows.append(row)
    return rows


def _seed_stage(cfg: ProtocolConfig, faces, test_faces, *, seed: int, out_dir: Path, resume: bool,
                progress: bool) -> list[Row]:
    """Splits, basic phase, continual phase and few-shot phase of one seed."""
    splits = make_splits(cfg, faces, seed=seed, test_faces=test_faces)
    if len(splits.test) == 0:
        raise DataError("the test split is empty: give more subjects, a larger evaluation.test_fraction, "
                        "or --test-data")
    basic_model, inputs, basic_row = _basic_stage(cfg, splits, seed=seed, out_dir=out_dir, resume=resume,
                                                  progress=progress)
    rows: list[Row] = [basic_row]
    rows += _continual_stage(cfg, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed, out_dir=out_dir,
                             resume=resume, progress=progress, cache_seconds=basic_row.trunk_cache_seconds)
    if cfg.fewshot.enabled:
        rows += run_fewshot_phase(cfg, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed,
                                  out_dir=out_dir, resume=resume, progress=progress)
    if cfg.fewshot.enabled and cfg.fewshot.episodes.enabled:
        rows += _episode_stage(cfg, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed,
                               out_dir=out_dir, resume=resume, progress=progress)
    return rows


def _episode_stage(cfg: ProtocolConfig, *, basic_model, splits, inputs, seed: int, out_dir: Path, resume: bool,
                   progress: bool) -> list[Row]:
    """N-way K-shot episodes (runner/episodes.py), one row file per learner and K (kept on resume)."""
    from compound_fer.runner.episodes import run_episodes

    spec = cfg.fewshot.episodes
    paths = [out_dir / "rows" / f"episodes_seed{seed}_{name}_{k}shot.json" for k in spec.shots for name in spec.learners]
    done = [read_row(p) for p in paths] if resume else []
    if done and all(d is not None for d in done):
        return [row_from_dict(d) for d in done]
    rows = run_episodes(cfg, basic_model=basic_model, splits=splits, inputs=inputs, seed=seed, progress=progress)
    for path, row in zip(paths, rows):
        write_json(path, row.to_dict())
    return list(rows)


@locked  # <out>/.lock: one run at a time per folder (compound_fer.run_lock)
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
    """Run the whole protocol and write results (JSON, CSV, Markdown, figures) under ``out_dir``; returns
    the rows as written (JSON objects). The keyword arguments override the config (``methods=[]``: no
    continual phase); ``config.yaml`` in ``out_dir`` records the config with them applied.

    ``out_dir`` carries a fingerprint of config and data (compound_fer.fingerprint): ``resume`` into a folder
    of another config or data, or a fresh run into a folder holding results without ``overwrite``, is a
    ConfigError. With ``resume`` the report covers every row on disk, not only this call's."""
    from compound_fer import distributed as dist
    from compound_fer.evaluation.report import load_rows, merge_rows, write_report

    cfg = dist.init_from_env(cfg)  # under torchrun: process group, per-rank device; else unchanged
    cfg = effective_config(cfg, data_path=data_path, test_path=test_path, methods=methods, orders=orders,
                           seeds=seeds, fewshot=fewshot)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main():  # before any data is made: never mix two runs' rows in one folder
        from compound_fer import fingerprint

        fingerprint.claim(out_dir, fingerprint.make(cfg, data_path=None, test_path=cfg.data.test_path),
                          resume=resume, overwrite=overwrite)
    from compound_fer.threads import configure

    log.info("torch threads: %d", configure(cfg.threads))  # threads 0: every usable core; idle workers sleep
    if dist.is_main():
        if resume:
            remove_stale_temp_files(out_dir)
        write_text(out_dir / "config.yaml", dump_config(cfg))
    seeds = list(cfg.seeds)
    header = provenance(command=command, seed=seeds[0] if len(seeds) == 1 else None, seeds=seeds,
                        config=cfg.name, data=str(cfg.data.path or "synthetic"),
                        test_data=str(cfg.data.test_path or ""))
    if cfg.data.test_path and cfg.evaluation.mode != "strict":  # fail before minutes of loading
        raise ConfigError(EXTERNAL_NEEDS_STRICT.format(mode=cfg.evaluation.mode))
    check_paths(cfg.data.path, cfg.data.test_path)
    faces = load_dataset(cfg, progress=progress)
    test_faces = load_dataset(cfg, path=cfg.data.test_path, progress=progress) if cfg.data.test_path else None
    check_splits(cfg, faces, test_faces=test_faces)  # every data check, before the basic phase of any seed
    rows: list[Row] = []
    for seed in seeds:
        rows += _seed_stage(cfg, faces, test_faces, seed=seed, out_dir=out_dir, resume=resume, progress=progress)
    dicts = [r.to_dict() for r in rows]
    if dist.is_main():  # resumed: rows of earlier calls (other methods, phases, seeds) stay in the report
        write_report(out_dir, rows=merge_rows(load_rows(out_dir)[1], dicts) if resume else dicts, header=header,
                     config=cfg)
    dist.barrier()
    return dicts
