"""Helpers shared by the sub-commands: config lookup and CLI overrides."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from compound_fer.errors import ConfigError

PACKAGED = Path(__file__).resolve().parents[1] / "configs"


def resolve_config(name_or_path: str) -> Path:
    """A config path, or the name of a packaged one (``demo``, ``cfee_cpu``, ``cfee_reference``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    packaged = PACKAGED / f"{p.stem}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(x.stem for x in PACKAGED.glob("*.yaml")))
    raise ConfigError(f"--config {name_or_path}: no such file, and no packaged config of that name ({names})")


def add_run_arguments(p: argparse.ArgumentParser, *, default_config: str | None) -> None:
    p.add_argument("--config", default=default_config,
                   help="YAML protocol file or packaged name (demo, cfee_cpu, cfee_reference)")
    p.add_argument("--data", help="a CFEE release or labelled-folder root (overrides data.path)")
    p.add_argument("--test-data", help="an external test folder: every subject of --data trains")
    p.add_argument("--methods", help="comma-separated method names (see `compound-fer run --list-methods`)")
    p.add_argument("--orders", type=int, help="number of compound class orders")
    p.add_argument("--seeds", help="comma-separated seeds")
    p.add_argument("--mode", choices=("strict", "reference"), help="evaluation mode")
    p.add_argument("--out", help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="skip the runs already completed in --out")
    p.add_argument("--no-fewshot", action="store_true", help="skip the few-shot phase")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch threads per process (overrides the config's threads)")


def run_from_args(args: argparse.Namespace, *, overrides: dict | None = None, methods: list[str] | None = None) -> int:
    from compound_fer.config import load_config
    from compound_fer.evaluation.report import markdown_tables
    from compound_fer.runner import run_protocol

    if not args.config:
        raise ConfigError("--config is required: a YAML protocol file or a packaged name (demo, cfee_cpu, "
                          "cfee_reference)")
    cfg = load_config(resolve_config(args.config))
    overrides = dict(overrides or {})
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.data:
        overrides["data"] = {"source": "path", "path": args.data}
    if args.mode:
        overrides["evaluation"] = {"mode": args.mode}
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    if methods is None and args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out or Path("runs") / cfg.name)
    command = " ".join(["compound-fer", *map(shlex.quote, sys.argv[1:])])
    rows = run_protocol(cfg, out_dir=out, data_path=args.data, test_path=args.test_data, methods=methods,
                        orders=args.orders, seeds=seeds, fewshot=False if args.no_fewshot else None,
                        resume=args.resume, progress=not args.no_progress, command=command)
    from compound_fer.evaluation.report import fewshot_summary, summarize

    print(markdown_tables(summarize(rows), fewshot_summary(rows), [r for r in rows if r.get("kind") == "basic"]))
    print(f"results: {out}/results.md, results.json, results.csv, figures/")
    return 0
