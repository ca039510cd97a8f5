"""VGG-11 with batch normalisation, for 32x32 and 64x64 inputs.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR
2015, in the CIFAR variant zju-vipa/CMI registers as `vgg11` (`datafree/models/classifiers/vgg.py`,
taken from HobbitLong/RepDistiller `models/vgg.py`): eight 3x3 conv-BN-ReLU layers in five blocks,
global average pooling and a single linear layer instead of VGG's three fully connected ones.
The reference applies each block's last ReLU outside the block; putting it inside computes the same.
"""

from __future__ import annotations

from torch import Tensor, nn

from dfkd.models.base import MODELS, Classifier

VGG11_BLOCKS = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class VGG(Classifier):
    """Five conv blocks with 2x2 max-pools between them, global average pool, linear."""

    def __init__(self, blocks: tuple[tuple[int, ...], ...], num_classes: int) -> None:
        super().__init__(num_classes, feature_dim=blocks[-1][-1])
        layers = []
        in_channels = 3
        for block_widths in blocks:
            block = []
            for width in block_widths:
                block += [
                    nn.Conv2d(in_channels, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_channels = width
            layers.append(nn.Sequential(*block))
        self.blocks = nn.ModuleList(layers)
        self.downsample = nn.MaxPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.feature_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the reference: He init over fan-out for convolutions, N(0, 0.01) for the head, zero
        # biases; BatchNorm keeps PyTorch's default gamma 1, beta 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        # The extra pool after block 3 for 64x64 inputs (Tiny-ImageNet) gives the last block the
        # 4x4 maps it sees on 32x32 inputs; other sizes take the 32x32 path, as in the reference.
        pool_after = {0, 1, 2, 3} if x.shape[-2] == 64 else {0, 1, 2}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in pool_after:
                x = self.downsample(x)
        return self.pool(x).flatten(1)  # (N, 512)


@MODELS.register("vgg11")
def vgg11(num_classes: int) -> VGG:
    return VGG(VGG11_BLOCKS, num_classes)
