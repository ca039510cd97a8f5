"""The interface every classifier follows, and the registry that names them.

A classifier is a feature extractor that ends in global pooling, followed by one linear `head`.
Data-free methods need the teacher's penultimate feature as well as its logits (DAFL's activation
loss, for instance), so `forward_with_features` returns both from a single forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dfkd.errors import ConfigError
from dfkd.registry import Registry


class Classifier(nn.Module):
    """Images (N, 3, H, W) -> logits (N, num_classes), through a (N, feature_dim) feature."""

    head: nn.Linear

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """The penultimate feature (N, feature_dim), after global pooling, before the head."""
        raise NotImplementedError

    def forward(self, x: Tensor, with_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (N, num_classes) in at least float32 whatever precision autocast ran the
        layers in, and with `with_features` the penultimate features too. float32 logits make
        every loss and metric start from float32 on any device: autocast's float32 op lists
        differ (CUDA's runs softmax, log-softmax, exp and sums in float32, the CPU's in
        bfloat16), and the `fast` recipe is the same on both only if the logits are float32.
        A float64 network keeps float64 logits (the gradient tests' finite differences)."""
        features = self.forward_features(x)
        logits = self.head(features)
        if logits.dtype != torch.float64:
            logits = logits.float()
        return (logits, features) if with_features else logits

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (N, num_classes) in float32, features (N, feature_dim)) from one pass,
        through the module's call, so that a compiled network (dfkd/compute.py) runs it
        compiled."""
        return self(x, with_features=True)

    def stage_modules(self) -> list[nn.Module]:
        """The main stages in forward order (a ResNet's layer1..layer4), for methods that read
        their inputs; families without such stages raise a ConfigError."""
        raise ConfigError(f"{type(self).__name__} defines no stages; use the BatchNorm layers")


# Constructors `(num_classes) -> Classifier`, filled in by the family modules as they are imported.
MODELS: Registry[Callable[[int], Classifier]] = Registry("model")
