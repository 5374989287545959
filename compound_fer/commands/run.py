"""`compound-fer run`: the whole protocol (basic, continual, few-shot) from a YAML config."""

from __future__ import annotations

import argparse

from compound_fer.commands._common import add_run_arguments, run_from_args

NAME = "run"
HELP = "run a benchmark protocol: basic phase, continual phase over class orders, few-shot phase"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, default_config=None)
    p.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")


def run(args: argparse.Namespace) -> int:
    if args.list_methods:
        from compound_fer.commands._methods import listing  # a name table: no torch to load

        print(listing())
        return 0
    return run_from_args(args)
