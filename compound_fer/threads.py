"""How many CPU threads torch should use: from the cores this process may run on, minus the ones other
processes keep busy (measured over a quarter second from /proc/stat), at least 1.

On a shared machine a fixed thread count oversubscribes the cores as soon as another process runs: OpenMP
workers then spin-wait for each other and a training step slows 10-30x (docs/reliability.md). Fewer
threads than cores costs at most the parallel speed-up; too many costs far more.
"""

from __future__ import annotations

import os

#: set before torch loads OpenMP (compound_fer/__init__.py): idle workers sleep instead of spinning
WAIT_POLICY = "PASSIVE"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset restrict)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in open("/proc/stat", encoding="ascii").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def busy_cores(*, window: float = 0.25) -> float:
    """Cores kept busy by other processes right now: the machine's non-idle CPU time over ``window`` seconds
    (/proc/stat, while this process waits), else the 1-minute load average."""
    import time

    a = _cpu_times()
    if a is not None:
        time.sleep(window)
        b = _cpu_times()
        if b is not None and b[0] > a[0]:
            total = os.cpu_count() or usable_cores()
            return total * (1.0 - (b[1] - a[1]) / (b[0] - a[0]))
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return 0.0


def auto_threads(*, cores: int | None = None, busy: float | None = None) -> int:
    """Threads for torch: the usable cores not kept busy by others (rounded), between 1 and the cores."""
    cores = usable_cores() if cores is None else int(cores)
    busy = busy_cores() if busy is None else float(busy)
    return max(1, min(cores, cores - int(round(busy))))


def configure(threads: int | str | None) -> int:
    """Apply a thread setting (``0``, ``None`` or ``"auto"``: :func:`auto_threads`; else that many) to torch;
    returns the count used."""
    import torch

    n = auto_threads() if threads in (None, 0, "auto") else int(threads)
    torch.set_num_threads(n)
    return n


__all__ = ["WAIT_POLICY", "auto_threads", "busy_cores", "configure", "usable_cores"]
