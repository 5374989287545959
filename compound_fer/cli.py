"""The ``compound-fer`` command: a thin argparse front over the Python API."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import shlex
import sys
import warnings
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


#: Commands that write a run folder: Ctrl-C prints how to continue them.
RESUMABLE = ("demo", "run", "fewshot")
#: errno values of a failed write: a message naming the file, exit 2 (not a traceback).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues an interrupted run: the same options, --resume, no --overwrite."""
    rest = [a for a in argv if a not in ("--overwrite", "--resume")]
    return " ".join(["compound-fer", *map(shlex.quote, rest), "--resume"])


def quiet_warnings() -> None:
    """Silence library warnings a user cannot act on (dill's PicklingWarning when checkpoints are written)."""
    warnings.filterwarnings("ignore", message=r".*[Pp]ickl.*", module=r"dill(\..*)?")
    try:
        from dill import PicklingWarning
    except ImportError:  # pragma: no cover - dill comes with avalanche
        return
    warnings.filterwarnings("ignore", category=PicklingWarning)


def warning_as_log_line(*, verbose: bool = False):
    """A ``warnings.showwarning`` that logs each warning (ours or a library's) as one line on the
    ``py.warnings`` logger: the message, its category unless a plain UserWarning, and (verbose) where."""
    wlog = logging.getLogger("py.warnings")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if category is not UserWarning:
            text = f"{category.__name__}: {text}"
        wlog.warning("%s", f"{text} ({filename}:{lineno})" if verbose else text)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not args.verbose:
        quiet_warnings()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    shown, warnings.showwarning = warnings.showwarning, warning_as_log_line(verbose=args.verbose)
    try:
        return _run(args, argv)
    finally:
        warnings.showwarning = shown


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    """The chosen command; a CompoundFERError or a failed write becomes one line on stderr and exit 2."""
    try:
        return int(args._run(args) or 0)
    except CompoundFERError as exc:
        print(f"compound-fer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = exc.filename or "a results file"
        print(f"compound-fer {args.command}: error: cannot write {where}: {exc.strerror or exc}; the files "
              f"already written are intact (written atomically): free space or fix permissions"
              + (", then rerun with --resume" if args.command in RESUMABLE else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in RESUMABLE:
            print(f"\ncompound-fer {args.command}: interrupted; completed rows and step checkpoints are saved. "
                  f"Continue with:\n  {resume_command(argv)}", file=sys.stderr)
        else:
            print(f"\ncompound-fer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
