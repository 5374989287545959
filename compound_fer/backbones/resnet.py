"""ResNet-18 and ResNet-50 (torchvision), ImageNet weights from the torch hub cache only (no PyPI package
ships them)."""

from __future__ import annotations

from functools import partial

from compound_fer.backbones import BackboneSpec, Parts
from compound_fer.backbones._weights import hub_weights

FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}


def build(name: str, pretrained: bool) -> Parts:
    """Trunk: stem .. ``layer3``; tail: ``layer4``."""
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    if pretrained:
        net.load_state_dict(hub_weights(name, FILES[name]))
    trunk = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3]
    return Parts(trunk=trunk, tail=[net.layer4], feature_dim=net.fc.in_features)


SPECS = tuple(
    BackboneSpec(name=name, build=partial(build, name), weights=f"{file} (hub cache)", default_size=112,
                 target_layer="tail.0", split=f"normalise + stem .. `layer3` / `layer4` + pool ({dim})")
    for (name, file), dim in zip(FILES.items(), (512, 2048))
)
