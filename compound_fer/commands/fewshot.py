"""`compound-fer fewshot`: the reference's few-shot protocol alone (basic model + n-shot 7-way models)."""

from __future__ import annotations

import argparse

NAME = "fewshot"
HELP = "few-shot protocol only: from the basic model, 7-way models on n shots of each compound class"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from compound_fer.commands._common import add_run_arguments

    add_run_arguments(p, default_config="demo", continual=False)
    p.add_argument("--shots", help="comma-separated shot counts (default: the config's, e.g. 1,3,5)")
    p.add_argument("--compounds", help="comma-separated compound classes (default: all 15)")
    p.add_argument("--repeats", help="episodes per (class, shots) with different shot draws (>= 1)")


def run(args: argparse.Namespace) -> int:
    from compound_fer.commands._common import parse_int, parse_int_list, run_from_args
    from compound_fer.errors import ConfigError

    few: dict = {"enabled": True}
    shots = parse_int_list(args.shots, "--shots", minimum=1)
    if shots:
        few["shots"] = shots
    if args.compounds is not None:
        from compound_fer import taxonomy

        names = [c.strip() for c in args.compounds.split(",") if c.strip()]
        if not names:
            raise ConfigError(f"--compounds {args.compounds!r}: name at least one compound class")
        for name in names:
            try:
                kind = taxonomy.by_name(name).kind
            except taxonomy.UnknownCategoryError as err:
                raise ConfigError(f"--compounds: {err}") from None
            if kind != "compound":
                raise ConfigError(f"--compounds: {name!r} is not a compound class; choose among "
                                  f"{', '.join(taxonomy.compound_names())}")
        few["compounds"] = names
    repeats = parse_int(args.repeats, "--repeats", minimum=1)
    if repeats:
        few["repeats"] = repeats
    return run_from_args(args, overrides={"fewshot": few}, methods=[])
