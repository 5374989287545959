"""One run at a time per run folder: ``<out>/.lock`` claims it for the run writing there.

The lock file holds the holder's pid, host, start time (UTC), the pid's process start time (to tell a
reused pid apart) and its command; it is written whole to a temporary file and linked into place, which
fails when a lock exists, so two runs can never both claim a folder. A second run into the folder, a
``--resume`` or an ``--overwrite`` of it is refused (:class:`RunFolderInUse`, exit 2) naming the
holder; a lock whose process is gone (a dead pid on this host, or a reused one) is stale and taken over
with a warning. The lock is released when the run ends, by error or Ctrl-C too; a killed run leaves a
stale lock that the next run takes over.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from compound_fer.errors import ConfigError

log = logging.getLogger(__name__)

LOCK = ".lock"


class RunFolderInUse(ConfigError):
    """Another live run holds the run folder's lock."""


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name in (...) may hold spaces


def _alive(holder: dict[str, Any]) -> bool | None:
    """Whether the lock's process still runs: None when it is on another host (it cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    start = holder.get("process_start")
    return start is None or _process_start(pid) in (None, start)  # a reused pid started at another time


def read_holder(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The lock of ``out_dir`` as written by its holder, {} when unreadable, None when there is none."""
    try:
        text = (Path(out_dir) / LOCK).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict[str, Any]) -> str:
    """'pid 123 on host h, started 2026-01-01T10:00:00+00:00: compound-fer run ...' (for messages)."""
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


class RunLock:
    """A held lock on a run folder (:func:`acquire`); :meth:`release` removes it if it is still ours."""

    def __init__(self, *, path: Path, token: str) -> None:
        self.path, self.token = path, token

    def release(self) -> None:
        """Remove the lock file when it is still this run's (never another run's that took it over)."""
        if (read_holder(self.path.parent) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)


def acquire(out_dir: str | os.PathLike, *, command: str | None = None) -> RunLock:
    """Claim ``out_dir`` (created if missing) for this process; RunFolderInUse naming the holder when a live
    run holds it; a stale lock is taken over with one warning."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    token = uuid.uuid4().hex
    me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
          "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
          "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "token": token}
    fd, tmp = tempfile.mkstemp(prefix=f"{LOCK}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        for _ in range(3):
            try:
                os.link(tmp, lock)  # fails when a lock exists: only one run can win
                return RunLock(path=lock, token=token)
            except FileExistsError:
                pass
            holder = read_holder(out)
            if holder is None:  # released in between: try again
                continue
            alive = _alive(holder) if holder else False
            if alive is not False:
                where = "" if alive else " (another host: this machine cannot tell whether it still runs)"
                raise RunFolderInUse(f"--out {out}: in use by another run ({describe(holder)}){where}; wait for it to "
                                     f"end or choose another --out (--overwrite and --resume wait too). If no run "
                                     f"writes there, delete {lock}")
            log.warning("%s: taking over the lock of a run that is no longer running (%s)", lock,
                        describe(holder) if holder else "unreadable lock file")
            os.replace(tmp, lock)
            if (read_holder(out) or {}).get("token") == token:  # another run may have taken it at the same moment
                return RunLock(path=lock, token=token)
            fd, tmp = tempfile.mkstemp(prefix=f"{LOCK}.", suffix=".tmp", dir=out)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
        raise RunFolderInUse(f"--out {out}: another run claimed it at the same moment "
                             f"({describe(read_holder(out) or {})}); choose another --out")
    finally:
        Path(tmp).unlink(missing_ok=True)


def locked(run: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a function taking ``out_dir=`` (and ``command=``): it runs holding the folder's lock, released
    on return, error or Ctrl-C. Under torchrun only rank 0 takes it (every rank writes to the same folder)."""

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if int(os.environ.get("RANK", "0")) != 0:
            return run(*args, **kwargs)
        held = acquire(kwargs["out_dir"], command=kwargs.get("command"))
        try:
            return run(*args, **kwargs)
        finally:
            held.release()

    return wrapper
