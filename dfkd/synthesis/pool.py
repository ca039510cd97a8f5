"""The synthetic pool: every batch a pool-based method kept, on the device, as 8-bit pixels.

The reference (zju-vipa/CMI datafree/utils/_utils.py ImagePool, DataIter) writes each kept batch
as PNG files, lists every file of the folder as a dataset with the train transform, and after
each round rebuilds a shuffled DataLoader (drop_last False) that the student iterates with
wrap-around. This holds the same images in memory and draws the same batches:

- `add` stores clamp(x, 0, 1) * 255 cast to uint8, the PNG writer's truncation, and starts a new
  pass (the reference's new DataLoader);
- `next_batch` hands out consecutive slices of a random permutation of the pool, the last slice
  of a pass shorter when the pool is not a multiple of the batch, then starts another pass;
- the caller applies the dataset's train augmentation and normalisation (the reference's
  `transform`), so a sample is an augmented view of a stored image.

No PNG file and no DataLoader: indices are drawn on the device, and the pool's images, order and
position are method state, saved in every checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def to_uint8_truncated(pixels: Tensor) -> Tensor:
    """(N, C, H, W) floats in [0, 1] (clamped) -> uint8 by truncation, as numpy's astype does."""
    return (pixels.detach().clamp(0, 1) * 255).to(torch.uint8)


class SyntheticPool:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._storage: Tensor | None = None  # (capacity, C, H, W) uint8
        self.size = 0
        self._order: Tensor | None = None  # permutation of the current pass
        self._position = 0  # images of the current pass handed out

    def __len__(self) -> int:
        return self.size

    @property
    def images(self) -> Tensor:
        """(size, C, H, W) uint8: every stored image, in the order added."""
        if self._storage is None:
            raise RuntimeError("the pool is empty")
        return self._storage[: self.size]

    def add(self, pixels: Tensor) -> None:
        batch = to_uint8_truncated(pixels).to(self.device)
        if self._storage is None:
            self._storage = torch.empty(
                (0, *batch.shape[1:]), dtype=torch.uint8, device=self.device
            )
        needed = self.size + len(batch)
        if needed > len(self._storage):  # double, so adding a round costs O(1) amortised
            grown = torch.empty(
                (max(needed, 2 * len(self._storage)), *batch.shape[1:]),
                dtype=torch.uint8,
                device=self.device,
            )
            grown[: self.size] = self._storage[: self.size]
            self._storage = grown
        self._storage[self.size : needed] = batch
        self.size = needed
        self._order, self._position = None, 0

    def next_batch(self, batch_size: int) -> Tensor:
        """(n, C, H, W) uint8 with n = batch_size, or fewer at the end of a pass."""
        if self.size == 0:
            raise RuntimeError("the pool is empty: a round must keep a batch first")
        if self._order is None or self._position >= self.size:
            self._order, self._position = torch.randperm(self.size, device=self.device), 0
        indices = self._order[self._position : self._position + batch_size]
        self._position += len(indices)
        return self._storage[indices]

    def state_dict(self) -> dict[str, Any]:
        return {
            "images": self.images.clone() if self.size else None,
            "order": self._order,
            "position": self._position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        images = state["images"]
        self._storage = images.to(self.device) if images is not None else None
        self.size = 0 if images is None else len(images)
        self._order = state["order"].to(self.device) if state["order"] is not None else None
        self._position = state["position"]
