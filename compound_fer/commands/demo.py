"""`compound-fer demo`: the protocol on the built-in synthetic faces, in minutes on 2 CPU cores."""

from __future__ import annotations

import argparse

from compound_fer.commands._common import add_run_arguments, run_from_args

NAME = "demo"
HELP = "run the protocol on built-in synthetic faces (no files needed; a few minutes on 2 CPU cores)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, default_config="demo", data=False)


def run(args: argparse.Namespace) -> int:
    return run_from_args(args)
