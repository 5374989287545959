"""Step-level checkpoints of a continual run: after every completed experience, the state needed to
continue (strategy with its model, grown head, optimizer and plugins; the metrics record so far; the
RNG states of python, numpy and torch) is written atomically, so a killed run resumes exactly.

The state is pickled with ``dill`` (Avalanche strategies hold lambdas and closures), with
``byref=True`` (torch 2.14's hidden optimizer submodules break dill's default; see
docs/reliability.md). What the resuming process rebuilds bit for bit is stored *by reference*, so a
checkpoint holds the run's state (changed weights, optimizer, plugin state, memories as indices), not
its data or unchanged weights:

* ``external`` objects by name: the evaluator (open log files), cached trunk maps, and the benchmark's
  data sets (:func:`benchmark_refs`), so replay memories and experience data pickle as index lists;
* ``reference`` tensors by name: a tensor bitwise equal to one of the reference model's (the shared
  basic model: a frozen trunk, the distillation teacher) is stored as that name and cloned on load,
  one clone per original object, so shared parameters stay shared and distinct ones distinct.

Other large float32 tensors (the trained tail and head, the optimizer's moments) are stored with their
sign/exponent byte planes deflated (lossless: about 0.8x the raw size); one record per original object.

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
import warnings
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from compound_fer.errors import CompoundFERError
from compound_fer.io import atomic_write

FORMAT = "compound_fer/step-checkpoint-v2"

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


class _ReferenceTensors:
    """A reference model's tensors, found by value: ``name(t)`` names a bitwise-equal one, or is None."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.by_key: dict[tuple, list[str]] = {}
        for name, t in module.state_dict().items():
            t = t.detach().cpu().clone()
            self.tensors[name] = t
            self.by_key.setdefault((tuple(t.shape), t.dtype), []).append(name)

    def name(self, t: torch.Tensor) -> str | None:
        names = self.by_key.get((tuple(t.shape), t.dtype))
        if not names or t.layout != torch.strided or t.numel() < 2:
            return None
        flat = t.detach().cpu()
        return next((n for n in names if torch.equal(flat, self.tensors[n])), None)

    def load(self, name: str, *, device: str, param: bool, requires_grad: bool) -> torch.Tensor:
        if name not in self.tensors:
            raise pickle.UnpicklingError(f"checkpoint refers to reference tensor {name!r}, which the resuming "
                                         "run's reference model does not have")
        t = self.tensors[name].clone().to(device)
        if param:
            return torch.nn.Parameter(t, requires_grad=requires_grad)
        return t.requires_grad_(requires_grad) if t.is_floating_point() else t


_PACK_MIN = 4096  # elements: smaller tensors go through torch's own pickling


def _packable(t: Any) -> bool:
    """A float32 CPU tensor that owns its whole storage (no view of another tensor), large enough to pack."""
    return (type(t) in (torch.Tensor, torch.nn.Parameter) and t.dtype == torch.float32 and t.device.type == "cpu"
            and t.layout == torch.strided and t.is_contiguous() and t.numel() >= _PACK_MIN
            and t.storage_offset() == 0 and t.untyped_storage().nbytes() == 4 * t.numel())


def _pack(t: torch.Tensor) -> tuple:
    """Byte planes of a float32 tensor, the two holding sign and exponent deflated (lossless)."""
    planes = t.detach().numpy().view(np.uint8).reshape(-1, 4)
    return tuple(zlib.compress(np.ascontiguousarray(planes[:, j]).tobytes(), 1) if j >= 2 else
                 np.ascontiguousarray(planes[:, j]).tobytes() for j in range(4))


def _unpack(shape: tuple, planes: tuple, *, param: bool, requires_grad: bool) -> torch.Tensor:
    cols = [np.frombuffer(zlib.decompress(b) if j >= 2 else b, dtype=np.uint8) for j, b in enumerate(planes)]
    t = torch.from_numpy(np.stack(cols, axis=1).reshape(-1).view(np.float32).reshape(shape).copy())
    return torch.nn.Parameter(t, requires_grad=requires_grad) if param else t.requires_grad_(requires_grad)


