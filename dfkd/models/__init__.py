"""Classifier models, looked up by name: `build_model("wrn40_2", num_classes=10)`."""

from __future__ import annotations

# Imported for their @MODELS.register side effect, so importing dfkd.models registers every family.
from dfkd.models import alexnet, resnet, small, vgg, wide_resnet  # noqa: F401
from dfkd.models.base import MODELS, Classifier

__all__ = ["MODELS", "Classifier", "build_model"]


def build_model(name: str, num_classes: int) -> Classifier:
    """A freshly initialised model `name` with a `num_classes`-way head; unknown names raise."""
    return MODELS.get(name)(num_classes)
