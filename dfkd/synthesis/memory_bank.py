"""CMI's memory bank: a FIFO ring of the (local || global) features of earlier kept batches.

zju-vipa/CMI datafree/synthesis/contrastive.py MemoryBank, on the device instead of the CPU:
`add` overwrites the oldest entries first; `sample(k)` draws k distinct filled entries
uniformly (the reference's random.sample). The reference returns no entry at all in the one
round where the bank has been filled exactly to capacity (its pointer has wrapped to 0 and it
then samples from range(0)); here the filled entries are sampled then too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FeatureBank:
    def __init__(self, capacity: int, dim: int, device: torch.device) -> None:
        self.capacity = capacity
        self.data = torch.zeros(capacity, dim, device=device)
        self.pointer = 0  # where the next entry goes
        self.count = 0  # entries ever added

    @property
    def filled(self) -> int:
        return min(self.count, self.capacity)

    def add(self, features: Tensor) -> None:
        """Appends (n, dim) entries, overwriting the oldest once the bank is full."""
        features = features.detach()[-self.capacity :]  # more than fit: the newest survive
        first = min(len(features), self.capacity - self.pointer)
        self.data[self.pointer : self.pointer + first] = features[:first]
        self.data[: len(features) - first] = features[first:]
        self.pointer = (self.pointer + len(features)) % self.capacity
        self.count += len(features)

    def sample(self, k: int) -> Tensor:
        """(min(k, filled), dim): distinct entries, uniformly at random."""
        indices = torch.randperm(self.filled, device=self.data.device)[:k]
        return self.data[indices]

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "pointer": self.pointer, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = state["data"].to(self.data.device)
        self.pointer, self.count = state["pointer"], state["count"]
