"""Overrides of a config: the one recursive merge, and the one place a run's arguments (the command line's
and ``run_protocol``'s) become overrides. Light: no torch, so the CLI refuses bad options before loading it."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["deep_merge", "run_overrides"]


def deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``new`` merged in, mappings key by key and anything else replaced: the package's one
    recursive merge (overrides, run arguments, benchmark variants); neither argument is changed."""
    out = dict(base)
    for k, v in new.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def run_overrides(*, data_path: str | None = None, test_path: str | None = None,
                  methods: Sequence[str] | None = None, orders: int | None = None, seeds: Sequence[int] | None = None,
                  fewshot: bool | None = None, mode: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """The config overrides of a run's arguments, the one place they become overrides (the command line and
    ``run_protocol`` alike; ``methods=[]``: no continual phase; None: not given)."""
    over: dict[str, Any] = {}
    if data_path:
        over["data"] = {"source": "path", "path": str(data_path)}
    if test_path:
        over.setdefault("data", {})["test_path"] = str(test_path)
    if methods is not None or orders is not None:  # orders=0 is refused by the config, not ignored
        over["continual"] = {**({"methods": [m.lower() for m in methods]} if methods is not None else {}),
                             **({"orders": orders} if orders is not None else {})}
    if seeds is not None:
        over["seeds"] = [int(s) for s in seeds]
    if fewshot is not None:
        over["fewshot"] = {"enabled": bool(fewshot)}
    if mode:
        over["evaluation"] = {"mode": mode}
    if threads is not None:
        over["threads"] = threads
    return over
