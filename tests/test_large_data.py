"""MAD's 256x256 datasets (dfkd/data/large.py) on files written in each dataset's real layout:
torchvision's Food-101 and Places365 formats (downloaded over a local HTTP server where the
suite downloads them) and ImageNet's one-folder-per-wnid layout."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.datasets import Places365

from dfkd.data import dataset_info, load_split, prepare
from dfkd.data import large as large_module
from dfkd.data.files import resize_center_crop
from dfkd.errors import DataError

# Odd shapes on purpose: landscape, portrait, square, smaller than 256, an odd margin to crop.
SHAPES = [(320, 240), (240, 333), (256, 256), (100, 180), (513, 300)]


def _image(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def _reference(path: Path) -> torch.Tensor:
    """torchvision's Resize(256) + CenterCrop(256) + PILToTensor: (3, 256, 256) uint8."""
    transform = T.Compose([T.Resize(256), T.CenterCrop(256), T.PILToTensor()])
    with Image.open(path) as image:
        return transform(image.convert("RGB"))


@pytest.mark.parametrize("size", SHAPES)
def test_resize_and_centre_crop_equal_torchvision_s(tmp_path, size):
    path = tmp_path / "image.jpg"
    _image(path, size, seed=0)
    with Image.open(path) as image:
        ours = torch.from_numpy(np.array(resize_center_crop(image.convert("RGB"), 256)))
    assert torch.equal(ours.permute(2, 0, 1), _reference(path))


def _write_food101(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """food-101/images/<class>/<id>.jpg and meta/{train,test}.json for 101 classes."""
    base = root / "food-101"
    classes = [f"dish_{index:03d}" for index in range(101)]
    metadata: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    expected: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for label, name in enumerate(classes):
        for split, count in (("train", 1), ("test", 1 + label % 2)):
            ids = [f"{name}/{split}{number}" for number in range(count)]
            metadata[split][name] = ids
            for number, relative in enumerate(ids):
                path = base / "images" / f"{relative}.jpg"
                _image(path, SHAPES[(label + number) % len(SHAPES)], seed=label * 10 + number)
                expected[split].append((path, label))
    (base / "meta").mkdir(parents=True)
    for split in ("train", "test"):
        # The json lists classes unsorted, as a real copy may: labels follow the sorted names.
        shuffled = dict(reversed(list(metadata[split].items())))
        (base / "meta" / f"{split}.json").write_text(json.dumps(shuffled))
    return expected


def _assert_loaded(split, expected: list[tuple[Path, int]]) -> None:
    """Each image as torchvision's pipeline makes it, in the order of the split's listing."""
    assert split.images.shape == (len(expected), 3, 256, 256)
    assert split.labels.tolist() == [label for _, label in expected]
    for image, (path, _) in zip(split.images, expected, strict=True):
        assert torch.equal(image, _reference(path)), path


def test_food101_downloads_through_torchvision_and_loads_sorted_labels(
    tmp_path, monkeypatch, http_folder
):
    from torchvision.datasets import Food101

    served, base_url = http_folder
    expected = _write_food101(tmp_path / "staging")
    archive = served / "food-101.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "staging" / "food-101", arcname="food-101")
    monkeypatch.setattr(Food101, "_URL", f"{base_url}/food-101.tar.gz")
    monkeypatch.setattr(Food101, "_MD5", hashlib.md5(archive.read_bytes()).hexdigest())

    root = tmp_path / "data"
    _assert_loaded(load_split("food101", root, "test", download=True), expected["test"])
    archive.unlink()  # the second split comes from disk
    _assert_loaded(load_split("food101", root, "train", download=True), expected["train"])


def test_food101_missing_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"food-101 .*data\.download: true"):
        load_split("food101", tmp_path, "test", download=False)


