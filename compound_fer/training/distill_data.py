"""Dataset distillation by distribution matching: a labelled set becomes a few synthetic images per class.

Used by the omni-supervised system (``omni.py``) as a training boost and as a compact replay memory.
**Choice:** distribution matching (DM; Zhao & Bilen, WACV 2023) rather than gradient matching (Zhao et
al., ICLR 2021) or the original bi-level method (Wang et al. 2018): DM needs no inner training loop and
no second-order gradients, only forward passes of randomly initialised embedding networks, so it is
one to two orders of magnitude cheaper on a CPU, which is all we have.

**As in DM:** synthetic images initialised from random real images of their class; at every iteration a
fresh randomly initialised ConvNet (conv-instance norm-ReLU-avgpool blocks) embeds a real batch and the
synthetic images of each class; the loss is the squared distance between the per-class mean embeddings;
gradient steps on the pixels. **Our simplifications:** Adam on the pixels with a step of ``lr`` times the
data's standard deviation (DM uses SGD, lr 1, momentum 0.5, tuned for standardised CIFAR pixels), no
differentiable Siamese augmentation
(DSA), fewer iterations by default (CPU), pixels clamped to the data's range after each step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def embedding_net(channels: int, *, width: int = 32, depth: int = 3) -> nn.Module:
    """The DM ConvNet embedder: ``depth`` x (conv3x3, instance norm, ReLU, avgpool 2), flattened."""
    layers: list[nn.Module] = []
    c = channels
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                   nn.AvgPool2d(2)]
        c = width
    return nn.Sequential(*layers, nn.Flatten())


@torch.no_grad()
def _init_synthetic(images: torch.Tensor, labels: torch.Tensor, classes: list[int], ipc: int,
                    g: torch.Generator) -> torch.Tensor:
    picks = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        order = idx[torch.randperm(len(idx), generator=g)]
        reps = order.repeat((ipc + len(order) - 1) // len(order))[:ipc]  # classes with < ipc images repeat
        picks.append(images[reps].clone())
    return torch.cat(picks)


def distribution_matching(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    ipc: int = 10,
    iterations: int = 200,
    lr: float = 0.05,
    batch_real: int = 128,
    width: int = 32,
    depth: int = 3,
    seed: int = 0,
    clamp: tuple[float, float] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distil ``images`` (float (N, C, H, W)) with ``labels`` into ``ipc`` synthetic images per class.

    Returns ``(synthetic_images, synthetic_labels)`` sorted by class. ``clamp`` defaults to the data's
    own min and max. ``depth`` is lowered automatically for images too small to pool ``depth`` times.
    """
    if images.ndim != 4:
        raise ValueError(f"distribution_matching needs images (N, C, H, W), got shape {tuple(images.shape)}")
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    images = images.detach().float()
    labels = torch.as_tensor(labels).long()
    classes = sorted(int(c) for c in torch.unique(labels))
    g = torch.Generator().manual_seed(seed)
    lo, hi = clamp if clamp is not None else (float(images.min()), float(images.max()))
    depth = max(1, min(depth, int(torch.log2(torch.tensor(float(min(images.shape[-2:]))))) - 1))
    syn = _init_synthetic(images, labels, classes, ipc, g).requires_grad_(True)
    syn_labels = torch.tensor(classes).repeat_interleave(ipc)
    by_class = {c: torch.nonzero(labels == c).flatten() for c in classes}
    # Adam with a step in units of the data's spread, so one default fits [0, 1] pixels and standardised ones.
    opt = torch.optim.Adam([syn], lr=lr * float(images.std()))
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for _ in tqdm(range(iterations), desc="distribution matching", disable=not progress, leave=False):
            net = embedding_net(images.shape[1], width=width, depth=depth)
            for p in net.parameters():
                p.requires_grad_(False)
            loss = syn.new_zeros(())
            for k, c in enumerate(classes):
                idx = by_class[c]
                pick = idx[torch.randperm(len(idx), generator=g)[:batch_real]]
                real_mean = net(images[pick]).mean(0)
                syn_mean = net(syn[k * ipc:(k + 1) * ipc]).mean(0)
                loss = loss + (real_mean - syn_mean).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                syn.clamp_(lo, hi)
    finally:
        torch.random.set_rng_state(state)
    return syn.detach(), syn_labels


def random_real(
    images: torch.Tensor, labels: torch.Tensor, *, ipc: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline distillation must beat: ``ipc`` random real images per class."""
    labels = torch.as_tensor(labels).long()
    classes = sorted(int(c) for c in torch.unique(labels))
    g = torch.Generator().manual_seed(seed)
    x = _init_synthetic(images.float(), labels, classes, ipc, g)
    return x, torch.tensor(classes).repeat_interleave(ipc)


def train_on(images: torch.Tensor, labels: torch.Tensor, model: nn.Module, *, epochs: int = 100, lr: float = 1e-2,
             batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Train ``model`` on a small tensor set with Adam and cross-entropy (for boost/evaluation experiments)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(images)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(images[b]), labels[b]).backward()
            opt.step()
    return model.eval()
