"""Helpers shared by the sub-commands: config lookup, CLI overrides, and the checks that run before any
data is generated or loaded (bad options end in a message naming them, exit 2, nothing touched)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from compound_fer.commands._methods import check_method_names  # a name table: checked before torch loads
from compound_fer.commands._progress import add_progress_argument, show_progress
from compound_fer.errors import CompoundFERError, ConfigError, DataError

PACKAGED = Path(__file__).resolve().parents[1] / "configs"
#: The project root of a source checkout (where the packaged configs' relative data paths point).
PROJECT_ROOT = PACKAGED.parents[1]


def packaged_names() -> str:
    """The packaged configs' names, for help and error messages."""
    return ", ".join(sorted(x.stem for x in PACKAGED.glob("*.yaml")))


def resolve_config(name_or_path: str) -> Path:
    """A config path, or the name of a packaged one (``demo``, ``cfee_cpu``, ``cfee_best``, ...)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise ConfigError(f"--config {name_or_path}: is a folder; give a YAML file or a packaged config name")
    packaged = PACKAGED / f"{p.stem}.yaml"
    if packaged.is_file() and p.suffix in ("", ".yaml", ".yml") and len(p.parts) == 1:
        return packaged
    raise ConfigError(f"--config {name_or_path}: no such file, and no packaged config of that name "
                      f"({packaged_names()})")


def add_run_arguments(p: argparse.ArgumentParser, *, default_config: str | None, data: bool = True,
                      continual: bool = True) -> None:
    """The options of run-like commands; ``data=False`` (demo) hides --data/--test-data, ``continual=False``
    (fewshot) hides --methods, --orders and --no-fewshot."""
    p.add_argument("--config", default=default_config,
                   help=f"YAML protocol file or packaged name ({packaged_names()})")
    if data:
        p.add_argument("--data", help="a CFEE release or labelled-folder root (overrides data.path)")
        p.add_argument("--test-data", help="an external test folder: every subject of --data trains")
    if continual:
        p.add_argument("--methods", help="comma-separated method names (see `compound-fer run --list-methods`)")
        p.add_argument("--orders", help="number of compound class orders (>= 1)")
    p.add_argument("--seeds", help="comma-separated integer seeds, e.g. 0,1,2")
    p.add_argument("--mode", choices=("strict", "reference"), help="evaluation mode")
    p.add_argument("--out", help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: completed rows are kept")
    p.add_argument("--overwrite", action="store_true", help="delete the run already in --out and start again")
    if continual:
        p.add_argument("--no-fewshot", action="store_true", help="skip the few-shot phase")
    add_progress_argument(p)
    p.add_argument("--threads",
                   help="torch threads per process (>= 1, at most the usable cores; overrides the config's threads)")


def parse_int(text: str | None, option: str, *, minimum: int | None = None) -> int | None:
    """An integer option given as text: ConfigError naming the option when it is not one, or too small."""
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{option} {value}: must be at least {minimum}")
    return value


def parse_int_list(text: str | None, option: str, *, minimum: int | None = None) -> list[int] | None:
    """``"0,1,2"`` -> [0, 1, 2]; ConfigError naming the option for an empty list or a non-integer."""
    if text is None:
        return None
    parts = [s.strip() for s in str(text).split(",")]
    if not any(parts):
        raise ConfigError(f"{option} {text!r}: give at least one integer, e.g. {option} 0,1,2")
    if not all(parts):  # "0,,1" or "0,1,": a dropped value is more likely a typo than a wish
        raise ConfigError(f"{option} {text!r}: an empty value between commas; give comma-separated integers, "
                          f"e.g. {option} 0,1,2")
    try:
        values = [int(s) for s in parts]
    except ValueError:
        bad = next(s for s in parts if not s.lstrip("+-").isdigit())
        raise ConfigError(f"{option} {text!r}: {bad!r} is not an integer; give comma-separated integers, "
                          f"e.g. {option} 0,1,2") from None
    if minimum is not None and any(v < minimum for v in values):
        raise ConfigError(f"{option} {text!r}: every value must be at least {minimum}")
    return values


def check_out_dir(out: Path, option: str = "--out") -> Path:
    """Create ``out`` and prove it writable now, before any work: a ConfigError naming it otherwise."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file, not a folder; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise ConfigError(f"{option} {out}: a parent of it is a file; give a folder path") from None
    except OSError as exc:
        raise ConfigError(f"{option} {out}: cannot write there ({exc.strerror or exc}); choose a writable folder "
                          f"or fix its permissions") from None
    return out


