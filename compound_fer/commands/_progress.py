"""Progress bars of the sub-commands: shown on a terminal only, so logs and pipes (stderr not a tty) get no
thousands of tqdm lines; ``--no-progress`` turns them off on a terminal too."""

from __future__ import annotations

import argparse
import sys

HELP = "no progress bars (they are off anyway when stderr is not a terminal: logs, pipes, CI)"


def add_progress_argument(p: argparse.ArgumentParser) -> None:
    """The ``--no-progress`` flag every command with progress bars takes."""
    p.add_argument("--no-progress", action="store_true", help=HELP)


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with ``--no-progress``, nor when stderr is not a terminal."""
    if getattr(args, "no_progress", False):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())
