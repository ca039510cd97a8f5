"""MAD's 256x256 datasets: ImageNet, Places365-Standard and Food-101 (supplement Table 3).

Each image is resized to 256 pixels on its shorter side (bilinear, antialiased: torchvision's
Resize(256) on a PIL image) and centre-cropped to 256x256 (CenterCrop(256), dfkd/data/files.py),
since the supplement trains and evaluates at 3x256x256 (methods.md §3.6.7, I-8).

The splits are held in memory like every other split of the suite (dfkd/data/pixels.py), at
192 KiB an image: a test split takes 4.6-9.2 GiB, Food-101's train split 13.9 GiB. ImageNet's and
Places365's train splits (1.28M and 1.8M images, 235 and 330 GiB) fit on no usual machine, so a
loader refuses them before decoding anything; only a teacher's training reads a train split,
and MAD's ImageNet teacher is torchvision's pretrained AlexNet (Table 10), not trained here.

Where the files come from:
- ImageNet (ILSVRC2012): not downloadable; `imagenet/train/<wnid>/*` and `imagenet/val/<wnid>/*`
  (what torchvision.datasets.ImageNet extracts from the official archives).
- Places365-Standard: torchvision.datasets.Places365 with small=True (its 256x256 images),
  downloaded and md5-checked by torchvision into `places365/`; "test" is its val split.
- Food-101: torchvision.datasets.Food101, downloaded and md5-checked into `food-101/`; the split
  lists are its meta/train.json and meta/test.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from dfkd.data.datasets import DatasetInfo
from dfkd.data.files import Samples, check_classes, decode, image_folder
from dfkd.errors import DataError


def index_split(info: DatasetInfo, root: Path, split: str, download: bool) -> Samples:
    """Every (image file, label) of a split, downloading it first where that is allowed."""
    samples, classes = _INDEXERS[info.layout](info, root, split, download)
    check_classes(info, root / info.directory, classes)
    return samples


def load_large(info: DatasetInfo, root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """A split decoded to (N, 3, 256, 256) uint8 and (N,) int64, if it fits in memory."""
    samples = index_split(info, root, split, download)
    size = info.image_size
    needed = len(samples) * 3 * size * size
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > 0.8 * available:
        raise DataError(
            f"{info.title}'s {split} split ({len(samples):,} images) needs {needed / 2**30:.0f} "
            f"GiB in memory at {size}x{size}, and this machine has {available / 2**30:.0f} GiB; "
            f"the suite holds splits in memory: import a teacher instead of training one "
            f"(teacher_source: released)"
        )
    print(f"[data] decoding {len(samples):,} {info.title} {split} images to {size}x{size}")
    return decode(samples, size, resize=True)


def _imagenet(info: DatasetInfo, root: Path, split: str, download: bool) -> tuple[Samples, int]:
    folder = root / info.directory / ("train" if split == "train" else "val")
    remedy = (
        "it cannot be downloaded: extract ILSVRC2012's train and val images there, one folder "
        "per wnid (torchvision.datasets.ImageNet does this from the archives)"
    )
    return image_folder(info, folder, remedy)


def _places365(info: DatasetInfo, root: Path, split: str, download: bool) -> tuple[Samples, int]:
    from torchvision.datasets import Places365

    folder = root / info.directory
    variant = "train-standard" if split == "train" else "val"
    images = folder / ("data_256_standard" if split == "train" else "val_256")
    try:
        # torchvision refuses to download into an extracted folder: fetch only what is missing.
        dataset = Places365(
            str(folder), split=variant, small=True, download=download and not images.is_dir()
        )
    except (RuntimeError, OSError) as error:  # a missing or corrupt file list, or no network
        if download:
            raise DataError(
                f"could not download or verify {info.title} into {folder}/ ({error}); check the "
                f"network, or delete the folder's corrupt files and try again"
            ) from None
        raise DataError(
            f"{info.title} not found or corrupt under {folder}/ ({error}); set data.download: "
            f"true in params.yaml or place torchvision's Places365 small files there"
        ) from None
    if not images.is_dir():
        raise DataError(f"{info.title}: {images}/ is missing; set data.download: true or add it")
    return [(Path(path), label) for path, label in dataset.imgs], len(dataset.classes)


def _food101(info: DatasetInfo, root: Path, split: str, download: bool) -> tuple[Samples, int]:
    from torchvision.datasets import Food101

    try:
        Food101(str(root), split=split, download=download)  # downloads and checks the md5
    except (RuntimeError, OSError) as error:
        where = "download it into" if download else "find it under"
        fix = "check the network" if download else "set data.download: true in params.yaml"
        raise DataError(f"could not {where} {root}/food-101 ({error}); {fix}") from None
    base = root / "food-101"
    listing = base / "meta" / f"{split}.json"
    try:
        metadata = json.loads(listing.read_text())  # {class: ["class/id", ...]}
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {listing} ({error}); the copy is corrupt") from None
    classes = sorted(metadata)  # labels in sorted class order, as torchvision numbers them
    samples = [
        (base / "images" / f"{relative}.jpg", label)
        for label, name in enumerate(classes)
        for relative in metadata[name]
    ]
    return samples, len(classes)


_INDEXERS: dict[str, Callable[[DatasetInfo, Path, str, bool], tuple[Samples, int]]] = {
    "imagenet": _imagenet,
    "places365": _places365,
    "food101": _food101,
}
LAYOUTS = tuple(_INDEXERS)
