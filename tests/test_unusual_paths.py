"""The paths the embedded digits never take: mirror flips (ADI's jitter, CMI's views), CMI's
local-view crop scale, the ResNet `stages` feature layers, the generators' CIFAR and 256x256
blocks (shortcut, upsampling, BatchNorm momentum and eps), the pool's reshuffle between passes.

Expected values are computed here with torch.nn.functional from the modules' weights, or by
matching outputs against every candidate transformation, never with the code under test.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfkd.data import dataset_info
from dfkd.generators import build_generator
from dfkd.methods.base import method_context
from dfkd.methods.cmi import CMI, CMIConfig
from dfkd.models import build_model
from dfkd.runtime import memory_format
from dfkd.schema import from_dict
from dfkd.synthesis.pool import SyntheticPool
from tests.support import build_method

CPU = torch.device("cpu")


# Mirror flips ---------------------------------------------------------------------------------


def _rolled(images: torch.Tensor, dh: int, dw: int, flipped: bool) -> torch.Tensor:
    rolled = torch.roll(images, shifts=(dh, dw), dims=(2, 3))
    return torch.flip(rolled, dims=(3,)) if flipped else rolled


@pytest.mark.parametrize(("dataset", "flips"), [("cifar10", {False, True}), ("digits", {False})])
def test_adi_optimises_its_pixels_through_a_mirror_only_where_labels_allow(suite, dataset, flips):
    method = build_method(suite, "adi", dataset=dataset)
    method.student.eval().requires_grad_(False)
    limit = dataset_info(dataset).image_size // 8
    seen: list[torch.Tensor] = []
    hook = method.teacher.register_forward_pre_hook(lambda m, x: seen.append(x[0].detach()))
    found = set()
    for step in range(12):
        if method._round is not None:
            before = method._round["pixels"].detach().clone()
        torch.manual_seed(step)
        method.generator_step()
        if step == 0:
            continue  # the round's pixels were drawn inside the step
        matches = [
            flipped
            for dh in range(-limit, limit + 1)
            for dw in range(-limit, limit + 1)
            for flipped in (False, True)
            if torch.equal(seen[-1], _rolled(before, dh, dw, flipped))
        ]
        assert len(matches) == 1, "the teacher's view is not one roll (+ mirror) of the pixels"
        found.add(matches[0])
    hook.remove()
    assert found == flips  # 11 coins: both faces, unless a mirror would change the label


def _ramps(n: int, size: int) -> torch.Tensor:
    """Pixels whose channel 0 is the column and channel 1 the row, each from 0 to 1."""
    line = torch.linspace(0, 1, size)
    columns, rows = line.view(1, size).expand(size, size), line.view(size, 1).expand(size, size)
    return torch.stack([columns, rows, torch.full((size, size), 0.5)]).expand(n, 3, size, size)


@pytest.mark.parametrize(("dataset", "mirrored"), [("cifar10", True), ("digits", False)])
def test_cmis_local_view_crops_a_quarter_to_all_of_the_image_and_mirrors_where_allowed(
    suite, dataset, mirrored
):
    method = build_method(suite, "cmi", dataset=dataset)
    size = dataset_info(dataset).image_size
    torch.manual_seed(0)
    view = method.local_view(_ramps(2000, size))
    left, right = view[:, 0, :, 0], view[:, 0, :, -1]  # the crop's first and last column
    top, bottom = view[:, 1, 0, :], view[:, 1, -1, :]
    flipped = (left > right).all(dim=1)
    assert flipped.float().mean().item() == (pytest.approx(0.5, abs=0.05) if mirrored else 0.0)
    # With corners aligned (kornia's default), the crop's edges sample the ramp exactly.
    width = ((right - left).abs().mean(dim=1) * (size - 1) + 1) / size
    height = ((bottom - top).mean(dim=1) * (size - 1) + 1) / size
    area = width * height
    assert area.min() >= 0.25 - 0.02 and area.max() <= 1.0 + 1e-6  # scale [0.25, 1] (CMI)
    assert area.min() < 0.28 and area.max() > 0.95  # both bounds are reached
    ratio = width / height  # kornia's ratio [3/4, 4/3], rounded to whole pixels
    assert ratio.min() > 0.6 and ratio.max() < 1.6


def test_cmis_global_view_is_the_datasets_crop_and_mirror(suite):
    method = build_method(suite, "cmi", dataset="cifar10")
    method.student.eval().requires_grad_(False)
    outputs, views = [], []
    method.generator.register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
    method.teacher.register_forward_pre_hook(lambda m, x: views.append(x[0].detach()))
    torch.manual_seed(3)
    method.generator_step()
    pixels, global_view = outputs[0], views[0]  # the teacher sees the global view first
    padded = F.pad(pixels, (4, 4, 4, 4))
    flips = []
    for image, view in zip(padded, global_view, strict=True):
        matches = [
            flipped
            for top in range(9)
            for left in range(9)
            for flipped in (False, True)
            if torch.allclose(
                method.context.normalize(
                    _rolled(image[None, :, top : top + 32, left : left + 32], 0, 0, flipped)
                ),
                view[None],
                atol=1e-6,
            )
        ]
        assert len(matches) == 1, "a global view is not one padded crop (+ mirror) of its image"
        flips.append(matches[0])
    assert set(flips) == {False, True}  # per-sample coins, 8 samples


# Feature layers -------------------------------------------------------------------------------


def test_cmis_stage_features_are_the_means_of_a_resnets_four_stage_inputs(suite):
    _, hyperparameters = suite.method_settings("cmi", "cifar10", "resnet34-resnet18")
    assert hyperparameters["feature_layers"] == "stages"  # datafree_kd.py for resnet34 teachers
    config = from_dict(CMIConfig, {**hyperparameters, "generator_base_channels": 4,
                                   "synthesis_batch_size": 4}, "cmi")  # fmt: skip
    torch.manual_seed(0)
    teacher = build_model("resnet34", 10).eval().requires_grad_(False)
    context = method_context(dataset_info("cifar10"), teacher, build_model("cnn_tiny", 10), 4, 1,
                             CPU, memory_format(CPU))  # fmt: skip
    method = CMI(config, context)
    assert method.head.layers[0].in_features == 64 + 64 + 128 + 256  # layer1..layer4 inputs

    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), method.features.recording() as means:
        teacher(images)
    with torch.no_grad():
        x = teacher.stem(images)
        expected = []
        for stage in teacher.stages:  # the input of each stage, averaged over space
            expected.append(x.mean(dim=(2, 3)))
            x = stage(x)
    torch.testing.assert_close(torch.cat(means, 1), torch.cat(expected, 1))


# Generator blocks -----------------------------------------------------------------------------


def _bn(x: torch.Tensor, module: nn.BatchNorm2d, momentum: float) -> torch.Tensor:
    """Train-mode BatchNorm with eps 1e-5 (PyTorch's default; the tables print no eps), and the
    running mean that the given momentum yields from zeros, recorded for the caller."""
    _bn.expected_means.append(momentum * x.mean(dim=(0, 2, 3)))
    return F.batch_norm(x, None, None, module.weight, module.bias, training=True, eps=1e-5)


def _up(x: torch.Tensor) -> torch.Tensor:  # UpsamplingBilinear2d(2): corners aligned
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _table8c(generator, z: torch.Tensor) -> torch.Tensor:
    """MAD Table 8(c) and 9(b), functionally, with the generator's weights."""
    h = F.linear(z, generator.project.weight, generator.project.bias)
    h = h.view(len(z), -1, 4, 4)
    blocks = [m for m in generator.body if m.__class__.__name__ == "ResNetBlockY"]
    assert len(blocks) == 7
    for index, block in enumerate(blocks):
        if index:
            h = _up(h)
        first, bn1, second, bn2 = (block.conv[i] for i in (0, 2, 3, 5))
        y = F.leaky_relu(F.conv2d(h, first.weight, first.bias, padding=1), 0.2)
        y = _bn(y, bn1, 0.01)
        y = F.leaky_relu(F.conv2d(y, second.weight, second.bias, padding=1), 0.2)
        y = _bn(y, bn2, 0.01)
        c_in, c_out = h.shape[1], y.shape[1]
        if c_in != c_out:  # a 1x1 convolution where the channels change, else the identity
            shortcut = block.shortcut
            assert isinstance(shortcut, nn.Conv2d) and shortcut.kernel_size == (1, 1)
            h = y + F.conv2d(h, shortcut.weight, shortcut.bias)
        else:
            h = y + h
    last = generator.body[-1]
    return F.conv2d(h, last.weight, last.bias, padding=1)


def _table8a(generator, z: torch.Tensor, start: int) -> torch.Tensor:
    """MAD Table 8(a)/(b) and 9(a), functionally, with the generator's weights."""
    h = F.linear(z, generator.project.weight, generator.project.bias).view(len(z), -1, start, start)
    h = _bn(F.relu(h), generator.body[1], 0.1)
    convs = [m for m in generator.body.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in generator.body.modules() if isinstance(m, nn.BatchNorm2d)][1:]
    for stage in range(3):
        h = _up(h)
        for k in (2 * stage, 2 * stage + 1):
            h = _bn(F.relu(F.conv2d(h, convs[k].weight, convs[k].bias, padding=1)), norms[k], 0.1)
    return F.conv2d(h, convs[-1].weight, convs[-1].bias)


@pytest.mark.parametrize(("size", "expected"), [(256, _table8c), (32, None), (64, None)])
def test_mads_generators_compute_their_tables_blocks(size, expected):
    torch.manual_seed(0)
    generator = build_generator("mad_uncond", 16, 2 if size == 256 else 4, size).train()
    with torch.no_grad():  # BN weights and biases away from 1 and 0
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    z = torch.randn(3, 16)
    _bn.expected_means = []
    with torch.no_grad():
        reference = expected(generator, z) if expected else _table8a(generator, z, start=size // 8)
        actual = copy.deepcopy(generator).logits(z)
    torch.testing.assert_close(actual, reference, rtol=1e-4, atol=1e-5)

    moved = copy.deepcopy(generator)
    with torch.no_grad():
        moved.logits(z)
    means = [m.running_mean for m in moved.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(means) == len(_bn.expected_means)
    for mean, wanted in zip(means, _bn.expected_means, strict=True):  # momentum 0.01 / 0.1
        torch.testing.assert_close(mean, wanted, rtol=1e-4, atol=1e-6)


# The pool ---------------------------------------------------------------------------------------


def test_the_pool_reshuffles_between_passes():
    pool = SyntheticPool(CPU)
    pool.add((torch.arange(8, dtype=torch.float32) / 255).view(8, 1, 1, 1).expand(8, 3, 2, 2))
    torch.manual_seed(0)
    passes = [tuple(pool.next_batch(8)[:, 0, 0, 0].tolist()) for _ in range(6)]
    assert all(sorted(p) == list(range(8)) for p in passes)  # each pass: every image once
    assert len(set(passes)) == 6, "a pass repeats an earlier pass's order: no reshuffle"
