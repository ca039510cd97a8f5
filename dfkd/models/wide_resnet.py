"""Wide residual networks WRN-d-k for 32x32 inputs.

Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016, in the version zju-vipa/CMI uses
(`datafree/models/classifiers/wresnet.py`, taken from polo5/ZeroShotKnowledgeTransfer
`models/wresnet.py`): pre-activation blocks, (d - 4) / 6 blocks per group, group widths 16k, 32k
and 64k after a 16-channel stem. Every reference constructor sets the dropout between the two
convolutions of a block to 0, so it is left out here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dfkd.models.base import MODELS, Classifier

STEM_WIDTH = 16


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice plus a residual; a strided 1x1 projection when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        # The reference feeds the projection the pre-activated input but adds the identity
        # shortcut to the raw input; both are kept so the function matches.
        residual = x if self.shortcut is None else self.shortcut(activated)
        return out + residual


class WideResNet(Classifier):
    """Stem conv, three groups of pre-activation blocks (strides 1, 2, 2), BN-ReLU, pool, linear."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(num_classes, feature_dim=widths[-1])
        self.stem = nn.Conv2d(3, STEM_WIDTH, 3, 1, padding=1, bias=False)
        groups = []
        in_channels = STEM_WIDTH
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = []
            for block_index in range(blocks_per_group):
                blocks.append(PreActBlock(in_channels, width, stride if block_index == 0 else 1))
                in_channels = width
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        # Pre-activation blocks end in a convolution, so the last group's output is normalised here.
        self.bn = nn.BatchNorm2d(widths[-1])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.feature_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference's N(0, sqrt(2 / (k * k * out_channels))) is He init over fan-out. BatchNorm
        # keeps PyTorch's default gamma 1, beta 0 (what the reference sets), and the head keeps its
        # default weight init with a zero bias.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.groups(self.stem(x))  # (N, 64k, H/4, W/4)
        x = F.relu(self.bn(x))
        return self.pool(x).flatten(1)  # (N, 64k)


@MODELS.register("wrn16_1")
def wrn16_1(num_classes: int) -> WideResNet:
    return WideResNet(16, 1, num_classes)


@MODELS.register("wrn16_2")
def wrn16_2(num_classes: int) -> WideResNet:
    return WideResNet(16, 2, num_classes)


@MODELS.register("wrn40_1")
def wrn40_1(num_classes: int) -> WideResNet:
    return WideResNet(40, 1, num_classes)


@MODELS.register("wrn40_2")
def wrn40_2(num_classes: int) -> WideResNet:
    return WideResNet(40, 2, num_classes)
