"""The replay memory budget, computed here and nowhere else: M images in all, m per class."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MemoryBudget", "memory_budget", "per_class_quota", "resolve_memory"]


class MemoryBudget(NamedTuple):
    """``total``: the memory M (images); ``quota``: the per-class share m."""

    total: int
    quota: int


def per_class_quota(total: int, n_classes: int) -> int:
    """m = M // classes, at least one image per class."""
    return max(1, int(total) // max(1, int(n_classes)))


def memory_budget(*, memory_fraction: float, n_train_images: int, n_classes_total: int) -> MemoryBudget:
    """The reference's budget: M = round(memory_fraction x training images), m = M // classes (>= 1;
    a fraction of 0 keeps one image per class)."""
    total = int(round(memory_fraction * n_train_images))
    return MemoryBudget(total, per_class_quota(total, n_classes_total))


def resolve_memory(*, quota: int | None, memory_fraction: float | None, n_train_images: int | None,
                   n_classes_total: int | None) -> MemoryBudget | None:
    """The one rule for a method's memory: a given per-class ``quota`` m (M = m x classes, m while the classes
    are unknown); else :func:`memory_budget` of ``memory_fraction``; None while that is undecided (no fraction,
    or the images or classes it refers to are not known yet)."""
    if quota is not None:
        return MemoryBudget(int(quota) * int(n_classes_total or 1), int(quota))
    if memory_fraction is None or n_train_images is None or n_classes_total is None:
        return None
    return memory_budget(memory_fraction=memory_fraction, n_train_images=n_train_images,
                         n_classes_total=n_classes_total)
