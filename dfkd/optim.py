"""The SGD optimizer and per-epoch learning-rate schedules shared by teachers and students."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR

from dfkd.config import SGDConfig


def build_sgd(
    parameters: Iterable[torch.nn.Parameter],
    config: SGDConfig,
    epochs: int,
    options: Mapping[str, bool] | None = None,
) -> tuple[torch.optim.SGD, LRScheduler]:
    """SGD with momentum and weight decay, and its schedule, stepped once per epoch.

    "cosine" anneals to 0 over `epochs` (CMI code since commit acbbea6); "multistep" multiplies
    the lr by `gamma` after each milestone epoch (teacher recipes, MAD); "constant" never changes.
    """
    optimizer = torch.optim.SGD(
        parameters,
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        **(options or {}),  # the compute mode's kernels (dfkd/compute.py)
    )
    if config.schedule == "cosine":
        return optimizer, CosineAnnealingLR(optimizer, T_max=epochs)
    return optimizer, MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
