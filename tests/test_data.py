"""Tests for dfkd.data: every layout loaded from files written here, and the device augmentation.

Everything runs offline. CIFAR files are written in the pickle format the CIFAR site
distributes and go through torchvision's own md5 checks and download code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from sklearn.datasets import load_digits
from torchvision.datasets import CIFAR10, CIFAR100

from dfkd.data import (
    DATASETS,
    ImageTensors,
    dataset_info,
    load_split,
    normalize,
    prepare,
    random_crop_flip,
    training_batch,
)
from dfkd.data.loaders import _digits_arrays
from dfkd.errors import ConfigError, DataError

# The JPEG copy of CIFAR-10 (cifar10-jpeg.tar.gz, ImageFolder layout), when the machine has it.
JPEG_COPY = Path(os.environ.get("DFKD_CIFAR10_JPEG_ARCHIVE", "cifar10-jpeg.tar.gz"))


# CIFAR in its distributed format ---------------------------------------------------------------


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str`, as in the official CIFAR pickles.

    Such strings load as `str` with encoding="latin1" (what torchvision passes) and as bytes with
    encoding="bytes" (what the CIFAR web page suggests), exactly like the official files.
    """

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_python2_str(self, value: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(value)) + value)
        self.memoize(value)

    dispatch[bytes] = _save_python2_str


def _write_pickle(path: Path, payload: dict) -> str:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(payload)
    path.write_bytes(buffer.getvalue())
    return hashlib.md5(buffer.getvalue()).hexdigest()


# name -> (torchvision class, label key, class-name key, classes)
CIFAR_FORMATS = {
    "cifar10": (CIFAR10, b"labels", b"label_names", 10),
    "cifar100": (CIFAR100, b"fine_labels", b"fine_label_names", 100),
}