class _Pickler:  # built lazily: dill is imported only when a checkpoint is written
    @staticmethod
    def make(f, external: Mapping[str, Any], reference: _ReferenceTensors | None = None):
        dill = _dill()
        by_id = {id(v): k for k, v in external.items()}
        packed: set[int] = set()

        class P(dill.Pickler):
            def persistent_id(self, obj):  # noqa: ANN001
                pid = by_id.get(id(obj))
                if pid is not None or not isinstance(obj, torch.Tensor):
                    return pid
                param, grad = isinstance(obj, torch.nn.Parameter), bool(obj.requires_grad)
                name = reference.name(obj) if reference is not None else None
                if name is not None:  # id(obj): one clone per original object at load
                    return ("ref", name, id(obj), str(obj.device), param, grad)
                if id(obj) in packed:
                    return ("same", id(obj))
                if _packable(obj):
                    packed.add(id(obj))
                    return ("packed", id(obj), tuple(obj.shape), _pack(obj), param, grad)
                return None

        return P(f, byref=True, recurse=False)

    @staticmethod
    def make_loader(f, external: Mapping[str, Any], reference: _ReferenceTensors | None = None):
        dill = _dill()
        clones: dict[tuple, torch.Tensor] = {}

        class U(dill.Unpickler):
            def persistent_load(self, pid):  # noqa: ANN001
                if isinstance(pid, tuple) and pid and pid[0] == "packed":
                    _, oid, shape, planes, param, grad = pid
                    clones[("packed", oid)] = _unpack(shape, planes, param=param, requires_grad=grad)
                    return clones[("packed", oid)]
                if isinstance(pid, tuple) and pid and pid[0] == "same":
                    return clones[("packed", pid[1])]
                if isinstance(pid, tuple) and pid and pid[0] == "ref":
                    _, name, oid, device, param, grad = pid
                    if reference is None:
                        raise pickle.UnpicklingError("checkpoint refers to reference tensors, but the resuming "
                                                     "run gave no reference model")
                    if (name, oid) not in clones:
                        clones[(name, oid)] = reference.load(name, device=device, param=param, requires_grad=grad)
                    return clones[(name, oid)]
                if pid not in external:
                    raise pickle.UnpicklingError(
                        f"checkpoint refers to external object {pid!r}, which the resuming run did not provide")
                return external[pid]

        return U(f)


def benchmark_refs(benchmark: Any) -> dict[str, Any]:
    """The data sets under an Avalanche benchmark (train and test) by name, for ``external``: experience
    data, replay memories and buffers built on them then pickle as index lists, not images."""
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        for k, leaf in enumerate(_leaves(getattr(benchmark, f"original_{split}_dataset", None))):
            out[f"{split}_data_{k}"] = leaf
    return out


def _leaves(dataset: Any) -> list[Any]:
    """The plain (non-Avalanche) data sets an Avalanche dataset is built on, deduplicated, in order."""
    seen: dict[int, Any] = {}
    stack = [dataset] if dataset is not None else []
    while stack:
        d = stack.pop()
        inner = getattr(d, "_flat_data", None)
        children = list(getattr(d, "_datasets", None) or [])
        if inner is not None and inner is not d:
            stack.append(inner)
        elif children:
            stack.extend(reversed([c for c in children if c is not d]))
        elif not type(d).__module__.startswith("avalanche"):
            seen.setdefault(id(d), d)
    return list(seen.values())


class StepCheckpoint:
    """The latest completed step of one continual run, in one file written by temp file + rename.

    ``external`` names objects that are saved by reference (``name -> object``); the loading process
    passes the same names bound to its own (equal) objects. ``reference``: a model (the basic model)
    whose tensors are saved by name wherever a bitwise-equal tensor occurs; the loading process passes
    an equal model. ``last_bytes``/``last_seconds``: size and write time of the latest save.
    """

    def __init__(self, *, path: str | os.PathLike, external: Mapping[str, Any] | None = None,
                 reference: torch.nn.Module | None = None) -> None:
        self.path = Path(path)
        self.external = dict(external or {})
        self.reference = _ReferenceTensors(reference) if reference is not None else None
        self.last_bytes, self.last_seconds = 0, 0.0

    def save(self, *, step: int, state: Mapping[str, Any]) -> Path:
        """Write ``state`` (any picklable mapping) as completed step ``step``, with the RNG states."""
        t0 = time.perf_counter()
        payload = {"format": FORMAT, "step": int(step), "rng": capture_rng(), "state": dict(state),
                   "utc": time.time()}
        buf = io.BytesIO()
        with warnings.catch_warnings():  # dill warns about classes it pickles by reference (Adam): harmless here
            warnings.simplefilter("ignore", _dill().PicklingWarning)
            _Pickler.make(buf, self.external, self.reference).dump(payload)
        path = atomic_write(self.path, lambda f: f.write(buf.getbuffer()), binary=True)
        self.last_bytes, self.last_seconds = buf.tell(), time.perf_counter() - t0
        return path

    def load(self, *, restore: bool = True) -> tuple[int, dict[str, Any]] | None:
        """``(step, state)`` of the saved step, or None when there is no checkpoint; restores the RNGs.

        Raises :class:`CheckpointError` for a file that is not a whole checkpoint of this format.
        """
        if not self.path.is_file():
            return None
        try:
            # redirect: Avalanche's dill reducer for torch.device prints "Mapping cpu to cpu" per device
            with open(self.path, "rb") as f, contextlib.redirect_stdout(io.StringIO()):
                payload = _Pickler.make_loader(f, self.external, self.reference).load()
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


__all__ = ["PAUSE_ENV", "CheckpointError", "StepCheckpoint", "benchmark_refs", "capture_rng", "restore_rng",
           "step_pause"]
