"""How many CPU threads torch uses, and how its idle OpenMP workers wait.

On a shared machine, spinning OpenMP workers are what turns oversubscription into a 10-30x slow-down: a
worker that waits for its partner thread by spinning burns the time slices the partner needs. With
``OMP_WAIT_POLICY=PASSIVE`` (set on import, compound_fer/__init__.py) idle workers sleep, and two threads
beside two busy processes simply get their fair share. Measured (docs/reliability.md), lowering the
thread count by the machine's load did not help further, so ``auto`` is every core this process may use.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: set before torch loads OpenMP (compound_fer/__init__.py): idle workers sleep instead of spinning
WAIT_POLICY = "PASSIVE"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset restrict)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def auto_threads() -> int:
    """Threads for torch when none is configured: the usable cores."""
    return usable_cores()


def clamp(threads: int, *, source: str = "threads") -> int:
    """``threads``, or the usable cores with one warning when it asks for more (more threads than cores only
    make them wait for each other)."""
    cores = usable_cores()
    if threads > cores:
        log.warning("%s %d: more than the %d usable core(s) of this machine; using %d", source, threads, cores, cores)
        return cores
    return threads


def configure(threads: int | str | None) -> int:
    """Apply a thread setting (``0``, ``None`` or ``"auto"``: :func:`auto_threads`; else that many, at most
    the usable cores: :func:`clamp`) to torch; returns the count used."""
    import torch

    n = auto_threads() if threads in (None, 0, "auto") else clamp(int(threads))
    torch.set_num_threads(n)
    return n


__all__ = ["WAIT_POLICY", "auto_threads", "clamp", "configure", "usable_cores"]
