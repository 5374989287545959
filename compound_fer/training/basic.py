"""The basic phase: train the 6-class (or 7 with neutral) model once, with early stopping on validation
(or, with ``average_last``, every epoch and the average of the last epochs' weights).

A plain PyTorch loop on purpose: it is not continual, and every method starts from its result, as in the
reference (the basic model is trained once and reused).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from compound_fer import distributed as dist
from compound_fer.config import BasicPhase
from compound_fer.data.augment import augment_batch
from compound_fer.errors import ConfigError
from compound_fer.training.optim import make_optimizer
from compound_fer.training.predict import accuracy, predict  # noqa: F401 - predict: the one helper, re-exported

log = logging.getLogger(__name__)


@dataclass
class BasicResult:
    """The best epoch's validation accuracy, the history, and wall time."""

    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class BasicLoop:
    """The basic loop's settings: ``epochs`` at most, Adam at ``lr`` with ``weight_decay``, minibatches of
    ``batch_size``, early stop after ``patience`` epochs without a better validation accuracy; with
    ``average_last`` K > 0, all ``epochs`` and the average of the last K epochs' weights (no early stop)."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    patience: int = 5
    average_last: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def of_phase(cls, basic: BasicPhase, *, seed: int, device: str, progress: bool,
                 lr: float | None = None) -> "BasicLoop":
        """The loop a config's ``basic`` section names (``lr``: another learning rate)."""
        loop = cls(epochs=basic.epochs, lr=basic.lr, batch_size=basic.batch_size, weight_decay=basic.weight_decay,
                   patience=basic.patience, average_last=basic.average_last, seed=seed, device=device,
                   progress=progress)
        return loop if lr is None else replace(loop, lr=lr)


def train_basic(
    model: nn.Module,
    *,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    loop: BasicLoop,
    augment=None,
    auxiliary: nn.Module | None = None,
) -> BasicResult:
    """Adam + cross-entropy with early stopping on validation accuracy; the model ends at its best epoch.

    ``auxiliary`` (training/auxiliary.py): heads whose loss on the embedding of each batch is added (they
    train with the model; single process only).

    ``train_x`` are uint8 or float images; uint8 is converted per batch to save memory.
    Under torchrun the model is wrapped in DDP and each rank trains on its shard of every global batch
    (the same permutation on every rank, as DistributedSampler does), so the global batch is unchanged.
    """
    device = loop.device
    gen = torch.Generator().manual_seed(loop.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if auxiliary is not None:
        if dist.is_distributed():
            raise ValueError("train_basic: auxiliary heads are single-process only")
        params += list(auxiliary.parameters())
    if not params:
        raise ValueError("train_basic: the model has no trainable parameter (check the freezing policy)")
    opt = make_optimizer(params, name="adam", lr=loop.lr, weight_decay=loop.weight_decay)
    model.to(device)
    net = dist.wrap_model(model)  # DDP under torchrun (averages gradients over ranks); the model itself otherwise
    to_float = (lambda t: t.float().div_(255)) if train_x.dtype == torch.uint8 else (lambda t: t)
    val_xf = to_float(val_x)
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    if loop.average_last > loop.epochs:
        raise ConfigError(f"basic.average_last ({loop.average_last}) must be at most basic.epochs ({loop.epochs})")
    averaged = None  # SWA of the last average_last epochs: weights and BatchNorm statistics alike
    history: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(range(loop.epochs), desc="basic phase", unit="epoch", disable=not loop.progress, leave=False)
    for epoch in bar:
        net.train()
        total, n = _train_epoch(net, model, opt, torch.randperm(len(train_x), generator=gen), train_x=train_x,
                                train_y=train_y, batch_size=loop.batch_size, to_float=to_float, augment=augment,
                                auxiliary=auxiliary, device=device)
        dist.sync_buffers(model)  # BatchNorm statistics saw one shard per rank: average them
        # rank 0 decides (best epoch, early stop) so every rank takes the same path through the loop
        val_acc = dist.broadcast_object(accuracy(model, val_xf, val_y, device=device))
        history.append({"epoch": epoch, "train_loss": total / max(n, 1), "val_accuracy": val_acc})
        bar.set_postfix(loss=f"{total / max(n, 1):.3f}", val=f"{val_acc:.3f}")
        if not loop.progress:
            log.info("basic phase: epoch %d, loss %.3f, val %.3f", epoch, total / max(n, 1), val_acc)
        if loop.average_last:
            if epoch >= loop.epochs - loop.average_last:
                if averaged is None:
                    averaged = AveragedModel(model, use_buffers=True, avg_fn=_mean_of_floats)
                averaged.update_parameters(model)
            continue
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= loop.patience:
            log.info("basic phase: early stop at epoch %d (best %d, val %.3f)", epoch, best[1], best[0])
            break
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
        val_acc = dist.broadcast_object(accuracy(model, val_xf, val_y, device=device))
        log.info("basic phase: average of epochs %d-%d, val %.3f", loop.epochs - loop.average_last, loop.epochs - 1,
                 val_acc)
        return BasicResult(best_epoch=loop.epochs - 1, best_val_accuracy=val_acc, history=history,
                           seconds=time.perf_counter() - start)
    model.load_state_dict(best[2])
    return BasicResult(best_epoch=best[1], best_val_accuracy=best[0], history=history,
                       seconds=time.perf_counter() - start)


def _mean_of_floats(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """SWA's running mean for float weights and statistics; integer and bool buffers (BatchNorm's batch
    counter, a head's trained-unit mask) keep their latest value."""
    if not averaged.is_floating_point():
        return current
    return averaged + (current - averaged) / (n + 1)


def _train_epoch(net: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, order: torch.Tensor, *,
                 train_x: torch.Tensor, train_y: torch.Tensor, batch_size: int, to_float, augment,
                 auxiliary: nn.Module | None, device: str) -> tuple[float, int]:
    """One pass over ``order`` in minibatches (this rank's shard of each under torchrun); returns the summed
    loss and the number of samples."""
    loss_fn = nn.CrossEntropyLoss()
    total, n = 0.0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if dist.is_distributed():
            if len(idx) < dist.world_size():
                continue  # every rank needs a sample (all ranks skip alike)
            idx = idx[dist.shard(len(idx))]
        xb, flips = to_float(train_x[idx]), None
        if augment is not None:
            xb, flips = augment_batch(xb, augment, return_flips=True) if auxiliary is not None else \
                (augment_batch(xb, augment), None)
        yb = train_y[idx].to(device)
        opt.zero_grad(set_to_none=True)
        if auxiliary is None:
            loss = loss_fn(net(xb.to(device)), yb)
        else:  # one forward: the embedding feeds the head and the auxiliary heads
            feats = model.features(xb.to(device))
            loss = loss_fn(model.head(feats), yb) + auxiliary.loss(feats, idx, flips)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total, n
