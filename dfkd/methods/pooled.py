"""What the two inversion methods (ADI, CMI) share: one batch synthesised per round by inverting
the teacher, kept in a pool, and a student that learns from the whole pool.

As zju-vipa/CMI runs them (datafree/synthesis/deepinversion.py, contrastive.py): each round
synthesises `synthesis_batch_size` images for sorted, uniformly drawn target classes; the round's
kept batch joins the pool (dfkd/synthesis/pool.py) when the round's synthesis ends
(`finish_synthesis`); every student step then draws a batch of the pool with the dataset's train
augmentation and learns KL(teacher || student) x T^2 on it (the default student loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dfkd.hooks import BatchNormInputs
from dfkd.methods.base import DFKDMethod, MethodConfig, MethodContext
from dfkd.schema import non_negative, positive
from dfkd.synthesis.pool import SyntheticPool


@dataclass(frozen=True)
class PooledMethodConfig(MethodConfig):
    # Images synthesised per round; null: the student's batch (the reference's default).
    synthesis_batch_size: int | None = field(metadata=positive)
    bn_statistics_weight: float = field(metadata=non_negative)
    one_hot_weight: float = field(metadata=non_negative)  # CE of the teacher on the targets
    adversarial_weight: float = field(metadata=non_negative)


class PooledMethod(DFKDMethod):
    config: PooledMethodConfig

    def __init__(self, config: PooledMethodConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.pool = SyntheticPool(context.device)
        self.teacher_batch_norms = BatchNormInputs(self.teacher)

    @property
    def synthesis_batch_size(self) -> int:
        return self.config.synthesis_batch_size or self.context.batch_size

    def random_targets(self) -> Tensor:
        """Uniform classes, sorted (as the reference, "for better visualization"), drawn on the
        CPU as the reference draws them, so the device never waits."""
        targets = torch.randint(0, self.context.num_classes, (self.synthesis_batch_size,))
        return targets.sort().values.to(self.context.device)

    @torch.no_grad()
    def sample(self, batch_size: int) -> Tensor:
        images = self.pool.next_batch(batch_size)  # uint8 pixels
        return self.context.normalize(self.context.augment(images))

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state["pool"])
