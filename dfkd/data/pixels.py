"""Splits in memory as uint8 tensors, and the on-device normalisation and augmentation.

A split is loaded once into an `ImageTensors` (N, 3, H, W) uint8 and moved to the GPU whole, so
training never waits on a CPU loader (the GPU-resident design of KellerJordan/cifar10-airbench's
CifarLoader). The train augmentation reproduces the reference recipe exactly rather than
airbench's faster variant: torchvision's RandomCrop(size, padding=4) pads with zeros in pixel
space before Normalize, and RandomHorizontalFlip flips every sample independently with p = 0.5
(zju-vipa/CMI registry.py get_dataset, the transform every method of the suite was trained with).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dfkd.data.datasets import DatasetInfo


@dataclass(frozen=True, eq=False)
class ImageTensors:
    """One split in memory: images (N, 3, H, W) uint8 in pixel space, labels (N,) int64."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) uint8, got {self.images.shape}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be ({len(self.images)},) int64, got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> ImageTensors:
        return ImageTensors(self.images.to(device), self.labels.to(device))


def normalize(images: Tensor, info: DatasetInfo) -> Tensor:
    """(N, 3, H, W) uint8 or float in [0, 1] -> float32 (x - mean) / std.

    Same operations in the same order as torchvision's ToTensor + Normalize, so the result is
    bitwise identical to the reference pipeline.
    """
    mean, std = _channel_constants(info.mean, info.std, images.device)
    pixels = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    return pixels.sub(mean).div(std)


@functools.cache
def _channel_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    # Cached per device: building them every batch would copy from the host each step.
    as_tensor = functools.partial(torch.tensor, dtype=torch.float32, device=device)
    return as_tensor(mean).view(3, 1, 1), as_tensor(std).view(3, 1, 1)


def random_crop_flip(images: Tensor, padding: int = 4, flip: bool = True) -> Tensor:
    """torchvision's RandomCrop(H, padding) + RandomHorizontalFlip() on every sample of a batch.

    Zero padding in pixel space, a uniform offset in 0..2*padding per sample and axis, and (with
    `flip`) an independent flip with p = 0.5, drawn from the global RNG of the input's device.
    """
    n, c, h, w = images.shape
    device = images.device
    padded_width = w + 2 * padding
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, C, H+2p, W+2p), zeros
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    columns = torch.arange(w, device=device).expand(n, w)
    if flip:
        flipped = torch.rand(n, 1, device=device) < 0.5
        columns = torch.where(flipped, w - 1 - columns, columns)
    columns = columns + left  # (N, W) into the padded image
    rows = torch.arange(h, device=device) + top  # (N, H)
    # One gather over the flattened padded image serves every sample at once.
    index = rows[:, :, None] * padded_width + columns[:, None, :]  # (N, H, W)
    index = index.view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def augment(images: Tensor, info: DatasetInfo, flip: bool = True) -> Tensor:
    """The dataset's train augmentation on pixels (uint8 or floats in [0, 1]), dtype kept;
    `flip=False` keeps its crop alone (NAYER's synthesis on Tiny-ImageNet)."""
    mirrors = flip and info.train_augmentation == "crop_flip"
    return random_crop_flip(images, info.crop_padding, flip=mirrors)


def denormalize(images: Tensor, info: DatasetInfo) -> Tensor:
    """Normalised images -> pixels, with the reference's reverse normalisation.

    zju-vipa/CMI datafree/utils/_utils.py normalize(reverse=True): (x - (-m / s)) / (1 / s), in
    that order, so pixels quantised from it match the reference's to the last bit.
    """
    as_tensor = functools.partial(torch.tensor, dtype=images.dtype, device=images.device)
    shift = as_tensor([-m / s for m, s in zip(info.mean, info.std, strict=True)]).view(3, 1, 1)
    scale = as_tensor([1 / s for s in info.std]).view(3, 1, 1)
    return (images - shift) / scale


def normalized_bounds(info: DatasetInfo, device: torch.device) -> tuple[Tensor, Tensor]:
    """(low, high), each (1, 3, 1, 1): where pixels 0 and 1 land after normalisation."""
    low = [-m / s for m, s in zip(info.mean, info.std, strict=True)]
    high = [(1 - m) / s for m, s in zip(info.mean, info.std, strict=True)]
    as_tensor = functools.partial(torch.tensor, dtype=torch.float32, device=device)
    return as_tensor(low).view(1, 3, 1, 1), as_tensor(high).view(1, 3, 1, 1)


def training_batch(data: ImageTensors, indices: Tensor, info: DatasetInfo) -> tuple[Tensor, Tensor]:
    """(normalised float32 images, labels) of `data[indices]` with the dataset's train augmentation.

    Callers own the order (a per-epoch torch.randperm, keeping the last partial batch as
    torchvision's DataLoader does), so a checkpoint can store it and resume mid-epoch.
    """
    return normalize(augment(data.images[indices], info), info), data.labels[indices]
