"""The one head pre-growing helper (used under DDP, where shapes must not change, and by iCaRL)."""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

__all__ = ["pregrow_head"]


def pregrow_head(head: nn.Module, num_classes: int) -> None:
    """Grow a dynamic head to ``num_classes`` outputs now, new units inactive (masked) until trained.

    Heads without ``adaptation`` (fixed heads) are left as they are.
    """
    if not hasattr(head, "adaptation"):
        return
    was_training = head.training
    head.eval()  # GrowingHead / IncrementalClassifier activate units only in training mode
    try:
        head.adaptation(SimpleNamespace(classes_in_this_experience=list(range(num_classes))))
    finally:
        head.train(was_training)
