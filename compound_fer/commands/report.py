"""`compound-fer report DIR`: rebuild tables and figures from a run's results (finished or not)."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "rebuild results.md/json/csv and figures from a results folder (also of an interrupted run)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", help="the --out folder of a run")
    p.add_argument("--no-figures", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from compound_fer.errors import DataError
    from compound_fer.evaluation.report import load_rows, markdown_tables, write_report

    d = Path(args.results_dir)
    if not d.is_dir():
        raise DataError(f"results folder not found: {d}")
    header, rows = load_rows(d)
    if not rows:
        raise DataError(f"{d} holds no results (neither results.json nor rows/*.json)")
    res = write_report(d, rows=rows, header=header, figures=not args.no_figures)
    print(markdown_tables(res["summary"], res["fewshot"], [r for r in rows if r.get("kind") == "basic"],
                          res["paired"]))
    return 0
