"""The ``compound-fer`` command: a thin argparse front over the Python API."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from compound_fer import __version__
from compound_fer.commands import COMMANDS
from compound_fer.errors import CompoundFERError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compound-fer",
        description="Continual few-shot learning of compound facial expressions (Maiden & Nakisa 2023).",
    )
    parser.add_argument("--version", action="version", version=f"compound-fer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMANDS:
        try:
            mod = importlib.import_module(f"compound_fer.commands.{mod_name}")
        except ModuleNotFoundError as exc:  # a command still being written: leave it out
            if exc.name == f"compound_fer.commands.{mod_name}":
                continue
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CompoundFERError as exc:
        print(f"compound-fer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compound-fer {args.command}: interrupted; completed steps are saved where --out says", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
