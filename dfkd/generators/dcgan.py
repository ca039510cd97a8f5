"""The sigmoid-output DCGAN-style generators of the CMI code base.

Both come from zju-vipa/CMI `datafree/models/generator.py`: a linear projection to a
(width, image_size / 4, image_size / 4) map, then two nearest-neighbour x2 upsamplings each followed
by conv3x3-BN-LeakyReLU, then a conv3x3 to RGB and a Sigmoid. Their outputs are pixels in [0, 1],
normalised with the dataset mean and std by the caller. They keep PyTorch's default initialisation;
CMI and CuDFKD re-draw it (dfkd.generators.reset_weights), which belongs to those methods.

- `cmi` (`Generator`, CMI, Fang et al., IJCAI 2021): starts at 2 * ngf channels; nz 256, ngf 64 in
  the CMI scripts. The CMI method re-initialises it at the start of every round.
- `large` (`LargeGenerator`): starts at 4 * ngf channels; the CMI code base uses it for DAFL
  (nz 512), DFQ and ZSKT (nz 256), with ngf 64; CuDFKD's generator for 32x32 is the same network.
- `large_depth3`: CuDFKD's generator for 64x64 images, three upsamplings from 8 * ngf channels.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from dfkd.errors import ConfigError
from dfkd.generators.base import GENERATORS, Generator


class DCGANGenerator(Generator):
    """Linear -> BN -> [x2 -> conv3x3 -> BN -> LeakyReLU(0.2)] x upsamplings -> conv3x3 -> Sigmoid.

    Each upsampling stage halves the channels down to ngf at the last one.
    """

    outputs_normalized = False
    # Channels of the projected map, in units of base_channels (ngf).
    start_width_factor: ClassVar[int]
    upsamplings: ClassVar[int] = 2

    def __init__(self, latent_dim: int, base_channels: int, image_size: int) -> None:
        super().__init__(latent_dim, image_size)
        if image_size % 2**self.upsamplings:
            multiple = 2**self.upsamplings
            raise ConfigError(
                f"generator image_size must be a multiple of {multiple}, got {image_size}"
            )
        self.start_size = image_size // 2**self.upsamplings
        start_width = self.start_width_factor * base_channels
        self.project = nn.Linear(latent_dim, start_width * self.start_size**2)
        layers: list[nn.Module] = [nn.BatchNorm2d(start_width)]
        width = start_width
        for stage in range(self.upsamplings):
            out = base_channels * 2 ** (self.upsamplings - 1 - stage)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        self.body = nn.Sequential(*layers, nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, z: Tensor) -> Tensor:
        x = self.project(z).view(z.shape[0], -1, self.start_size, self.start_size)
        return self.body(x)  # (N, 3, image_size, image_size), in [0, 1]


@GENERATORS.register("cmi")
class CMIGenerator(DCGANGenerator):
    """CMI's `Generator`: the projected map has 2 * ngf channels."""

    start_width_factor = 2


@GENERATORS.register("large")
class LargeGenerator(DCGANGenerator):
    """CMI code base's `LargeGenerator`: the projected map has 4 * ngf channels."""

    start_width_factor = 4


@GENERATORS.register("large_depth3")
class LargeGeneratorDepth3(DCGANGenerator):
    """CuDFKD's generator for 64x64 images (`--depth 3`, Tiny-ImageNet): three upsamplings from
    an 8 * ngf map, as DCGAN_Generator_CIFAR10(d=3) of ljrprocc/DataFree."""

    start_width_factor = 8
    upsamplings = 3
