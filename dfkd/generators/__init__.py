"""Generators, looked up by name: `build_generator("cmi", 256, 64, 32)`."""

from __future__ import annotations

# Imported for their @GENERATORS.register side effect.
from dfkd.generators import dafl, dcgan, mad  # noqa: F401
from dfkd.generators.base import GENERATORS, Generator, reset_weights

__all__ = ["GENERATORS", "Generator", "build_generator", "reset_weights"]


def build_generator(name: str, latent_dim: int, base_channels: int, image_size: int) -> Generator:
    """A freshly initialised generator `name`; `base_channels` is the papers' ngf (64)."""
    return GENERATORS.get(name)(latent_dim, base_channels, image_size)
