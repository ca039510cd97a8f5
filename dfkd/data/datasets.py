"""The datasets the suite knows, with every constant the rest of the suite may use.

Sources of the normalisation constants: zju-vipa/CMI registry.py NORMALIZE_DICT (CIFAR-10/100),
ljrprocc/DataFree registry.py (Tiny-ImageNet), torchvision's ImageNet weights (ImageNet, and
Places365 and Food101, for which MAD's supplement states none) and our own measurements (JPEG
CIFAR-10, digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dfkd.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the suite may know about a dataset; constants live here and nowhere else."""

    name: str
    # "cifar10" | "cifar100" | "tiny_imagenet" | "image_folder" | "digits" (dfkd/data/loaders.py)
    # | "imagenet" | "places365" | "food101" (dfkd/data/large.py)
    layout: str
    num_classes: int
    test_size: int  # images in the test split: the resolution of an accuracy on it
    image_size: int
    mean: tuple[float, float, float]  # per channel, images in [0, 1]
    std: tuple[float, float, float]
    directory: str  # folder under the data root; "" where torchvision or scikit-learn decides
    title: str  # how reports and error messages name the dataset
    # "crop_flip": RandomCrop(size, crop_padding) + RandomHorizontalFlip (the CIFAR recipe);
    # "crop": the random crop alone (shifts), for digits, which a mirror image can change.
    train_augmentation: Literal["crop_flip", "crop"]
    crop_padding: int  # pixels of zero padding around the random crop


def _at_256(name: str, num_classes: int, test_size: int, directory: str, title: str) -> DatasetInfo:
    """One of MAD's 256x256 sets, which share their size, constants and augmentation."""
    return DatasetInfo(
        name=name,
        layout=name,
        num_classes=num_classes,
        test_size=test_size,
        image_size=256,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        directory=directory,
        title=title,
        train_augmentation="crop_flip",
        crop_padding=32,
    )


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # zju-vipa/CMI registry.py NORMALIZE_DICT. The std values are not the pixel std of
        # CIFAR-10 (about 0.247, 0.243, 0.261), but every published teacher was trained with them.
        DatasetInfo(
            name="cifar10",
            layout="cifar10",
            num_classes=10,
            test_size=10000,
            image_size=32,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2023, 0.1994, 0.2010),
            directory="",
            title="CIFAR-10",
            train_augmentation="crop_flip",
            crop_padding=4,
        ),
        DatasetInfo(
            name="cifar100",
            layout="cifar100",
            num_classes=100,
            test_size=10000,
            image_size=32,
            mean=(0.5071, 0.4867, 0.4408),
            std=(0.2675, 0.2565, 0.2761),
            directory="",
            title="CIFAR-100",
            train_augmentation="crop_flip",
            crop_padding=4,
        ),
        # ljrprocc/DataFree (CuDFKD) registry.py: the measured channel statistics of the train
        # split. CMI's entry is a 0.5/0.5 placeholder, and CuDFKD is the only reference code base
        # with a Tiny-ImageNet distillation script (scripts/cudfkd/cudfkd_timagenet.sh).
        DatasetInfo(
            name="tiny_imagenet",
            layout="tiny_imagenet",
            num_classes=200,
            test_size=10000,
            image_size=64,
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2302, 0.2265, 0.2262),
            directory="tiny-imagenet-200",
            title="Tiny-ImageNet",
            train_augmentation="crop_flip",
            crop_padding=4,
        ),
        # CIFAR-10 re-encoded as JPEG quality 75 by a third party, in the ImageFolder layout. Its
        # README gives mean (0.489, 0.482, 0.447), std (0.245, 0.243, 0.261); decoding its 50,000
        # train images with PIL (and with torchvision.io) gives the values below: the std agrees,
        # the red mean does not (0.4913, not 0.489), so the measured values are used.
        DatasetInfo(
            name="cifar10_jpeg",
            layout="image_folder",
            num_classes=10,
            test_size=10000,
            image_size=32,
            mean=(0.4913, 0.4821, 0.4465),
            std=(0.2452, 0.2428, 0.2606),
            directory="cifar10-jpeg",
            title="CIFAR-10 (JPEG q75 copy)",
            train_augmentation="crop_flip",
            crop_padding=4,
        ),
        # scikit-learn's bundled 8x8 digits as 16x16 grey RGB: every pixel of the source survives
        # the x2 upscaling, and a step costs a quarter of what it would at 32x32, which keeps
        # the embedded default within minutes on a CPU. The generators' two x2 upsamplings then
        # start from 4x4 instead of CIFAR's 8x8. Statistics of the train split as this module
        # loads it, rounded to 4 decimals; tests/test_data.py recomputes them.
        DatasetInfo(
            name="digits",
            layout="digits",
            num_classes=10,
            test_size=451,
            image_size=16,
            mean=(0.3062, 0.3062, 0.3062),
            std=(0.3193, 0.3193, 0.3193),
            directory="",
            title="scikit-learn digits",
            # Shifts of up to 2 px, the CIFAR recipe's 1/8 of the image size (one pixel of the
            # 8x8 source), and no flips, which change digits. A teacher trained on unshifted
            # digits leaves DAFL's generator (which matches no BN statistics) images that
            # transfer poorly to the student (params/teachers.yaml).
            train_augmentation="crop",
            crop_padding=2,
        ),
        # MAD's 256x256 sets (supplement Table 3; methods.md §3.6.6, I-8): every image resized
        # to 256 on its shorter side and centre-cropped to 256x256 (dfkd/data/large.py). The
        # constants are torchvision's ImageNet ones, which its pretrained AlexNet (MAD's ImageNet
        # teacher, Table 10) expects; the supplement gives none for Places365 or Food101. Their
        # train augmentation is not stated either (Table 4): the CIFAR recipe's crop + flip, with
        # the same 1/8 of the image size as padding.
        _at_256("imagenet", 1000, 50_000, "imagenet", "ImageNet"),
        _at_256("places365", 365, 36_500, "places365", "Places365-Standard"),
        _at_256("food101", 101, 25_250, "", "Food-101"),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset `name`; a ConfigError lists the choices for an unknown one."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
