"""Data-parallel training under ``torchrun``: process group from the environment, rank helpers, model
wrapping, gradient averaging for Avalanche strategies, and metrics gathered across ranks.

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) every helper is a no-op, so the same code
runs single-process. Backend: ``nccl`` when the config's device is CUDA, else ``gloo`` (CPU).

Two ways ranks stay in sync, both averaging gradients over ranks every step:

* basic phase: the model is wrapped in ``DistributedDataParallel`` (Avalanche's
  ``DistributedHelper.wrap_model``) and each rank trains on its shard of every global batch;
* continual steps: Avalanche shards the loaders by itself once a process group exists, but does not wrap
  the model. Wrapping ``strategy.model`` would hide ``.head`` and ``.features`` from the plugins
  (distillation masks, PSMR scoring, iCaRL) and deep-copy a DDP wrapper as the teacher, so the strategy
  keeps the plain model and :class:`GradientSyncPlugin` all-reduces the gradients before each optimizer
  step, which is exactly what DDP does. The growing head is pre-grown to every class of the stream
  (units masked until trained), so parameter shapes never change under DDP.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.distributed as tdist
from torch import nn

from compound_fer.training.predict import predict as plain_predict


# ------------------------------------------------------------------------------------------- setup
def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(cfg: Any = None) -> Any:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Returns ``cfg`` with ``device`` set to this rank's device (``cuda:LOCAL_RANK`` under nccl); returns it
    unchanged outside torchrun or when the group already exists.
    """
    device = getattr(cfg, "device", "cpu") if cfg is not None else "cpu"
    if env_world_size() <= 1:
        return cfg
    use_cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not tdist.is_initialized():
        _import_avalanche_before_group()
        tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if cfg is not None and getattr(cfg, "device", None) != device:
        cfg = cfg.model_copy(update={"device": device})
    return cfg


def _import_avalanche_before_group() -> None:
    """Import Avalanche's training package while no process group exists yet.

    Avalanche 0.6 builds an ``InteractiveLogger`` in a class body at import time
    (``strategy_wrappers.AETraining``), and a logger created on a rank other than 0 of a live process group
    raises ``RuntimeError`` ("creating a logger in a non-main process"): imported after
    ``init_process_group`` (as the runner's lazy imports would), every rank > 0 dies.
    """
    try:
        import avalanche.training  # noqa: F401
    except ImportError:  # pragma: no cover - plain-torch use of this module
        pass


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and single-process): the only rank that writes files."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def shutdown() -> None:
    """Leave the process group (end of a torchrun job)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def _comm_device() -> torch.device:
    if is_distributed() and tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -------------------------------------------------------------------------------------- collectives
def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s value of a picklable object, on every rank (so all ranks take the same branch)."""
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``t`` (first dimensions may differ between ranks), in rank order, on t's device."""
    if not is_distributed():
        return [t]
    dev = _comm_device()
    n = torch.tensor([t.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    tdist.all_gather(sizes, n)
    sizes_i = [int(s) for s in sizes]
    big = max(sizes_i)
    padded = torch.zeros((big, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    out = [torch.empty_like(padded) for _ in sizes_i]
    tdist.all_gather(out, padded)
    return [o[:s].to(t.device) for o, s in zip(out, sizes_i)]


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """Argmax predictions; under torchrun each rank predicts a strided shard and the shards are gathered,
    so every rank returns the predictions for all of ``inputs`` in their original order."""
    model = unwrap(model)
    if not is_distributed():
        return plain_predict(model, inputs, batch_size=batch_size, device=device)
    r, w = rank(), world_size()
    mine = plain_predict(model, inputs[r::w], batch_size=batch_size, device=device)
    parts = all_gather_tensor(mine.to(_comm_device()))
    out = torch.empty(len(inputs), dtype=torch.long)
    for k, part in enumerate(parts):
        out[k::w] = part.cpu()
    return out


def same_on_all_ranks(model: nn.Module, *, atol: float = 0.0) -> bool:
    """True when every rank holds the same parameters and buffers (max abs difference <= ``atol``)."""
    if not is_distributed():
        return True
    flat = torch.cat([t.detach().float().reshape(-1).cpu() for t in unwrap(model).state_dict().values()])
    parts = all_gather_tensor(flat.to(_comm_device()).unsqueeze(0))
    return all(float((p.cpu() - flat).abs().max()) <= atol for p in parts)


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over ranks; take rank 0's others.

    Averaged gradients keep the *parameters* identical, but a BatchNorm in training mode updates its
    running statistics from this rank's shard only, so ranks drift apart (and then disagree on validation
    accuracy, early stopping and PSMR ranking). Called at the end of every epoch.
    """
    if not is_distributed():
        return
    bufs = list(unwrap(model).buffers())
    floats = [b for b in bufs if b.is_floating_point()]
    others = [b for b in bufs if not b.is_floating_point()]
    dev = _comm_device()
    for group, reduce in ((floats, True), (others, False)):
        if not group:
            continue
        flat = torch.cat([b.detach().reshape(-1).to(dev, torch.float64 if reduce else torch.int64) for b in group])
        if reduce:
            tdist.all_reduce(flat)
            flat /= world_size()
        else:
            tdist.broadcast(flat, src=0)
        i = 0
        for b in group:
            b.copy_(flat[i : i + b.numel()].view_as(b).to(b.device, b.dtype))
            i += b.numel()


# ---------------------------------------------------------------------------------------- models
def wrap_model(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun (as Avalanche's ``DistributedHelper.wrap_model``,
    without importing Avalanche), else ``model`` itself."""
    if not is_distributed():
        return model
    dev = next(model.parameters()).device
    if dev.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index], find_unused_parameters=True)
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class GradientSyncPlugin:
    """Avalanche plugin: average gradients over ranks before every optimizer step (DDP's all-reduce), and
    BatchNorm statistics after every epoch (:func:`sync_buffers`).

    One flat all-reduce per step; a parameter with no gradient on a rank contributes zeros, and keeps
    ``grad=None`` when no rank produced one (so optimizers skip it as they would single-process).
    """

    supports_distributed = True

    def before_update(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche callback
        if not is_distributed():
            return
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        if not params:
            return
        dev = _comm_device()
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dev)
                          for p in params]
                         + [torch.tensor([float(p.grad is not None) for p in params], device=dev)])
        tdist.all_reduce(flat)
        flat[: -len(params)] /= world_size()
        had = flat[-len(params):]
        i = 0
        for p, h in zip(params, had):
            g = flat[i : i + p.numel()].view_as(p).to(p.device)
            i += p.numel()
            if float(h) > 0:
                p.grad = g.clone()

    def after_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001 - Avalanche callback
        sync_buffers(strategy.model)


def training_plugins() -> list[Any]:
    """Plugins a strategy needs under torchrun (gradient averaging); empty single-process."""
    return [GradientSyncPlugin()] if is_distributed() else []


def shard(n: int) -> Sequence[int] | slice:
    """This rank's strided share of ``n`` items (all of them single-process)."""
    return slice(rank(), n, world_size()) if is_distributed() else slice(0, n)


__all__ = ["GradientSyncPlugin", "all_gather_tensor", "barrier", "broadcast_object", "init_from_env",
           "is_distributed", "is_main", "predict", "rank", "same_on_all_ranks", "shard", "sync_buffers",
           "shutdown", "training_plugins", "unwrap", "wrap_model", "world_size"]
