"""Classifier and generator architectures: parameter counts, shapes and the shared interfaces.

The shape and interface tests are parametrised over the registries, so a newly registered model or
generator is tested without editing this file.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from dfkd.errors import ConfigError
from dfkd.generators import GENERATORS, Generator, build_generator
from dfkd.models import MODELS, Classifier, build_model
from dfkd.models.alexnet import torchvision_state_dict

# 10-class heads. Each count was derived by hand from the layer list in methods.md §5; see the
# comments for the pieces that are easy to get wrong.
PARAMETER_COUNTS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "wrn16_1": 175_066,
    "wrn16_2": 691_674,
    # 28,032 (group 1) + 107,232 + 427,456 + stem, final BN and head 1,210.
    "wrn40_1": 563_930,
    "wrn40_2": 2_243_546,
    # Conv layers carry biases: 9,220,480 conv + 5,504 BN + 5,130 head.
    "vgg11": 9_231_114,
    # torchvision's layers: convs 2,469,696, FC-4096 x2 54,534,144, head 40,970.
    "alexnet": 57_044_810,
    "cnn_small": 24_346,
    "cnn_tiny": 6_418,
}

# At the papers' sizes (ngf 64, 32x32): nz 256 for CMI, 512 for LargeGenerator (CMI-code DAFL), 1000
# for DAFL. The projection dominates each count.
GENERATOR_PARAMETER_COUNTS = {
    "cmi": (256, 2_328_899),
    "large": (512, 8_776_259),
    "dafl": (1000, 8_423_939),
    # ljrprocc/DataFree DCGAN_Generator_CIFAR10(nz=1024, ngf=64, img_size=32, d=3)
    "large_depth3": (1024, 9_948_739),
}

NUM_CLASSES = 7  # not 10, so a hard-coded head size shows up


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@functools.cache
def cached_model(name: str, num_classes: int) -> Classifier:
    torch.manual_seed(0)
    return build_model(name, num_classes).eval()


@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_parameter_count(name: str) -> None:
    assert count_parameters(cached_model(name, 10)) == PARAMETER_COUNTS[name]


# AlexNet's 11x11/4 stem and three 3x3/2 pools need at least 63 px: MAD runs it at 256 (Table 3).
IMAGE_SIZES = {"alexnet": (224, 256)}


@pytest.mark.parametrize(
    ("name", "image_size"),
    [(name, size) for name in MODELS.names() for size in IMAGE_SIZES.get(name, (32, 64))],
)
def test_model_outputs_logits_and_features(name: str, image_size: int) -> None:
    model = cached_model(name, NUM_CLASSES)
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        logits, features = model.forward_with_features(x)
        plain_logits = model(x)
    assert isinstance(model, Classifier)
    assert model.num_classes == NUM_CLASSES
    assert logits.shape == (2, NUM_CLASSES)
    assert features.shape == (2, model.feature_dim)
    assert (model.head.in_features, model.head.out_features) == (model.feature_dim, NUM_CLASSES)
    torch.testing.assert_close(logits, plain_logits)
    torch.testing.assert_close(model.head(features), logits)


@pytest.mark.parametrize("image_size", [32, 64])
def test_vgg_last_block_sees_4x4_maps(image_size: int) -> None:
    model = cached_model("vgg11", NUM_CLASSES)
    shapes = []
    handle = model.blocks[-1].register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, image_size, image_size))
    handle.remove()
    assert shapes == [(1, 512, 4, 4)]


@pytest.mark.parametrize("name", ["wrn16_2", "vgg11"])
def test_reference_initialisation(name: str) -> None:
    model = cached_model(name, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    widest = max(convs, key=lambda m: m.weight.numel())
    expected_std = math.sqrt(2.0 / (9 * widest.out_channels))
    assert widest.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert torch.all(model.head.bias == 0)
    if name == "vgg11":
        assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert all(torch.all(m.bias == 0) for m in convs)


def test_alexnet_is_torchvisions_and_loads_its_weights() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None, num_classes=NUM_CLASSES).eval()
    model = build_model("alexnet", NUM_CLASSES).eval()
    model.load_state_dict(torchvision_state_dict(reference.state_dict()))  # strict
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
        assert model.features(x).shape == (2, 256, 7, 7)  # pooled to 6x6 by the adaptive pool


def test_unknown_model_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("resnet19", 10)


@pytest.mark.parametrize("name", sorted(GENERATOR_PARAMETER_COUNTS))
def test_generator_parameter_count(name: str) -> None:
    latent_dim, expected = GENERATOR_PARAMETER_COUNTS[name]
    assert count_parameters(build_generator(name, latent_dim, 64, 32)) == expected


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_output(name: str, image_size: int) -> None:
    torch.manual_seed(0)
    generator = build_generator(name, latent_dim=16, base_channels=8, image_size=image_size)
    assert isinstance(generator, Generator)
    assert generator.latent_dim == 16
    conditional = getattr(generator, "conditioning", "uncond") != "uncond"  # MAD's cat and sum
    embedding = (torch.randn(8, 16),) if conditional else ()
    images = generator(torch.randn(8, 16), *embedding)  # train mode, as during generator steps
    assert images.shape == (8, 3, image_size, image_size)
    if generator.outputs_normalized:
        per_channel = images.transpose(0, 1).reshape(3, -1)
        mean, variance = per_channel.mean(1), per_channel.var(1, unbiased=False)
        torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(variance, torch.ones(3), atol=1e-2, rtol=0)
    else:
        assert images.min() >= 0 and images.max() <= 1


def test_output_conventions_of_the_reference_generators() -> None:
    assert {name: GENERATORS.get(name).outputs_normalized for name in ("cmi", "large", "dafl")} == {
        "cmi": False,
        "large": False,
        "dafl": True,
    }
    dafl = build_generator("dafl", 16, 8, 32)
    eps = [m.eps for m in dafl.modules() if isinstance(m, nn.BatchNorm2d)]
    assert eps == [1e-5, 0.8, 0.8, 1e-5]


def test_unknown_generator_and_bad_image_size_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="cmi"):
        build_generator("gan", 16, 8, 32)
    with pytest.raises(ConfigError, match="multiple of 4"):
        build_generator("cmi", 16, 8, 30)
