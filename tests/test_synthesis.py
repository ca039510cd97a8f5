"""The synthetic pool, the memory bank and the views of the inversion methods."""

from itertools import chain

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from dfkd.data import dataset_info
from dfkd.synthesis.memory_bank import FeatureBank
from dfkd.synthesis.pool import SyntheticPool
from dfkd.synthesis.views import LocalView, jitter
from tests.support import build_method

CPU = torch.device("cpu")


def _numbered(n: int, start: int = 0, size: int = 4) -> torch.Tensor:
    """Pixels in [0, 1] whose first value identifies the image: (k + start) / 255."""
    values = (torch.arange(n, dtype=torch.float32) + start) / 255
    return values.view(n, 1, 1, 1).expand(n, 3, size, size).clone()


def _ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


# Pool ----------------------------------------------------------------------------------------


def test_pool_passes_are_permutations_with_a_short_last_batch_like_a_shuffled_dataloader():
    pool = SyntheticPool(CPU)
    pool.add(_numbered(5))
    torch.manual_seed(0)
    first_pass = [_ids(pool.next_batch(2)) for _ in range(3)]
    assert [len(b) for b in first_pass] == [2, 2, 1]  # drop_last=False
    assert sorted(chain(*first_pass)) == [0, 1, 2, 3, 4]
    second_pass = list(chain(*(_ids(pool.next_batch(2)) for _ in range(3))))
    assert sorted(second_pass) == [0, 1, 2, 3, 4]  # then a new permutation


def test_adding_a_batch_starts_a_new_pass_over_the_whole_pool():
    pool = SyntheticPool(CPU)
    pool.add(_numbered(4))
    pool.next_batch(3)  # a pass half done
    pool.add(_numbered(4, start=10))
    assert len(pool) == 8 and pool.images.dtype == torch.uint8
    drawn = list(chain(*(_ids(pool.next_batch(3)) for _ in range(3))))
    assert sorted(drawn) == [0, 1, 2, 3, 10, 11, 12, 13]


def test_pool_stores_the_truncated_uint8_pixels_in_the_order_added():
    pool = SyntheticPool(CPU)
    pixels = torch.tensor([0.0, 0.49, 0.999, 1.2]).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    pool.add(pixels)
    pool.add(pixels[:1] + 0.5)
    expected = (np.clip(pixels.numpy(), 0, 1) * 255).astype("uint8")
    assert np.array_equal(pool.images[:4].numpy(), expected)
    assert pool.images[4, 0, 0, 0].item() == 127  # (0.0 + 0.5) * 255 = 127.5 -> 127


def test_pool_state_round_trip_continues_the_pass_exactly():
    pool = SyntheticPool(CPU)
    pool.add(_numbered(7))
    torch.manual_seed(3)
    pool.next_batch(3)
    restored = SyntheticPool(CPU)
    restored.load_state_dict(pool.state_dict())
    torch.manual_seed(9)
    expected = [_ids(pool.next_batch(3)) for _ in range(4)]
    torch.manual_seed(9)
    assert [_ids(restored.next_batch(3)) for _ in range(4)] == expected


@pytest.mark.parametrize(
    ("dataset", "padding", "flips"), [("digits", 2, False), ("cifar10", 4, True)]
)
def test_pool_samples_are_torchvision_crops_and_flips_of_stored_images(
    suite, dataset, padding, flips
):
    method = build_method(suite, "adi", dataset=dataset)
    info, size = dataset_info(dataset), dataset_info(dataset).image_size
    torch.manual_seed(0)
    method.pool.add(torch.rand(12, 3, size, size) * 0.98 + 0.01)  # no pixel rounds to 0
    images = method.sample(12)  # one pass: every stored image once
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    pixels = ((images * std + mean) * 255).round().to(torch.uint8)
    found = []
    for result in pixels:
        matches = [
            (index, flip)
            for index, image in enumerate(method.pool.images)
            for top in range(2 * padding + 1)
            for left in range(2 * padding + 1)
            for flip in ((False, True) if flips else (False,))
            if torch.equal(result, _torchvision_view(image, padding, top, left, flip, size))
        ]
        assert len(matches) == 1, "a sample is not one torchvision RandomCrop(+flip) of the pool"
        found.append(matches[0])
    assert sorted(index for index, _ in found) == list(range(12))
    assert {flip for _, flip in found} == ({False, True} if flips else {False})


def _torchvision_view(image, padding, top, left, flip, size):
    crop = TF.crop(TF.pad(image, padding, fill=0), top, left, size, size)
    return TF.hflip(crop) if flip else crop


# Memory bank ---------------------------------------------------------------------------------


def test_bank_is_first_in_first_out():
    bank = FeatureBank(capacity=6, dim=2, device=CPU)
    contents = []
    for start in (0, 4, 8):  # 12 entries through a bank of 6, in batches of 4
        bank.add(torch.arange(start, start + 4, dtype=torch.float32).view(4, 1).expand(4, 2))
        contents.append(bank.data[:, 0].tolist())
    assert contents[0][:4] == [0, 1, 2, 3]
    assert contents[1] == [6, 7, 2, 3, 4, 5]  # 0 and 1, the oldest, were overwritten first
    assert contents[2] == [6, 7, 8, 9, 10, 11]
    assert bank.filled == 6 and bank.count == 12


def test_bank_samples_distinct_filled_entries_only():
    bank = FeatureBank(capacity=100, dim=1, device=CPU)
    bank.add(torch.arange(1, 8, dtype=torch.float32).view(7, 1))
    torch.manual_seed(0)
    drawn = bank.sample(5)[:, 0].tolist()
    assert len(set(drawn)) == 5 and set(drawn) <= set(range(1, 8))
    assert sorted(bank.sample(4096)[:, 0].tolist()) == list(range(1, 8))  # never an empty slot
    assert FeatureBank(10, 3, CPU).sample(4).shape == (0, 3)


# Views ---------------------------------------------------------------------------------------


def test_jitter_rolls_the_whole_batch_by_one_offset_of_at_most_an_eighth_and_may_flip_it():
    grid = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).expand(3, 3, 16, 16)
    offsets, flips = set(), set()
    for seed in range(250):
        torch.manual_seed(seed)
        view = jitter(grid, flip=True)
        assert all(torch.equal(view[0], v) for v in view)  # one transformation for the batch
        matches = [
            (dh, dw, flipped)
            for dh in range(-2, 3)
            for dw in range(-2, 3)
            for flipped in (False, True)
            if torch.equal(view, _rolled(grid, dh, dw, flipped))
        ]
        assert len(matches) == 1
        offsets.add(matches[0][:2])
        flips.add(matches[0][2])
    assert len(offsets) == 25 and flips == {False, True}
    for seed in range(30):  # a dataset whose labels a mirror image changes: rolls only
        torch.manual_seed(seed)
        view = jitter(grid, flip=False)
        assert any(
            torch.equal(view, _rolled(grid, dh, dw, False))
            for dh in range(-2, 3)
            for dw in range(-2, 3)
        )


def _rolled(images, dh, dw, flipped):
    rolled = torch.roll(images, shifts=(dh, dw), dims=(2, 3))
    return torch.flip(rolled, dims=(3,)) if flipped else rolled


def test_local_view_is_a_differentiable_resized_crop_drawn_per_sample():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 16, 16, requires_grad=True)
    view = LocalView(16, flip=False)(images)
    assert view.shape == images.shape
    view.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    constant = torch.full((4, 3, 16, 16), 0.25)
    assert torch.allclose(LocalView(16, flip=True)(constant), constant, atol=1e-6)
