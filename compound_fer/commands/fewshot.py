"""`compound-fer fewshot`: the reference's few-shot protocol alone (basic model + n-shot 7-way models)."""

from __future__ import annotations

import argparse

NAME = "fewshot"
HELP = "few-shot protocol only: from the basic model, 7-way models on n shots of each compound class"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from compound_fer.commands._common import add_run_arguments

    add_run_arguments(p, default_config="demo")
    p.add_argument("--shots", help="comma-separated shot counts (default: the config's, e.g. 1,3,5)")
    p.add_argument("--compounds", help="comma-separated compound classes (default: all 15)")
    p.add_argument("--repeats", type=int, help="episodes per (class, shots) with different shot draws")


def run(args: argparse.Namespace) -> int:
    from compound_fer.commands._common import run_from_args

    few: dict = {"enabled": True}
    if args.shots:
        few["shots"] = [int(s) for s in args.shots.split(",")]
    if args.compounds:
        few["compounds"] = [c.strip() for c in args.compounds.split(",")]
    if args.repeats:
        few["repeats"] = args.repeats
    args.methods = ""  # no continual phase
    args.no_fewshot = False
    return run_from_args(args, overrides={"fewshot": few}, methods=[])
