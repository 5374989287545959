"""The one label lookup: global taxonomy labels -> a model's output positions (its class order)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from compound_fer.taxonomy import CATEGORIES

__all__ = ["to_model_labels"]


def to_model_labels(global_labels: Any, class_order: Sequence[int]) -> torch.Tensor:
    """Position of each global label in ``class_order`` (-1 for labels outside it), as a long tensor.

    ``global_labels``: a tensor, array or sequence of taxonomy labels.
    """
    lut = torch.full((len(CATEGORIES),), -1, dtype=torch.long)
    lut[torch.as_tensor([int(c) for c in class_order], dtype=torch.long)] = torch.arange(len(class_order))
    return lut[torch.as_tensor(np.asarray(global_labels), dtype=torch.long)]