def resolve_data_path(value: str, *, key: str, config_file: Path) -> str:
    """A relative ``data.path`` / ``data.test_path`` of a config: tried against the working directory,
    the config's folder and (packaged configs) the project root, in that order; the one found is logged
    (INFO, with where it came from), and a ConfigError lists them all when none exists."""
    p = Path(value).expanduser()
    if p.is_absolute():
        if not p.exists():
            raise ConfigError(f"{key} {value} (in {config_file}): no such folder; fix it or give --data PATH")
        return str(p)
    bases = [("the working directory", Path.cwd()), ("the config's folder", config_file.resolve().parent)]
    if config_file.resolve().parent == PACKAGED:
        bases.append(("the project root", PROJECT_ROOT))  # kept: a checkout's packaged configs run from anywhere
    tried = [base / p for _, base in bases]
    for (origin, base), cand in zip(bases, tried):
        if cand.exists():
            logging.getLogger(__name__).info(
                "%s", f"{key} {value} (in {config_file.name}): using {cand.resolve()}, relative to {origin} "
                      f"{base} (looked in the working directory, the config's folder, then for a packaged config "
                      f"the project root); give --data PATH for other data")
            return str(cand.resolve())
    raise ConfigError(f"{key} {value} (in {config_file}): no such folder; looked in "
                      + ", ".join(str(c.parent.resolve() if c.parent.exists() else c.parent) for c in tried)
                      + ". Give the data folder with --data PATH")


