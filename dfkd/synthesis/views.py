"""The augmented views the inversion methods optimise their images through, batched on the device.

- `jitter`: ADI's `jitter_and_flip` (zju-vipa/CMI datafree/synthesis/deepinversion.py): the
  whole batch rolled by one random offset in [-size/8, size/8] per axis, and flipped, whole, with
  probability 1/2. The offsets and the coin come from the CPU generator, so drawing them never
  waits for the device.
- `random_resized_crop`: CMI's local view (contrastive.py): kornia's RandomResizedCrop to the
  input size with scale [0.25, 1] and its default ratio [3/4, 4/3], drawn per sample, bilinear;
  then kornia's per-sample RandomHorizontalFlip.

Both are differentiable in the images. A flip is left out where the dataset says a mirror image
changes the label (MethodContext.mirror_keeps_label).
"""

from __future__ import annotations

import torch
from torch import Tensor


def jitter(images: Tensor, flip: bool) -> Tensor:
    """(N, C, H, W) -> (N, C, H, W): one roll for the whole batch, and a flip with p = 1/2."""
    limit_h, limit_w = images.shape[-2] // 8, images.shape[-1] // 8
    shift_h = int(torch.randint(-limit_h, limit_h + 1, ()))
    shift_w = int(torch.randint(-limit_w, limit_w + 1, ()))
    coin = float(torch.rand(()))  # drawn even when unused, so both settings share a stream
    rolled = torch.roll(images, shifts=(shift_h, shift_w), dims=(2, 3))
    return torch.flip(rolled, dims=(3,)) if flip and coin > 0.5 else rolled


class LocalView:
    """CMI's local view as a callable: (N, C, H, W) in [0, 1] -> (N, C, H, W) in [0, 1]."""

    def __init__(self, size: int, flip: bool) -> None:
        from kornia import augmentation  # imported here: only CMI needs it

        steps = [augmentation.RandomResizedCrop(size=(size, size), scale=(0.25, 1.0))]
        if flip:
            steps.append(augmentation.RandomHorizontalFlip())
        self.transform = torch.nn.Sequential(*steps)

    def __call__(self, images: Tensor) -> Tensor:
        return self.transform(images)
