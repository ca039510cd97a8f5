"""NAYER's and Fast-DFKD's paths the embedded digits never take: their synthesis view's mirror
(CIFAR) and its absence (Tiny-ImageNet), the generators at CIFAR and Tiny-ImageNet sizes layer for
layer against the reference classes, the first-layer reset on the layers the reference names,
and the meta-step of a CIFAR-size generator.

The reference layers are transcribed from tmtuan1307/NAYER c6bedcd datafree/models/generator.py
(NLGenerator) and zju-vipa/Fast-Datafree 0dcecbc datafree/models/generator.py (Generator), in
their modules' registration order; expected views are found by matching against every candidate
crop and mirror, never with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.support import build_method
from tests.test_fast_meta import _adam

PAIR = {"cifar10": "resnet34-resnet18", "cifar100": "resnet34-resnet18",
        "tiny_imagenet": "resnet34-resnet18"}  # fmt: skip


def _settings(suite, name: str, dataset: str) -> dict:
    """The method's hyperparameters for `dataset` (the stand-in for the CLIP embeddings, which
    have the same 512 dimensions)."""
    _, hyperparameters = suite.method_settings(name, dataset, PAIR[dataset])
    if "label_embeddings" in hyperparameters:
        hyperparameters = {**hyperparameters, "label_embeddings": "random_orthogonal"}
    return hyperparameters


# The view ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dataset", "flips"),
    [
        ("nayer", "cifar10", {False, True}),
        ("fast10", "cifar10", {False, True}),
        ("nayer", "tiny_imagenet", {False}),  # nayer.py: RandomCrop alone there
        ("nayer", "digits", {False}),  # a mirrored digit is another digit
    ],
)
def test_the_synthesis_view_is_a_padded_crop_mirrored_where_the_reference_mirrors(
    suite, name, dataset, flips
):
    overrides = {}
    if dataset != "digits":
        flip = suite.method_settings(name, dataset, PAIR[dataset])[1]["synthesis_flip"]
        overrides = {"synthesis_flip": flip}
    method = build_method(suite, name, batch_size=8, dataset=dataset, overrides=overrides)
    method.student.eval().requires_grad_(False)
    if name == "nayer":  # the test's teacher has 10 classes, Tiny-ImageNet 200
        method._targets = lambda: torch.arange(8) % 10
    seen, views = [], []
    original = method.inversion_terms

    def spy(pixels, targets):
        seen.append(pixels.detach())
        return original(pixels, targets)

    method.inversion_terms = spy
    method.teacher.register_forward_pre_hook(lambda m, x: views.append(x[0].detach()))
    torch.manual_seed(5)
    method.generator_step()
    pixels, view = seen[0], views[0]
    size = pixels.shape[-1]
    padded = F.pad(pixels, (4, 4, 4, 4))  # kornia's RandomCrop(padding=4): zeros
    found = []
    for image, shown in zip(padded, view, strict=True):
        matches = [
            mirrored
            for top in range(9)
            for left in range(9)
            for mirrored in (False, True)
            if torch.allclose(
                method.context.normalize(
                    (lambda c: c.flip(-1) if mirrored else c)(
                        image[None, :, top : top + size, left : left + size]
                    )
                ),
                shown[None],
                atol=1e-6,
            )
        ]
        assert matches, "a view is not one padded crop (+ mirror) of its generated image"
        found.append(matches[0] if len(matches) == 1 else None)
    assert {f for f in found if f is not None} == flips


# NAYER's generator ------------------------------------------------------------------------------


def _reference_nl_generator(blocks: int, width: int, ngf: int, size: int) -> list[tuple]:
    """NLGenerator's parameter shapes in registration order: n1 = BatchNorm1d(le_size=512); le1 =
    nle x Linear(512, le_emb_size); l1 = Linear(le_emb_size, 2 ngf (size/4)^2); conv_blocks =
    BN2d(2 ngf), Upsample, Conv(2 ngf, 2 ngf, 3, bias=False), BN2d, LeakyReLU, Upsample,
    Conv(2 ngf, ngf, 3, bias=False), BN2d(ngf), LeakyReLU, Conv(ngf, 3, 3), Sigmoid."""
    init = size // 4
    shapes = [(512,), (512,)]
    shapes += [(width, 512), (width,)] * blocks
    shapes += [(2 * ngf * init * init, width), (2 * ngf * init * init,)]
    shapes += [(2 * ngf,), (2 * ngf,), (2 * ngf, 2 * ngf, 3, 3), (2 * ngf,), (2 * ngf,)]
    shapes += [(ngf, 2 * ngf, 3, 3), (ngf,), (ngf,), (3, ngf, 3, 3), (3,)]
    return shapes


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tiny_imagenet"])
def test_nayers_generator_has_the_reference_layers_at_each_scripts_size(suite, dataset):
    hyperparameters = _settings(suite, "nayer", dataset)
    method = build_method(suite, "nayer", dataset=dataset, overrides=hyperparameters)
    classes = method.context.num_classes
    batch = hyperparameters["synthesis_batch_size"]
    blocks = math.ceil(batch / classes)  # nle = ceil(sbz / nl): 40, 4 and 1 noisy layers
    size = method.context.image_size
    expected = _reference_nl_generator(blocks, hyperparameters["noisy_layer_width"], 64, size)
    actual = [tuple(p.shape) for p in method.generator.parameters()]
    assert actual == expected
    if dataset != "cifar100":
        return
    # A whole batch of the script: each block of 100 samples through its own noisy layer.
    method.generator.train()
    with torch.no_grad():
        targets = torch.arange(classes).repeat(batch // classes)
        images = method.generator(method.embeddings[targets])
    assert images.shape == (batch, 3, size, size)
    assert images.min() >= 0 and images.max() <= 1


# Fast-DFKD's generator --------------------------------------------------------------------------

# Generator(nz=256, ngf=64, img_size=32): its parameters by the reference's names, in order.
FAST_REFERENCE = [
    ("l1.0.weight", (8192, 256)), ("l1.0.bias", (8192,)),
    ("conv_blocks.0.weight", (128,)), ("conv_blocks.0.bias", (128,)),
    ("conv_blocks.2.weight", (128, 128, 3, 3)),
    ("conv_blocks.3.weight", (128,)), ("conv_blocks.3.bias", (128,)),
    ("conv_blocks.6.weight", (64, 128, 3, 3)),
    ("conv_blocks.7.weight", (64,)), ("conv_blocks.7.bias", (64,)),
    ("conv_blocks.9.weight", (3, 64, 3, 3)), ("conv_blocks.9.bias", (3,)),
]  # fmt: skip


def test_fast_dfkds_reset_touches_the_layers_the_reference_names_l1_0_and_conv_blocks_0(suite):
    hyperparameters = {**_settings(suite, "fast10", "cifar10"), "first_layer_reset_epoch": 1}
    method = build_method(suite, "fast10", dataset="cifar10", overrides=hyperparameters)
    meta = method.meta_generator
    assert [tuple(p.shape) for p in meta.parameters()] == [s for _, s in FAST_REFERENCE]
    with torch.no_grad():  # no value the reset would leave as it found it
        for parameter in meta.parameters():
            parameter.normal_(1.0, 0.5)
    before = [p.detach().clone() for p in meta.parameters()]
    method.student.eval().requires_grad_(False)
    method.generator_step()  # epoch 1's first synthesis resets, then steps the copy only
    changed = {
        name
        for (name, _), old, new in zip(FAST_REFERENCE, before, meta.parameters(), strict=True)
        if not torch.equal(old, new)
    }
    assert changed == {"l1.0.weight", "l1.0.bias", "conv_blocks.0.weight", "conv_blocks.0.bias"}
    reset = dict(zip([n for n, _ in FAST_REFERENCE], meta.parameters(), strict=True))
    assert abs(reset["l1.0.weight"].std().item() - 0.02) < 0.002
    assert abs(reset["conv_blocks.0.weight"].std().item() - 0.02) < 0.01
    assert not reset["l1.0.bias"].any() and not reset["conv_blocks.0.bias"].any()


def test_a_cifar_size_meta_step_is_adam_on_the_summed_inner_gradients(suite):
    hyperparameters = _settings(suite, "fast2", "cifar10")
    method = build_method(suite, "fast2", dataset="cifar10", overrides=hyperparameters)
    method.student.eval().requires_grad_(False)
    start = [p.detach().clone() for p in method.meta_generator.parameters()]
    total = None
    for _ in range(2):  # Fast-2's two inner steps
        method.generator_step()
        grads = [p.grad.detach().double().numpy() for p in method.generator.parameters()]
        total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
    method.finish_synthesis()
    config = method.config
    assert config.meta_learning_rate == pytest.approx(5e-3 * 2)  # lr_g x g_steps
    expected = _adam(start, [total], config.meta_learning_rate, config.generator_betas)
    for actual, wanted in zip(method.meta_generator.parameters(), expected, strict=True):
        assert torch.allclose(actual.detach().double(), torch.from_numpy(wanted), atol=1e-6)