def check_device(device: str, config_file: Path) -> None:
    """``device`` names a torch device this machine has; checked before any data is made."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device: {device!r} (in {config_file}) is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device: {device} (in {config_file}): no CUDA GPU is visible to torch on this "
                              f"machine; set device: cpu")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device: {device} (in {config_file}): this machine has {n} GPU(s) (cuda:0.."
                              f"cuda:{n - 1})")
    elif dev.type != "cpu":
        avail = {"mps": lambda: torch.backends.mps.is_available()}.get(dev.type, lambda: False)()
        if not avail:
            raise ConfigError(f"device: {device} (in {config_file}) is not available on this machine; set device: cpu")


def _check_folder(path: str, option: str) -> None:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"{option} {path}: " + ("not a folder; give the folder that holds the images" if p.exists()
                                                else "no such folder"))


#: command-line flag -> the config key it sets: library messages name the key, the CLI the flag the user typed
FLAG_KEYS = {"--test-data": "data.test_path", "--data": "data.path", "--methods": "continual.methods",
             "--orders": "continual.orders", "--seeds": "seeds", "--threads": "threads"}


def _overrides_from_args(args: argparse.Namespace, overrides: dict, methods: list[str] | None) -> tuple[Any, dict]:
    """The config file's config, and every option of the command line as one set of config overrides
    (:func:`~compound_fer.config.run_overrides`, the one place arguments become overrides)."""
    from compound_fer.config import load_config
    from compound_fer.overrides import deep_merge, run_overrides

    if not args.config:
        raise ConfigError(f"--config is required: a YAML protocol file or a packaged name ({packaged_names()})")
    config_file = resolve_config(args.config)

    cfg = load_config(config_file)  # refuses an empty file and seeds: [] (compound_fer.config)
    if methods is None and getattr(args, "methods", None) is not None:
        methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ConfigError(f"--methods {args.methods!r}: name at least one method (see `compound-fer run "
                              f"--list-methods`)")
    check_method_names(methods if methods is not None else cfg.continual.methods,
                       where="--methods" if getattr(args, "methods", None) is not None else "continual.methods")
    data, test_data = getattr(args, "data", None), getattr(args, "test_data", None)
    if data:
        _check_folder(data, "--data")
    elif cfg.data.source == "path":
        data = resolve_data_path(cfg.data.path, key="data.path", config_file=config_file)
    if test_data:
        _check_folder(test_data, "--test-data")
    elif cfg.data.test_path:
        test_data = resolve_data_path(cfg.data.test_path, key="data.test_path", config_file=config_file)
    # the test folder against the training folder: runner/checks.py, when the plan is resolved
    over = deep_merge(overrides, run_overrides(
        data_path=data, test_path=test_data, methods=methods, seeds=parse_int_list(args.seeds, "--seeds"),
        orders=parse_int(getattr(args, "orders", None), "--orders", minimum=1),
        threads=parse_int(args.threads, "--threads", minimum=1),
        fewshot=False if getattr(args, "no_fewshot", False) else None, mode=args.mode or None))
    check_device(cfg.device, config_file)
    return cfg, {k: v for k, v in over.items() if v != {}}


def _with_flags(err: CompoundFERError, args: argparse.Namespace) -> CompoundFERError:
    """``err`` with the config keys the command line set named by their flags."""
    from compound_fer.runner.checks import MissingTestClasses

    test_data = getattr(args, "test_data", None)
    if isinstance(err, MissingTestClasses) and test_data:
        hint = ("the continual phase tests every compound class, so add their images"
                if err.needs_all else "add their images")
        if err.present:
            hint += (f", or run the few-shot phase alone on the classes it has: compound-fer fewshot --test-data "
                     f"{shlex.quote(test_data)} --compounds {shlex.quote(','.join(err.present))}")
        return DataError(f"--test-data {test_data}: no image of {len(err.missing)} class(es) this run "
                         f"tests ({', '.join(err.missing)}); {hint}")
    msg = str(err)
    for flag, key in FLAG_KEYS.items():
        if getattr(args, flag[2:].replace("-", "_"), None) is not None:
            msg = msg.replace(key, flag)
    if args.mode:
        msg = msg.replace(f"got {args.mode!r}", f"got {args.mode!r} (--mode {args.mode})")
    return type(err)(msg)


def run_from_args(args: argparse.Namespace, *, overrides: dict | None = None, methods: list[str] | None = None) -> int:
    """Turn the command line into config overrides, resolve the run's plan (every check, once), run it and
    print its tables."""
    cfg, over = _overrides_from_args(args, dict(overrides or {}), methods)  # light: refused options import no torch
    from compound_fer.evaluation.paired import paired_block
    from compound_fer.evaluation.report import fewshot_summary, load_rows, markdown_tables, summarize
    from compound_fer.runner import resolve_plan, run_plan

    try:
        plan = resolve_plan(cfg, over)
    except CompoundFERError as err:
        raise _with_flags(err, args) from None
    out = check_out_dir(Path(args.out or Path("runs") / plan.config.name))
    command = " ".join(["compound-fer", *map(shlex.quote, sys.argv[1:])])
    # run_plan checks the folder's fingerprint first (compound_fer.fingerprint), before any data is made
    run_plan(plan, out_dir=out, resume=args.resume, overwrite=args.overwrite, progress=show_progress(args),
             command=command)
    _, rows = load_rows(out)  # every row in the folder, as results.md shows them (a resumed run adds to it)
    print(markdown_tables(summarize(rows), fewshot_summary(rows), [r for r in rows if r.get("kind") == "basic"],
                          paired_block(rows)))
    print(f"results: {out}/results.md, results.json, results.csv, figures/")
    return 0
