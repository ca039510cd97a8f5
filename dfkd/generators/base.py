"""The interface every generator follows, and the registry that names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import nn

from dfkd.errors import ConfigError
from dfkd.registry import Registry


class Generator(nn.Module):
    """Latent codes (N, latent_dim) -> images (N, 3, image_size, image_size).

    `outputs_normalized` says what the images are. False: pixels in [0, 1] (a final Sigmoid),
    which the caller normalises with the dataset mean and std before a classifier sees them.
    True: the output is already normalised (DAFL's affine-free BatchNorm) and is fed as is.
    """

    outputs_normalized: ClassVar[bool]

    def __init__(self, latent_dim: int, image_size: int) -> None:
        super().__init__()
        if image_size <= 0 or image_size % 4 != 0:
            raise ConfigError(
                f"generator image_size must be a positive multiple of 4, got {image_size}"
            )
        self.latent_dim = latent_dim
        self.image_size = image_size
        # Two x2 upsamplings follow the initial projection.
        self.start_size = image_size // 4


# Constructors `(latent_dim, base_channels, image_size) -> Generator`.
GENERATORS: Registry[Callable[[int, int, int], Generator]] = Registry("generator")


def reset_weights(generator: nn.Module) -> None:
    """The CMI code base's `reset_model` (zju-vipa/CMI datafree/synthesis/contrastive.py; the
    same function in ljrprocc/DataFree datafree/synthesis/cudfkd.py): conv and linear weights
    N(0, 0.02) and biases 0, BatchNorm weights N(1, 0.02) and biases 0; running statistics kept."""
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
