"""CIFAR ResNet-18 and ResNet-34.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, in the CIFAR layout of
zju-vipa/CMI `datafree/models/classifiers/resnet.py` (taken from DAFL's `resnet.py`): a 3x3
stride-1 stem and no max-pool, so the four stages run at 32, 16, 8 and 4 pixels for 32x32 inputs.
PyTorch's default initialisation, as in the reference. The reference pools with `avg_pool2d(., 4)`;
adaptive pooling is identical at 32x32 and also accepts 64x64 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from dfkd.models.base import MODELS, Classifier

STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual sum; a strided 1x1 conv-BN when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """Stem, four stages of BasicBlocks (the first at stride 1, the rest at 2), pool, linear."""

    def __init__(self, blocks_per_stage: Sequence[int], num_classes: int) -> None:
        super().__init__(num_classes, feature_dim=STAGE_WIDTHS[-1])
        self.stem = nn.Sequential(
            nn.Conv2d(3, STAGE_WIDTHS[0], 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = STAGE_WIDTHS[0]
        for index, (width, num_blocks) in enumerate(
            zip(STAGE_WIDTHS, blocks_per_stage, strict=True)
        ):
            first_stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(num_blocks):
                stride = first_stride if block_index == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))  # (N, 512, H/8, W/8)
        return self.pool(x).flatten(1)  # (N, 512)

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)  # the reference's layer1..layer4


@MODELS.register("resnet18")
def resnet18(num_classes: int) -> CifarResNet:
    return CifarResNet([2, 2, 2, 2], num_classes)


@MODELS.register("resnet34")
def resnet34(num_classes: int) -> CifarResNet:
    return CifarResNet([3, 4, 6, 3], num_classes)