def _write_places365(folder: Path, monkeypatch) -> list[tuple[Path, int]]:
    """torchvision's Places365 small layout: categories, the val file list, val_256/."""
    folder.mkdir(parents=True)
    categories = folder / "categories_places365.txt"
    categories.write_text("".join(f"/x/place_{i:03d} {i}\n" for i in range(365)))
    lines, expected = [], []
    for number, label in enumerate((0, 364, 17, 17)):
        name = f"Places365_val_{number + 1:08d}.jpg"
        _image(folder / "val_256" / name, (256, 256), seed=number)
        lines.append(f"{name} {label}\n")
        expected.append((folder / "val_256" / name, label))
    listing = folder / "places365_val.txt"
    listing.write_text("".join(lines))
    md5 = lambda path: hashlib.md5(path.read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(Places365, "_CATEGORIES_META", (categories.name, md5(categories)))
    file_lists = {**Places365._FILE_LIST_META, "val": (listing.name, md5(listing))}
    monkeypatch.setattr(Places365, "_FILE_LIST_META", file_lists)
    return expected


def test_places365_val_is_the_test_split(tmp_path, monkeypatch):
    expected = _write_places365(tmp_path / "places365", monkeypatch)
    # download: true with the images in place fetches nothing (torchvision would refuse).
    _assert_loaded(load_split("places365", tmp_path, "test", download=True), expected)


def test_places365_without_its_file_lists_is_a_data_error(tmp_path):
    (tmp_path / "places365").mkdir()
    with pytest.raises(DataError, match="Places365-Standard not found or corrupt"):
        load_split("places365", tmp_path, "test", download=False)


def _write_imagenet(root: Path) -> list[tuple[Path, int]]:
    expected = []
    for label in range(1000):
        wnid = f"n{label:08d}"
        for split in ("train", "val"):
            path = root / "imagenet" / split / wnid / f"{wnid}_{split}.JPEG"
            _image(path, SHAPES[label % len(SHAPES)], seed=label)
            if split == "val":
                expected.append((path, label))
    return expected


def test_imagenet_folders_load_with_sorted_wnid_labels_and_prepare_only_indexes(
    tmp_path, monkeypatch
):
    expected = _write_imagenet(tmp_path)
    test = load_split("imagenet", tmp_path, "test", download=False)
    assert test.labels.tolist() == list(range(1000))
    for label in (0, 1, 2, 3, 4, 999):
        assert torch.equal(test.images[label], _reference(expected[label][0]))

    def no_decoding(*args, **keywords):
        raise AssertionError("prepare decoded a split")

    monkeypatch.setattr(large_module, "decode", no_decoding)
    record = tmp_path / "imagenet.json"
    assert prepare("imagenet", tmp_path, False, record) == 0
    assert json.loads(record.read_text())["sizes"] == {"train": 1000, "test": 1000}


def test_a_split_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    _write_food101(tmp_path)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1000}  # a 3.9 MiB machine
    monkeypatch.setattr(large_module.os, "sysconf", lambda name: pages[name])
    monkeypatch.setattr(large_module, "decode", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(DataError, match=r"train split \(101 images\) needs 0 GiB.*teacher_source"):
        load_split("food101", tmp_path, "train", download=False)


def test_a_copy_with_too_few_classes_is_a_data_error(tmp_path):
    (tmp_path / "imagenet" / "val" / "n0").mkdir(parents=True)
    _image(tmp_path / "imagenet" / "val" / "n0" / "a.JPEG", (300, 300), seed=0)
    with pytest.raises(DataError, match="has 1 classes, expected 1000"):
        load_split("imagenet", tmp_path, "test", download=False)


def test_the_256_pixel_sets_normalise_as_torchvision_s_pretrained_alexnet_expects():
    from torchvision.models import AlexNet_Weights

    preset = AlexNet_Weights.IMAGENET1K_V1.transforms()
    for name in ("imagenet", "places365", "food101"):
        info = dataset_info(name)
        assert (list(info.mean), list(info.std)) == (preset.mean, preset.std)
        assert info.image_size == 256  # MAD supplement Table 3, not the preset's 224 crop


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (its data is one empty compressed row)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_a_decompression_bomb_in_an_image_folder_is_a_data_error(tmp_path):
    from dfkd.data.files import decode

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(40_000, 40_000))  # 1.6 gigapixels in 100 bytes
    with pytest.raises(DataError, match=r"bomb\.png claims more pixels than PIL decodes safely"):
        decode([(bomb, 0)], 256, resize=True)