def _write_cifar(root: Path, name: str, per_file: int = 3) -> tuple[dict, dict[str, str]]:
    """Writes a tiny CIFAR copy under root; returns the expected tensors and each file's md5."""
    dataset_class, label_key, names_key, num_classes = CIFAR_FORMATS[name]
    folder = root / dataset_class.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    checksums, expected = {}, {}
    for split, files in (("train", dataset_class.train_list), ("test", dataset_class.test_list)):
        images, labels = [], []
        for file_name, _ in files:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)  # planes R, G, B
            targets = rng.integers(0, num_classes, per_file).tolist()
            payload = {
                b"batch_label": file_name.encode(),
                label_key: targets,
                b"data": data,
                b"filenames": [f"{file_name}_{i}.png".encode() for i in range(per_file)],
            }
            if name == "cifar100":
                payload[b"coarse_labels"] = [label // 5 for label in targets]
            checksums[file_name] = _write_pickle(folder / file_name, payload)
            images.append(torch.from_numpy(data).view(per_file, 3, 32, 32))
            labels += targets
        expected[split] = (torch.cat(images), torch.tensor(labels))
    meta = {names_key: [f"class {i}".encode() for i in range(num_classes)]}
    checksums[dataset_class.meta["filename"]] = _write_pickle(
        folder / dataset_class.meta["filename"], meta
    )
    return expected, checksums


def _accept_checksums(monkeypatch, name: str, checksums: dict[str, str]) -> None:
    """Points torchvision's md5 lists at the generated files instead of the official ones."""
    dataset_class = CIFAR_FORMATS[name][0]
    for attribute in ("train_list", "test_list"):
        files = [
            [file_name, checksums[file_name]] for file_name, _ in getattr(dataset_class, attribute)
        ]
        monkeypatch.setattr(dataset_class, attribute, files)
    meta = {**dataset_class.meta, "md5": checksums[dataset_class.meta["filename"]]}
    monkeypatch.setattr(dataset_class, "meta", meta)


def _assert_split(data: ImageTensors, expected: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert torch.equal(data.images, expected[0])
    assert torch.equal(data.labels, expected[1])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_the_pickled_batches_exactly(tmp_path, monkeypatch, name):
    expected, checksums = _write_cifar(tmp_path, name)
    _accept_checksums(monkeypatch, name, checksums)
    for split in ("train", "test"):
        _assert_split(load_split(name, tmp_path, split, download=False), expected[split])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_download_runs_through_torchvision(tmp_path, monkeypatch, http_folder, name):
    served, base_url = http_folder
    dataset_class = CIFAR_FORMATS[name][0]
    expected, checksums = _write_cifar(tmp_path / "staging", name)
    archive = served / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        folder = dataset_class.base_folder
        tar.add(tmp_path / "staging" / folder, arcname=folder)
    _accept_checksums(monkeypatch, name, checksums)
    monkeypatch.setattr(dataset_class, "url", f"{base_url}/archive.tar.gz")
    monkeypatch.setattr(dataset_class, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())

    root = tmp_path / "data"
    _assert_split(load_split(name, root, "train", download=True), expected["train"])
    assert (root / dataset_class.filename).is_file()
    archive.unlink()  # the second split must come from disk, not from the server
    _assert_split(load_split(name, root, "test", download=True), expected["test"])


def test_cifar_missing_is_a_one_line_data_error_and_writes_nothing(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError) as raised:
        load_split("cifar10", root, "train", download=False)
    message = str(raised.value)
    assert "\n" not in message
    assert "CIFAR-10" in message and str(root) in message and "download: true" in message
    assert list(tmp_path.iterdir()) == []


def test_cifar_with_wrong_checksums_is_a_data_error(tmp_path):
    _write_cifar(tmp_path, "cifar100")  # official md5s left in place, so every file mismatches
    with pytest.raises(DataError, match="CIFAR-100 not found or corrupt"):
        load_split("cifar100", tmp_path, "test", download=False)


def test_cifar_unreachable_download_is_a_data_error(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{port}/cifar.tar.gz")
    with pytest.raises(DataError, match="could not download") as raised:
        load_split("cifar10", tmp_path, "train", download=True)
    assert "\n" not in str(raised.value)


# Tiny-ImageNet and image folders -------------------------------------------------------------


def _save_image(path: Path, size: int, rng: np.random.Generator, mode: str = "RGB") -> np.ndarray:
    """Saves a random image and returns its pixels as the loader should see them (H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _write_tiny_imagenet(root: Path, train_size: int = 64) -> dict:
    rng = np.random.default_rng(0)
    base = root / "tiny-imagenet-200"
    wnids = [f"n{number:08d}" for number in rng.permutation(200) + 1000]
    expected = {"train": [], "test": []}
    for wnid in wnids:
        label = sorted(wnids).index(wnid)
        (base / "train" / wnid).mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        for index in range(1 + label % 2):
            path = base / "train" / wnid / "images" / f"{wnid}_{index}.JPEG"
            expected["train"].append((_save_image(path, train_size, rng), label))
    annotations = []
    for index, wnid in enumerate(wnids[:5]):
        name = f"val_{index}.JPEG"
        pixels = _save_image(base / "val" / "images" / name, 64, rng)
        expected["test"].append((pixels, sorted(wnids).index(wnid)))
        annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(annotations))
    # Train samples are listed class by class in sorted wnid order; the test order is the file's.
    expected["train"].sort(key=lambda sample: sample[1])
    return expected


def _as_split(samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([pixels for pixels, _ in samples])).permute(0, 3, 1, 2)
    return images, torch.tensor([label for _, label in samples])


def test_tiny_imagenet_loads_with_sorted_wnid_labels(tmp_path):
    expected = _write_tiny_imagenet(tmp_path)
    for split in ("train", "test"):
        _assert_split(
            load_split("tiny_imagenet", tmp_path, split, False), _as_split(expected[split])
        )


def test_tiny_imagenet_wrong_size_or_missing_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot be downloaded"):
        load_split("tiny_imagenet", tmp_path, "train", download=True)
    _write_tiny_imagenet(tmp_path, train_size=32)
    with pytest.raises(DataError, match=r"_0\.JPEG is 32x32 pixels, expected 64x64"):
        load_split("tiny_imagenet", tmp_path, "train", download=False)


def _write_image_folder(root: Path) -> dict:
    rng = np.random.default_rng(1)
    classes = [f"class_{letter}" for letter in "jihgfedcba"]  # written out of order
    expected = {"train": [], "test": []}
    for split, per_class in (("train", 2), ("test", 1)):
        for name in sorted(classes):
            for index in range(per_class):
                mode = "L" if index == 1 else "RGB"  # grey files must come back as RGB
                path = root / "cifar10-jpeg" / split / name / f"{index:04d}.png"
                expected[split].append(
                    (_save_image(path, 32, rng, mode), sorted(classes).index(name))
                )
    return expected


def test_image_folder_loads_with_alphabetical_labels(tmp_path):
    expected = _write_image_folder(tmp_path)
    for split in ("train", "test"):
        _assert_split(
            load_split("cifar10_jpeg", tmp_path, split, False), _as_split(expected[split])
        )
    grey = load_split("cifar10_jpeg", tmp_path, "train", False).images[1]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_image_folder_problems_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found or incomplete under"):
        load_split("cifar10_jpeg", tmp_path, "train", download=False)
    _write_image_folder(tmp_path)
    odd = tmp_path / "cifar10-jpeg" / "test" / "class_c" / "0007.png"
    _save_image(odd, 30, np.random.default_rng(2))
    with pytest.raises(DataError, match=r"0007\.png is 30x30 pixels, expected 32x32") as raised:
        load_split("cifar10_jpeg", tmp_path, "test", download=False)
    assert str(odd) in str(raised.value)
    (tmp_path / "cifar10-jpeg" / "train" / "class_k").mkdir()
    _save_image(
        tmp_path / "cifar10-jpeg" / "train" / "class_k" / "0.png", 32, np.random.default_rng(4)
    )
    with pytest.raises(DataError, match="has 11 classes, expected 10"):
        load_split("cifar10_jpeg", tmp_path, "train", download=False)


@pytest.mark.skipif(not JPEG_COPY.is_file(), reason="set DFKD_CIFAR10_JPEG_ARCHIVE to run it")
def test_jpeg_copy_loads(tmp_path):
    with tarfile.open(JPEG_COPY, "r:gz") as tar:
        for member in tar:
            # cifar10-jpeg/<split>/<class>/NNNN.jpg: keep three images per class and split.
            if member.isfile() and int(Path(member.name).stem) < 3:
                target = tmp_path / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    for split in ("train", "test"):
        data = load_split("cifar10_jpeg", tmp_path, split, download=False)
        assert data.images.shape == (30, 3, 32, 32)
        assert torch.equal(data.labels, torch.arange(10).repeat_interleave(3))


# Digits --------------------------------------------------------------------------------------


def test_digits_split_is_stratified_and_fixed():
    targets = torch.from_numpy(load_digits().target)
    torch.manual_seed(123)
    np.random.seed(123)
    train = load_split("digits", "unused", "train", download=False)
    test = load_split("digits", "unused", "test", download=True)
    assert len(train) + len(test) == 1797
    assert len(test) == dataset_info("digits").test_size  # the reports' binomial noise floor
    assert test.images.shape[1:] == (3, 16, 16) and test.images.dtype == torch.uint8
    per_class = torch.bincount(targets)
    assert torch.equal(torch.bincount(test.labels), (per_class + 2) // 4)
    assert torch.equal(torch.bincount(train.labels) + torch.bincount(test.labels), per_class)
    torch.manual_seed(7)
    np.random.seed(7)
    again = load_split("digits", "unused", "test", download=False)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_digits_are_the_data_scikit_learn_returns():
    digits = load_digits()
    values, targets = _digits_arrays()
    assert np.array_equal(values, digits.data) and np.array_equal(targets, digits.target)


def test_digits_normalisation_constants_match_the_train_split():
    train = load_split("digits", "unused", "train", download=False)
    pixels = train.images.double() / 255
    info = dataset_info("digits")
    assert torch.allclose(pixels.mean((0, 2, 3)), torch.tensor(info.mean).double(), atol=1e-3)
    assert torch.allclose(pixels.std((0, 2, 3)), torch.tensor(info.std).double(), atol=1e-3)
    assert pixels.max() == 1 and pixels.min() == 0


# Augmentation, normalisation and batches -----------------------------------------------------


def test_random_crop_flip_equals_torchvision_pad_crop_flip():
    torch.manual_seed(0)
    images = torch.randint(1, 256, (48, 3, 32, 32), dtype=torch.uint8)  # no zeros in the content
    augmented = random_crop_flip(images)
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    for image, result in zip(images, augmented, strict=True):
        padded = TF.pad(image, 4, fill=0)
        matches = [
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if torch.equal(result, _crop(padded, top, left, flip))
        ]
        assert len(matches) == 1


def _crop(padded: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    crop = TF.crop(padded, top, left, 32, 32)
    return TF.hflip(crop) if flip else crop


def test_random_crop_flip_offsets_are_uniform_flips_fair_and_padding_zero():
    n = 18_000
    grid = torch.arange(1, 33, dtype=torch.uint8)
    rows, columns = grid.view(32, 1).expand(32, 32), grid.view(1, 32).expand(32, 32)
    images = torch.stack([rows, columns, torch.full((32, 32), 255, dtype=torch.uint8)])
    torch.manual_seed(1)
    augmented = random_crop_flip(images.expand(n, 3, 32, 32))  # (N, 3, 32, 32)
    # The centre pixels always lie inside the image; they encode where the crop started.
    top = augmented[:, 0, 16, 16].long() - 1 - 16 + 4
    flipped = augmented[:, 1, 16, 17] < augmented[:, 1, 16, 16]
    left = augmented[:, 1, 16, 16].long() - 1 + 4 - torch.where(flipped, 15, 16)
    for offsets in (top, left):
        counts = torch.bincount(offsets, minlength=9)
        assert len(counts) == 9 and ((counts - n / 9).abs() < 250).all()  # about 6 sigma
    assert abs(flipped.sum().item() - n / 2) < 400
    # Padding is exactly zero and the rest untouched: 255 inside, 0 outside, in the right amount.
    ones = augmented[:, 2]
    assert ((ones == 0) | (ones == 255)).all()
    visible = (32 - (top - 4).abs()) * (32 - (left - 4).abs())
    assert torch.equal((ones == 255).sum((1, 2)), visible)


def test_random_crop_flip_uses_the_global_rng_and_keeps_float_dtype():
    images = torch.rand(8, 3, 32, 32)
    torch.manual_seed(5)
    first = random_crop_flip(images)
    torch.manual_seed(5)
    assert torch.equal(first, random_crop_flip(images))
    assert first.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_normalize_is_bitwise_torchvision(name):
    info = dataset_info(name)
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    reference = T.Compose([T.ToTensor(), T.Normalize(info.mean, info.std)])(Image.fromarray(pixels))
    images = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, 32, 32)
    assert torch.equal(normalize(images, info)[0], reference)
    assert torch.equal(normalize(images.float() / 255, info), normalize(images, info))


def _numbered_data(n: int = 10) -> ImageTensors:
    values = torch.arange(n, dtype=torch.uint8) * 20
    return ImageTensors(values.view(n, 1, 1, 1).expand(n, 3, 32, 32).clone(), torch.arange(n))


def test_training_batch_augments_cifar_but_not_digits():
    data, indices = _numbered_data(), torch.tensor([7, 2, 5])
    torch.manual_seed(0)
    info = dataset_info("cifar10")
    images, labels = training_batch(data, indices, info)
    assert torch.equal(labels, indices)
    assert images.dtype == torch.float32 and images.shape == (3, 3, 32, 32)
    expected = normalize(data.images[indices], info)
    centre = (slice(None), slice(None), slice(8, 24), slice(8, 24))
    assert torch.equal(images[centre], expected[centre])  # constant images: only borders move
    assert not torch.equal(images, expected)  # some zero padding came in at the borders


def test_training_batch_shifts_digits_by_up_to_two_pixels_and_never_mirrors_them():
    info = dataset_info("digits")
    size, n = info.image_size, 2000
    grid = torch.arange(1, size + 1, dtype=torch.uint8)
    rows, columns = grid.view(size, 1).expand(size, size), grid.view(1, size).expand(size, size)
    encoded = torch.stack([rows, columns, torch.full((size, size), 255, dtype=torch.uint8)])
    data = ImageTensors(encoded.expand(n, 3, size, size).clone(), torch.zeros(n, dtype=torch.int64))
    torch.manual_seed(2)
    images, _ = training_batch(data, torch.arange(n), info)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    pixels = ((images * std + mean) * 255).round().long()  # back to the encoded values
    centre = size // 2  # inside the image for every shift of at most 2 px
    top = pixels[:, 0, centre, centre] - 1 - centre + 2
    left = pixels[:, 1, centre, centre] - 1 - centre + 2
    assert set(top.tolist()) == set(left.tolist()) == {0, 1, 2, 3, 4}
    mirrored = pixels[:, 1, centre, centre + 1] < pixels[:, 1, centre, centre]
    assert not mirrored.any()


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="choose one of: cifar10, cifar100"):
        dataset_info("imagenet1k")
    with pytest.raises(ConfigError, match="unknown split 'val'"):
        load_split("digits", "unused", "val", download=False)


def test_prepare_records_both_splits(tmp_path):
    record = tmp_path / "results" / "dataset.json"
    assert prepare("digits", tmp_path, download=False, record=record) == 0
    assert json.loads(record.read_text()) == {
        "dataset": "digits",
        "root": str(tmp_path),
        "sizes": {"train": 1346, "test": 451},
    }
