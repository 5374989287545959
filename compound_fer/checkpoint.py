"""Step-level checkpoints of a continual run: after every completed experience, the whole state needed to
continue (strategy with its model, grown head, optimizer and plugins; the metrics record so far; the
RNG states of python, numpy and torch) is written atomically, so a killed run resumes exactly.

The state is pickled with ``dill`` (Avalanche strategies hold lambdas and closures), with
``byref=True`` (torch 2.14's hidden optimizer submodules break dill's default; see
docs/reliability.md). Large tensors that the resumed process recomputes bit for bit (cached trunk maps)
and live objects that must not be pickled (the evaluator and its open log files) are stored *by name*
and re-attached on load, so a checkpoint holds the strategy's state, not the data set.

A checkpoint is a pickle, so it can run code when loaded: only load files this package wrote in a run
folder you own (the runner only loads ``<out>/checkpoints/``). User-supplied *model* files always go
through :func:`compound_fer.model_io.load_state_dict` (``weights_only=True``) instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import random
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from compound_fer.errors import CompoundFERError
from compound_fer.io import atomic_write

FORMAT = "compound_fer/step-checkpoint-v1"

#: test hook: seconds to sleep after training each continual step (so a test can kill a run mid-step)
PAUSE_ENV = "COMPOUND_FER_STEP_PAUSE"


class CheckpointError(CompoundFERError):
    """A step checkpoint that cannot be used (truncated, corrupt, another format, or from other code)."""


def capture_rng() -> dict[str, Any]:
    """The states of python's, numpy's and torch's global generators (CUDA too when present)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back the generator states saved by :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dill():
    import dill

    return dill


class _Pickler:  # built lazily: dill is imported only when a checkpoint is written
    @staticmethod
    def make(f, external: Mapping[str, Any]):
        dill = _dill()
        by_id = {id(v): k for k, v in external.items()}

        class P(dill.Pickler):
            def persistent_id(self, obj):  # noqa: ANN001
                return by_id.get(id(obj))

        return P(f, byref=True, recurse=False)

    @staticmethod
    def make_loader(f, external: Mapping[str, Any]):
        dill = _dill()

        class U(dill.Unpickler):
            def persistent_load(self, pid):  # noqa: ANN001
                if pid not in external:
                    raise pickle.UnpicklingError(
                        f"checkpoint refers to external object {pid!r}, which the resuming run did not provide")
                return external[pid]

        return U(f)


class StepCheckpoint:
    """The latest completed step of one continual run, in one file written by temp file + rename.

    ``external`` names objects that are saved by reference (``name -> object``); the loading process
    passes the same names bound to its own (equal) objects.
    """

    def __init__(self, *, path: str | os.PathLike, external: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.external = dict(external or {})

    def save(self, *, step: int, state: Mapping[str, Any]) -> Path:
        """Write ``state`` (any picklable mapping) as completed step ``step``, with the RNG states."""
        payload = {"format": FORMAT, "step": int(step), "rng": capture_rng(), "state": dict(state),
                   "utc": time.time()}
        buf = io.BytesIO()
        _Pickler.make(buf, self.external).dump(payload)
        return atomic_write(self.path, lambda f: f.write(buf.getbuffer()), binary=True)

    def load(self, *, restore: bool = True) -> tuple[int, dict[str, Any]] | None:
        """``(step, state)`` of the saved step, or None when there is no checkpoint; restores the RNGs.

        Raises :class:`CheckpointError` for a file that is not a whole checkpoint of this format.
        """
        if not self.path.is_file():
            return None
        try:
            # redirect: Avalanche's dill reducer for torch.device prints "Mapping cpu to cpu" per device
            with open(self.path, "rb") as f, contextlib.redirect_stdout(io.StringIO()):
                payload = _Pickler.make_loader(f, self.external).load()
        except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
            raise CheckpointError(f"{self.path} cannot be read as a step checkpoint (truncated or corrupt?): "
                                  f"{type(err).__name__}: {err}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT or "step" not in payload:
            raise CheckpointError(f"{self.path} is not a compound_fer step checkpoint ({FORMAT})")
        if restore:
            restore_rng(payload["rng"])
        return int(payload["step"]), payload["state"]

    def clear(self) -> None:
        """Delete the checkpoint (once its row is written)."""
        self.path.unlink(missing_ok=True)


def step_pause() -> None:
    """Test hook: sleep ``$COMPOUND_FER_STEP_PAUSE`` seconds (no-op when unset)."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


__all__ = ["PAUSE_ENV", "CheckpointError", "StepCheckpoint", "capture_rng", "restore_rng", "step_pause"]
