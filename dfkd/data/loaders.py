"""Reading each dataset's files into memory: (images (N, 3, H, W) uint8, labels (N,) int64)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dfkd.atomic import atomic_write_json
from dfkd.data import files, large
from dfkd.data.datasets import DatasetInfo, dataset_info
from dfkd.data.pixels import ImageTensors
from dfkd.errors import ConfigError, DataError

SPLITS = ("train", "test")


def load_split(name: str, root: str | Path, split: str, download: bool) -> ImageTensors:
    """Load the "train" or "test" split of a registered dataset from `root` into CPU memory.

    CIFAR-10/100, Places365 and Food-101 can be downloaded (by torchvision, which also checks
    their md5s); the other sets are the user's to place.
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
    info = dataset_info(name)
    if info.layout in large.LAYOUTS:  # indexed, not decoded: a train split may not fit in memory
        sizes = {s: len(large.index_split(info, Path(root), s, download)) for s in SPLITS}
    else:
        sizes = {split: len(load_split(name, root, split, download)) for split in SPLITS}
    atomic_write_json(record, {"dataset": name, "root": str(root), "sizes": sizes})
    return 0


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
    files.check_classes(info, base / "train", len(classes))
    return files.decode(samples, info.image_size, resize=False)


def _load_image_folder(
    info: DatasetInfo, root: Path, split: str, download: bool
) -> tuple[Tensor, Tensor]:
    folder = root / info.directory / split
    remedy = "expected one folder of images per class, which cannot be downloaded: place them there"
    samples, classes = files.image_folder(info, folder, remedy)
    files.check_classes(info, folder, classes)
    return files.decode(samples, info.image_size, resize=False)


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
    **dict.fromkeys(large.LAYOUTS, large.load_large),
}
