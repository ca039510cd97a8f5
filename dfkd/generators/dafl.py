"""The original DAFL generator.

Chen et al., "Data-Free Learning of Student Networks", ICCV 2019; the generator class in
huawei-noah/Data-Efficient-Model-Compression `DAFL/DAFL-train.py`. Unlike the CMI-code generators it
ends in Tanh followed by an affine-free BatchNorm, and that normalised output is fed to teacher and
student as is, without the dataset mean and std. The paper uses nz 1000 and widths 128 / 64, i.e.
2 * ngf and ngf with ngf 64. Default PyTorch initialisation.
"""

from __future__ import annotations

from torch import Tensor, nn

from dfkd.generators.base import GENERATORS, Generator

# BatchNorm2d's second positional argument is eps. The reference passes 0.8 there, as the GAN
# template it was adapted from does, where it was probably meant as momentum; so these two layers
# normalise by sqrt(var + 0.8), which damps them considerably. Kept because the published numbers
# were produced with it.
REFERENCE_EPS = 0.8


@GENERATORS.register("dafl")
class DAFLGenerator(Generator):
    """Linear -> BN -> [x2 -> conv3x3 -> BN(eps 0.8) -> LeakyReLU] x 2 -> conv3x3 -> Tanh -> BN."""

    outputs_normalized = True

    def __init__(self, latent_dim: int, base_channels: int, image_size: int) -> None:
        super().__init__(latent_dim, image_size)
        start_width = 2 * base_channels
        self.project = nn.Linear(latent_dim, start_width * self.start_size**2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(start_width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(start_width, start_width, 3, padding=1),
            nn.BatchNorm2d(start_width, eps=REFERENCE_EPS),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(start_width, base_channels, 3, padding=1),
            nn.BatchNorm2d(base_channels, eps=REFERENCE_EPS),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base_channels, 3, 3, padding=1),
            nn.Tanh(),
            # No affine parameters: in train mode each output channel has zero mean and unit
            # variance over the batch, which is the input scale the classifiers expect.
            nn.BatchNorm2d(3, affine=False),
        )

    def forward(self, z: Tensor) -> Tensor:
        x = self.project(z).view(z.shape[0], -1, self.start_size, self.start_size)
        return self.body(x)  # (N, 3, image_size, image_size), normalised per channel
