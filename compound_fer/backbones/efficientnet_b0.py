"""EfficientNet-B0 (torchvision). Its ImageNet weights are torchvision's file in the torch hub cache; no
PyPI package ships them, so offline it is used with ``pretrained: false`` (random init)."""

from __future__ import annotations

from compound_fer.backbones import BackboneSpec, Parts
from compound_fer.backbones._weights import hub_weights

WEIGHTS_FILE = "efficientnet_b0_rwightman-7f5810bc.pth"


def build(pretrained: bool) -> Parts:
    """Trunk: stem .. stage 6 (``features[0:7]``); tail: the last MBConv stage and the 1x1 conv to 1280."""
    from torchvision.models import efficientnet_b0

    net = efficientnet_b0(weights=None)
    if pretrained:
        net.load_state_dict(hub_weights("efficientnet_b0", WEIGHTS_FILE))
    feats = net.features
    return Parts(trunk=list(feats[:7]), tail=[feats[7], feats[8]], feature_dim=1280)


SPECS = (BackboneSpec(name="efficientnet_b0", build=build,
                      weights=f"{WEIGHTS_FILE} (hub cache; not shipped offline: `pretrained: false`)",
                      default_size=112, target_layer="tail.1",
                      split="normalise + `features[0:7]` / `features[7:9]` + pool (1280)"),)
