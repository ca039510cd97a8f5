"""Small plain conv nets for CPU smoke runs of the embedded default dataset.

The default dataset is 8x8 handwritten digits upscaled to 16x16 RGB (10 classes); `cnn_small` is
its teacher and `cnn_tiny` its student, sized so a whole run trains in seconds on two CPU cores.
They come from no paper, so no published number applies to them.
"""

from __future__ import annotations

from torch import Tensor, nn

from dfkd.models.base import MODELS, Classifier


class SmallCNN(Classifier):
    """Conv3x3-BN-ReLU blocks with a 2x2 max-pool after all but the last, global pool, linear."""

    def __init__(self, widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__(num_classes, feature_dim=widths[-1])
        layers: list[nn.Module] = []
        in_channels = 3
        for index, width in enumerate(widths):
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.body(x)  # (N, widths[-1], H/4, W/4)
        return self.pool(x).flatten(1)  # (N, widths[-1])


@MODELS.register("cnn_small")
def cnn_small(num_classes: int) -> SmallCNN:
    return SmallCNN((16, 32, 64), num_classes)


@MODELS.register("cnn_tiny")
def cnn_tiny(num_classes: int) -> SmallCNN:
    return SmallCNN((8, 16, 32), num_classes)
