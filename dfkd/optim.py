"""The optimizers and per-epoch learning-rate schedules shared by teachers and students."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR

from dfkd.config import OptimizerConfig


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    config: OptimizerConfig,
    epochs: int,
    options: Mapping[str, bool] | None = None,
    warmup_epochs: int = 0,
) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """SGD with momentum, or Adam with PyTorch's betas, and the schedule, stepped once per epoch.

    Weight decay is the L2 form for both (torch.optim.SGD's and torch.optim.Adam's
    `weight_decay`, as the reference code and MAD's generator use it), not AdamW's decoupled one.
    "cosine" anneals to `minimum_learning_rate` (0 in the CMI code since commit acbbea6) over
    `cosine_epochs`, or over `epochs`, the epochs the schedule is stepped in; "multistep" multiplies
    the lr by `gamma` after each milestone epoch (teacher recipes, MAD); "constant" never changes.
    A warm-up (MAD Table 4's Food-101 and Places365 teachers) scales epoch e (from 1) by e / w
    for e <= w, before any decay; the supplement says only "5 warm-up epochs".
    """
    options = dict(options or {})  # the compute mode's kernels (dfkd/compute.py)
    optimizer: torch.optim.Optimizer
    if config.algorithm == "adam":
        optimizer = torch.optim.Adam(
            parameters, lr=config.learning_rate, weight_decay=config.weight_decay, **options
        )
    else:
        optimizer = torch.optim.SGD(
            parameters,
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **options,
        )
    if config.schedule == "cosine":
        length = config.cosine_epochs or epochs
        return optimizer, CosineAnnealingLR(
            optimizer, T_max=length, eta_min=config.minimum_learning_rate
        )
    if warmup_epochs:
        milestones, gamma = config.milestones, config.gamma

        def factor(completed: int) -> float:  # epochs completed -> lr factor of the next one
            decays = sum(completed >= milestone for milestone in milestones)
            return min(1.0, (completed + 1) / warmup_epochs) * gamma**decays

        return optimizer, LambdaLR(optimizer, factor)
    return optimizer, MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
