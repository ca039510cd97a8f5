"""MAD's generators (Do et al., NeurIPS 2022, supplement Tables 8-9 and §B.3).

Each emits logits u; the images are x = sigmoid(u), pixels in [0, 1] that the caller normalises.
`logits(z, e)` exposes u (Eq. 11 bounds it) and takes the class embedding e_y of a conditional
generator. The three types differ in the first layer only (§B.3):

    uncond: h = W z + b          cat: h = W z + U e_y + b          sum: h = W (z + e_y) + b

Table 8 read as methods.md §3.6.8 does:
- (a) 32x32 and (b) 64x64 are one network, Linear -> reshape to 8 * ngf x (size/8)^2 -> ReLU ->
  BN -> 3 x [bilinear x2 -> ConvBlockX] -> conv1x1 to RGB, ngf 32 (channels 256, 128, 64, 32).
  (a)'s printed reshape (16384 -> 256x8x8) is (b)'s; its Linear gives 4096 = 256x4x4. The
  embedded 16x16 digits use the same network from 2x2.
- (c) 256x256: Linear -> 16 * ngf x 4 x 4 -> ResNetBlockY, then 6 x [bilinear x2 ->
  ResNetBlockY] -> conv3x3 to RGB (channels 512, 512, 256, 128, 64, 32, 16, 16).
- ConvBlockX: conv3x3 -> ReLU -> BN -> conv3x3 (c_o -> c_o; printed c_i -> c_o) -> ReLU -> BN.
  ResNetBlockY: conv3x3 -> LeakyReLU(0.2) -> BN(c_o; printed c_i) -> conv3x3 -> LeakyReLU -> BN,
  plus a 1x1 conv shortcut where the channels change. Conv2d arguments are read as (kernel,
  padding, stride), BatchNorm2d's second one as the momentum (0.1, 0.01), and
  UpsamplingBilinear2d(2) as a scale factor 2 (align_corners=True, as that module does).
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from dfkd.errors import ConfigError
from dfkd.generators.base import GENERATORS, Generator

Conditioning = Literal["uncond", "cat", "sum"]


def conv_block_x(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(c_out, momentum=0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(c_out, momentum=0.1),
    )


class ResNetBlockY(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.BatchNorm2d(c_out, momentum=0.01),
        )
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.shortcut(x)


def _upsample() -> nn.Module:
    return nn.UpsamplingBilinear2d(scale_factor=2)


class MADGenerator(Generator):
    """Table 8: (a)/(b) below 256x256, (c) at 256x256; a first layer of its conditioning."""

    outputs_normalized = False
    conditioning: ClassVar[Conditioning]

    def __init__(self, latent_dim: int, base_channels: int, image_size: int) -> None:
        super().__init__(latent_dim, image_size)
        self.embedding_dim = latent_dim  # d_e = d_z: "sum" adds e_y to z
        large = image_size == 256
        if not large and (image_size % 8 or image_size > 64):
            raise ConfigError(
                f"MAD generators are for 256x256 or multiples of 8 up to 64, got {image_size}"
            )
        self.start_size = 4 if large else image_size // 8
        width = (16 if large else 8) * base_channels
        inputs = latent_dim + (self.embedding_dim if self.conditioning == "cat" else 0)
        self.project = nn.Linear(inputs, width * self.start_size**2)
        if large:  # Table 8(c)
            widths = [w * base_channels // 32 for w in (512, 256, 128, 64, 32, 16, 16)]
            layers: list[nn.Module] = [ResNetBlockY(width, widths[0])]
            for c_in, c_out in itertools.pairwise(widths):
                layers += [_upsample(), ResNetBlockY(c_in, c_out)]
            layers.append(nn.Conv2d(widths[-1], 3, 3, padding=1))
        else:  # Table 8(a), (b)
            layers = [nn.ReLU(), nn.BatchNorm2d(width, momentum=0.1)]
            for stage in range(3):
                layers += [_upsample(), conv_block_x(width >> stage, width >> (stage + 1))]
            layers.append(nn.Conv2d(width >> 3, 3, 1))
        self.body = nn.Sequential(*layers)

    def logits(self, z: Tensor, embedding: Tensor | None = None) -> Tensor:
        """u = G_ig(z, e_y): (N, latent_dim), (N, latent_dim) or None -> (N, 3, size, size)."""
        if self.conditioning == "uncond" or embedding is None:
            if self.conditioning != "uncond":
                raise ValueError(f"a '{self.conditioning}' generator needs class embeddings")
            h = self.project(z)
        elif self.conditioning == "cat":
            h = self.project(torch.cat([z, embedding], dim=1))
        else:
            h = self.project(z + embedding)
        return self.body(h.view(z.shape[0], -1, self.start_size, self.start_size))

    def forward(self, z: Tensor, embedding: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.logits(z, embedding))  # (N, 3, size, size) in (0, 1)


@GENERATORS.register("mad_uncond")
class MADUnconditional(MADGenerator):
    conditioning = "uncond"


@GENERATORS.register("mad_cat")
class MADConcatenation(MADGenerator):
    conditioning = "cat"


@GENERATORS.register("mad_sum")
class MADSummation(MADGenerator):
    conditioning = "sum"
