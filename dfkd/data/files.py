"""Image files to tensors: the indexing, checks and decoding the file-based loaders share."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dfkd.data.datasets import DatasetInfo
from dfkd.errors import DataError

Samples = list[tuple[Path, int]]


def image_folder(info: DatasetInfo, folder: Path, remedy: str) -> tuple[Samples, int]:
    """(samples, number of classes) of one folder of images per class, labelled alphabetically
    as torchvision's ImageFolder numbers them; `remedy` says how to obtain a missing copy."""
    try:
        from torchvision.datasets import ImageFolder

        dataset = ImageFolder(str(folder))
    except FileNotFoundError as error:
        raise DataError(
            f"{info.title} not found or incomplete under {folder}/ ({error}); {remedy}"
        ) from None
    return [(Path(path), label) for path, label in dataset.samples], len(dataset.classes)


def check_classes(info: DatasetInfo, folder: Path, found: int) -> None:
    if found != info.num_classes:
        raise DataError(
            f"{info.title} under {folder}/ has {found} classes, expected {info.num_classes}; "
            f"the copy is incomplete or of another dataset"
        )


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) then CenterCrop(size) on a PIL image, as one function."""
    width, height = image.size
    if width <= height:  # Resize(size): the shorter side becomes `size`, the ratio is kept
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left = round((new_width - size) / 2.0)
    top = round((new_height - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def decode(
    samples: Sequence[tuple[str | Path, int]], size: int, resize: bool
) -> tuple[Tensor, Tensor]:
    """(images (N, 3, size, size) uint8, labels (N,) int64) in sample order, decoded on every
    CPU core; with `resize`, each image resized and centre-cropped to size x size, without it,
    an image of another size is a DataError."""
    pixels = np.empty((len(samples), size, size, 3), dtype=np.uint8)  # (N, H, W, 3)

    def decode_one(position: int) -> None:
        path = samples[position][0]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except Image.DecompressionBombError:
            raise DataError(
                f"image {path} claims more pixels than PIL decodes safely (a decompression bomb?); "
                "replace or remove it"
            ) from None
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ... per format
            raise DataError(f"cannot decode image {path} ({error}); replace or remove it") from None
        if resize:
            rgb = resize_center_crop(rgb, size)
        elif rgb.size != (size, size):
            raise DataError(
                f"image {path} is {rgb.size[0]}x{rgb.size[1]} pixels, expected {size}x{size}; "
                f"resize the dataset before loading it"
            )
        pixels[position] = np.asarray(rgb)

    # PIL releases the GIL while it decodes and resamples, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for _ in pool.map(decode_one, range(len(samples)), chunksize=256):
            pass
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return images, labels
