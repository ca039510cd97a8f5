"""The sigmoid-output DCGAN-style generators of the CMI code base.

Both come from zju-vipa/CMI `datafree/models/generator.py`: a linear projection to a
(width, image_size / 4, image_size / 4) map, then two nearest-neighbour x2 upsamplings each followed
by conv3x3-BN-LeakyReLU, then a conv3x3 to RGB and a Sigmoid. Their outputs are pixels in [0, 1],
normalised with the dataset mean and std by the caller. Both keep PyTorch's default initialisation.

- `cmi` (`Generator`, CMI, Fang et al., IJCAI 2021): starts at 2 * ngf channels; nz 256, ngf 64 in
  the CMI scripts. The CMI method re-initialises it at the start of every round; that belongs to
  the method, not to this module.
- `large` (`LargeGenerator`): starts at 4 * ngf channels; the CMI code base uses it for DAFL
  (nz 512), DFQ and ZSKT (nz 256), with ngf 64.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from dfkd.generators.base import GENERATORS, Generator


class DCGANGenerator(Generator):
    """Linear -> BN -> [x2 -> conv3x3 -> BN -> LeakyReLU(0.2)] x 2 -> conv3x3 -> Sigmoid."""

    outputs_normalized = False
    # Channels of the projected map, in units of base_channels (ngf).
    start_width_factor: ClassVar[int]

    def __init__(self, latent_dim: int, base_channels: int, image_size: int) -> None:
        super().__init__(latent_dim, image_size)
        start_width = self.start_width_factor * base_channels
        self.project = nn.Linear(latent_dim, start_width * self.start_size**2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(start_width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(start_width, 2 * base_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * base_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * base_channels, base_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base_channels, 3, 3, padding=1),
            nn.Sigmoid(),
        )

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
