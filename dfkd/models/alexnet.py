"""AlexNet as torchvision builds it (Krizhevsky et al., 2012; torchvision.models.alexnet), for
MAD's ImageNet, Places365 and Food101 pairs (supplement Tables 4, 5, 10: AlexNet -> AlexNet).

MAD's ImageNet teacher reaches 56.52% (Table 10), the top-1 of torchvision's pretrained
AlexNet (AlexNet_Weights.IMAGENET1K_V1), so the layers and their order are torchvision's: the
single-tower variant without local response normalisation or BatchNorm, and an adaptive 6x6
average pool that takes the 256x256 images of MAD's Table 3 as well as 224x224 crops. The last
classifier layer is the suite's `head` and the layers before it give the 4096-d feature;
`torchvision_state_dict` renames torchvision's weights into this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from dfkd.models.base import MODELS, Classifier

FEATURE_DIM = 4096


class AlexNet(Classifier):
    """Five conv layers with three 3x3/2 max-pools, a 6x6 pool, two dropout + FC-4096 layers."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, feature_dim=FEATURE_DIM)
        # Indices match torchvision's `features` and `classifier`, so its weights load by name.
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(256 * 6 * 6, FEATURE_DIM),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(FEATURE_DIM, FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 256, 7, 7) at 256x256, (N, 256, 6, 6) at 224x224
        x = self.pool(x).flatten(1)  # (N, 9216)
        return self.classifier(x)  # (N, 4096)


def torchvision_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's AlexNet weights with its last layer, classifier.6, renamed to head."""
    return {
        key.replace("classifier.6.", "head.", 1) if key.startswith("classifier.6.") else key: value
        for key, value in state.items()
    }


@MODELS.register("alexnet")
def alexnet(num_classes: int) -> AlexNet:
    return AlexNet(num_classes)
