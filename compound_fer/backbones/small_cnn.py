"""A few conv-BN-ReLU layers for the synthetic 64x64 faces: fast on CPU, no weights (always random init)."""

from __future__ import annotations

from compound_fer.backbones import BackboneSpec, Parts


def build(pretrained: bool) -> Parts:
    """Two conv blocks in the trunk, one in the tail (64 channels); ``pretrained`` is ignored.

    BatchNorm makes it train in a few epochs from scratch (without it, it sat at chance for ~8 epochs);
    its statistics are learned in the basic phase and frozen in continual steps.
    """
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    trunk = [block(3, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2)]
    return Parts(trunk=trunk, tail=[block(32, 64)], feature_dim=64)


SPECS = (BackboneSpec(name="small_cnn", build=build, weights=None, default_size=64, target_layer="tail.0",
                      split="normalise + 2 conv blocks / 1 conv block + pool (64)"),)
