"""Every dataset the suite uses, held in memory as uint8 tensors, with on-device augmentation.

A split is loaded once into an `ImageTensors` (N, 3, H, W) uint8 and moved to the GPU whole, so
training never waits on a CPU loader (the GPU-resident design of KellerJordan/cifar10-airbench's
CifarLoader). The train augmentation reproduces the reference recipe exactly rather than
airbench's faster variant: torchvision's RandomCrop(size, padding=4) pads with zeros in pixel
space before Normalize, and RandomHorizontalFlip flips every sample independently with p = 0.5
(zju-vipa/CMI registry.py get_dataset, the transform every method of the suite was trained with).

Sources of the normalisation constants: zju-vipa/CMI registry.py NORMALIZE_DICT (CIFAR-10/100),
ljrprocc/DataFree registry.py (Tiny-ImageNet), and our own measurements (JPEG CIFAR-10, digits).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from dfkd.atomic import atomic_write_json
from dfkd.errors import ConfigError, DataError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the suite may know about a dataset; constants live here and nowhere else."""

    name: str
    layout: str  # "cifar10" | "cifar100" | "tiny_imagenet" | "image_folder" | "digits"
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]  # per channel, images in [0, 1]
    std: tuple[float, float, float]
    directory: str  # folder under the data root; "" where torchvision or scikit-learn decides
    title: str  # how reports and error messages name the dataset
    # "crop_flip": RandomCrop(size, crop_padding) + RandomHorizontalFlip (the CIFAR recipe);
    # "crop": the random crop alone (shifts), for digits, which a mirror image can change.
    train_augmentation: Literal["crop_flip", "crop"]
    crop_padding: int  # pixels of zero padding around the random crop


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # zju-vipa/CMI registry.py NORMALIZE_DICT. The std values are not the pixel std of
        # CIFAR-10 (about 0.247, 0.243, 0.261), but every published teacher was trained with them.
        DatasetInfo(
            name="cifar10",
            layout="cifar10",
            num_classes=10,
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
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset `name`; a ConfigError lists the choices for an unknown one."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


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


def load_split(name: str, root: str | Path, split: str, download: bool) -> ImageTensors:
    """Load the "train" or "test" split of a registered dataset from `root` into CPU memory.

    Only the CIFAR sets can be downloaded (by torchvision, which also checks their md5s).
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    images, labels = _LOADERS[info.layout](info, Path(root), split, download)
    return ImageTensors(images, labels)


def prepare(name: str, root: str | Path, download: bool, record: str | Path) -> int:
    """Downloads (if allowed) and verifies both splits, then records them in a small JSON file.

    The pipeline runs this once per dataset before any training job, so parallel jobs never
    download into the same folder at the same time.
    """
    sizes = {split: len(load_split(name, root, split, download)) for split in SPLITS}
    atomic_write_json(record, {"dataset": name, "root": str(root), "sizes": sizes})
    return 0


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


def augment(images: Tensor, info: DatasetInfo) -> Tensor:
    """The dataset's train augmentation on pixels (uint8 or floats in [0, 1]), dtype kept."""
    return random_crop_flip(images, info.crop_padding, flip=info.train_augmentation == "crop_flip")


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


# Loaders: (info, root, split, download) -> (images (N, 3, H, W) uint8, labels (N,) int64).
_Loader = Callable[[DatasetInfo, Path, str, bool], tuple[Tensor, Tensor]]


def _load_cifar(info: DatasetInfo, root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    # Imported here: torchvision takes seconds to import, and most jobs never load CIFAR.
    from torchvision.datasets import CIFAR10, CIFAR100

    dataset_class = CIFAR10 if info.layout == "cifar10" else CIFAR100
    folder = dataset_class.base_folder
    try:
        dataset = dataset_class(str(root), train=split == "train", download=download)
    except OSError as error:  # includes urllib's URLError: no network, refused, not found
        if download:
            raise DataError(
                f"could not download {info.title} from {dataset_class.url} into {root}/ "
                f"({error}); check the network or place {folder} there yourself"
            ) from None
        raise DataError(f"could not read {info.title} under {root}/ ({error})") from None
    except RuntimeError:
        # torchvision's only signal, for files that are missing and for a failed md5 check alike.
        if download:
            raise DataError(
                f"{info.title} under {root}/ failed torchvision's md5 check after downloading; "
                f"delete {root / dataset_class.filename} and {root / folder} and try again"
            ) from None
        raise DataError(
            f"{info.title} not found or corrupt under {root}/ (torchvision checks the md5 of each "
            f"batch file); set data.download: true in params.yaml or place {folder} there"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def _load_tiny_imagenet(
    info: DatasetInfo, root: Path, split: str, download: bool
) -> tuple[Tensor, Tensor]:
    base = root / info.directory
    annotations = base / "val" / "val_annotations.txt"
    if not (base / "train").is_dir() or not annotations.is_file():
        raise DataError(
            f"{info.title} not found under {base}/ (expected train/<wnid>/images/*.JPEG and "
            f"val/val_annotations.txt); it cannot be downloaded automatically: unzip "
            f"tiny-imagenet-200.zip from http://cs231n.stanford.edu/ into {root}/"
        )
    # Labels follow the sorted train wnids in both splits, as ImageFolder would number them.
    classes = sorted(entry.name for entry in (base / "train").iterdir() if entry.is_dir())
    class_index = {wnid: index for index, wnid in enumerate(classes)}
    if split == "train":
        samples = [
            (path, class_index[wnid])
            for wnid in classes
            for path in sorted((base / "train" / wnid / "images").glob("*.JPEG"))
        ]
    else:
        samples = []
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in class_index:
                raise DataError(
                    f"{annotations}:{number}: expected '<file>\\t<wnid>\\t...' with a wnid that "
                    f"has a train folder; the file is corrupt"
                )
            samples.append((base / "val" / "images" / fields[0], class_index[fields[1]]))
    _check_classes(info, base / "train", len(classes))
    return _decode_samples(samples, info.image_size)


def _load_image_folder(
    info: DatasetInfo, root: Path, split: str, download: bool
) -> tuple[Tensor, Tensor]:
    folder = root / info.directory / split
    try:
        from torchvision.datasets import ImageFolder

        dataset = ImageFolder(str(folder))
    except FileNotFoundError as error:
        raise DataError(
            f"{info.title} not found or incomplete under {folder}/ ({error}); expected one folder "
            f"of images per class, which cannot be downloaded automatically: place them there"
        ) from None
    _check_classes(info, folder, len(dataset.classes))
    return _decode_samples(dataset.samples, info.image_size)


def _check_classes(info: DatasetInfo, folder: Path, found: int) -> None:
    if found != info.num_classes:
        raise DataError(
            f"{info.title} under {folder}/ has {found} classes, expected {info.num_classes}; "
            f"the copy is incomplete or of another dataset"
        )


def _decode_samples(samples: Sequence[tuple[str | Path, int]], size: int) -> tuple[Tensor, Tensor]:
    pixels = np.empty((len(samples), size, size, 3), dtype=np.uint8)  # (N, H, W, 3)
    for position, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except OSError as error:
            raise DataError(f"cannot decode image {path} ({error}); replace or remove it") from None
        if rgb.size != (size, size):
            raise DataError(
                f"image {path} is {rgb.size[0]}x{rgb.size[1]} pixels, expected {size}x{size}; "
                f"resize the dataset before loading it"
            )
        pixels[position] = np.asarray(rgb)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return images, labels


def _load_digits(
    info: DatasetInfo, root: Path, split: str, download: bool
) -> tuple[Tensor, Tensor]:
    values, targets = _digits_arrays()  # (1797, 64) in 0..16, (1797,)
    # float64 keeps every bilinear product exact (weights are multiples of 1/4 at x2), so
    # rounding to uint8 gives the same images on every machine.
    pixels = torch.from_numpy(values).double().mul(255 / 16).view(-1, 1, 8, 8)  # (N, 1, 8, 8)
    size = info.image_size
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    grey = pixels.round().clamp(0, 255).to(torch.uint8)  # (N, 1, size, size)
    labels = torch.from_numpy(targets).long()
    keep = torch.from_numpy(_digits_test_mask(targets) == (split == "test"))
    images = grey[keep].expand(-1, 3, -1, -1).contiguous()  # (N_split, 3, size, size)
    return images, labels[keep]


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The pixels (N, 64) and labels (N,) that `sklearn.datasets.load_digits()` returns.

    Read straight from the CSV file scikit-learn ships, without importing scikit-learn, whose
    import alone takes seconds in every job; tests/test_data.py checks both give the same data.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = spec.submodule_search_locations if spec else None
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is None or not path.is_file():
        raise DataError("the digits set ships with scikit-learn; install it (pip install -e .)")
    table = np.loadtxt(path, delimiter=",")  # (N, 65): 64 pixels, then the label
    return table[:, :-1], table[:, -1].astype(np.int64)


def _digits_test_mask(targets: np.ndarray) -> np.ndarray:
    """A quarter of each class (rounded half up) goes to test, chosen by a fixed seed."""
    # RandomState's stream is frozen by numpy (NEP 19), unlike default_rng's, and its own seed
    # keeps the split independent of any global RNG state.
    rng = np.random.RandomState(0)
    test = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        test[rng.permutation(members)[: (len(members) + 2) // 4]] = True
    return test


_LOADERS: dict[str, _Loader] = {
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "tiny_imagenet": _load_tiny_imagenet,
    "image_folder": _load_image_folder,
    "digits": _load_digits,
}
