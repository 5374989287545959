"""Shared fixtures. Tests run on 2 CPU cores with xdist: one torch thread per worker."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

_simplefilter = warnings.simplefilter


def _simplefilter_unless_avalanche(*args, **kwargs):
    """warnings.simplefilter, except from Avalanche's ``@deprecated`` wrapper, which puts a "once" filter for
    every DeprecationWarning ahead of all others on each call: pyproject.toml's named filters decide instead."""
    if sys._getframe(1).f_globals.get("__name__") == "avalanche._annotations":
        return None
    return _simplefilter(*args, **kwargs)


warnings.simplefilter = _simplefilter_unless_avalanche

import torch  # noqa: E402

torch.set_num_threads(1)

SLOW_TIMEOUT_S = 900  # pytest-timeout seconds for tests marked slow (the rest: pyproject's timeout, 300)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give tests marked ``slow`` the longer timeout, unless they set their own ``timeout`` mark."""
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPOUND_FER_SHARED_DATA", REPO.parent / "shared" / "data"))
CFEE_SUBSET = SHARED_DATA / "cfee-subset"
FER_POOL = SHARED_DATA / "fer2013-pool"


@pytest.fixture(scope="session")
def cfee_root() -> Path:
    """The research-only CFEE subset; tests that use it skip cleanly when it is absent."""
    if not (CFEE_SUBSET / "Images").is_dir():
        pytest.skip(f"CFEE subset not found at {CFEE_SUBSET}")
    return CFEE_SUBSET


@pytest.fixture(scope="session")
def fer_pool_root() -> Path:
    if not (FER_POOL / "images").is_dir():
        pytest.skip(f"FER2013 pool not found at {FER_POOL}")
    return FER_POOL
