"""Tiny CPU networks and methods built from the real params files, for the tests."""

from pathlib import Path

import torch

from dfkd.config import Suite
from dfkd.data import dataset_info, normalize
from dfkd.methods import METHODS, DFKDMethod
from dfkd.methods.base import MethodContext
from dfkd.models import build_model
from dfkd.schema import from_dict

REPOSITORY = Path(__file__).resolve().parents[1]


def method_names() -> list[str]:
    return sorted(path.stem for path in (REPOSITORY / "params" / "methods").glob("*.yaml"))


def frozen_teacher(seed: int = 0) -> torch.nn.Module:
    """A cnn_small whose BN running statistics are those of some data, not the 0/1 defaults."""
    torch.manual_seed(seed)
    teacher = build_model("cnn_small", 10)
    teacher.train()
    with torch.no_grad():
        for _ in range(3):
            teacher(torch.randn(16, 3, 32, 32) * 0.7 + 0.2)
    return teacher.eval().requires_grad_(False)


def build_method(suite: Suite, name: str, batch_size: int = 8, seed: int = 0) -> DFKDMethod:
    """Method `name` with its digits settings, a frozen cnn_small teacher, a cnn_tiny student."""
    _, hyperparameters = suite.method_settings(name, "digits", "cnn_small-cnn_tiny")
    implementation = METHODS.get(suite.methods[name].implementation)
    config = from_dict(implementation.config_class, hyperparameters, name)
    info = dataset_info("digits")
    teacher = frozen_teacher(seed)
    torch.manual_seed(seed + 1)
    context = MethodContext(
        teacher=teacher,
        student=build_model("cnn_tiny", 10),
        num_classes=10,
        image_size=32,
        batch_size=batch_size,
        normalize=lambda pixels: normalize(pixels, info),
        device=torch.device("cpu"),
    )
    return implementation(config, context)
