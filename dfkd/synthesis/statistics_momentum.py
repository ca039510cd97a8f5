"""A moving average of the BN-input statistics of earlier syntheses (Fast-DFKD's `bn_mmt`).

Fast-DFKD (zju-vipa/Fast-Datafree 0dcecbc datafree/hooks.py DeepInversionHook, `mmt_rate`;
NAYER's copy of it is identical) matches the teacher's running statistics not with the batch's
own mean and variance but with a blend of them and a moving average over earlier syntheses:

    L_BN = sum_l || rv_l - ((1 - m) var_l + m var~_l) ||_2
                 + || rm_l - ((1 - m) mean_l + m mean~_l) ||_2

so that a run's syntheses together, not each batch alone, fit the statistics. The average starts
as the statistics of the last step of the first synthesis (until then the plain loss applies)
and after each later synthesis moves to m * average + (1 - m) * that synthesis's last step's
statistics, detached.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def blend(batch: list[Tensor], kept: list[Tensor] | None, momentum: float) -> list[Tensor]:
    """(1 - m) * batch + m * kept per layer; the batch's own statistics without an average."""
    if kept is None:
        return batch
    return [(1 - momentum) * now + momentum * old for now, old in zip(batch, kept, strict=True)]


class StatisticsMomentum:
    """The moving averages (per BN layer) of the means and variances; method state."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.means: list[Tensor] | None = None
        self.variances: list[Tensor] | None = None

    def blended(self, means: list[Tensor], variances: list[Tensor]) -> tuple[list, list]:
        """The statistics a synthesis step matches against the teacher's running ones."""
        return (
            blend(means, self.means, self.momentum),
            blend(variances, self.variances, self.momentum),
        )

    @torch.no_grad()
    def update(self, means: list[Tensor], variances: list[Tensor]) -> None:
        """Folds in the statistics of a synthesis's last step (the reference's `update_mmt`)."""
        means, variances = [m.detach() for m in means], [v.detach() for v in variances]
        if self.means is None or self.variances is None:
            self.means, self.variances = means, variances
            return
        keep = self.momentum
        pairs = zip(self.means, means, strict=True)
        self.means = [keep * old + (1 - keep) * now for old, now in pairs]
        pairs = zip(self.variances, variances, strict=True)
        self.variances = [keep * old + (1 - keep) * now for old, now in pairs]

    def state_dict(self) -> dict[str, Any]:
        return {"means": self.means, "variances": self.variances}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        move = lambda tensors: None if tensors is None else [t.to(device) for t in tensors]  # noqa: E731
        self.means, self.variances = move(state["means"]), move(state["variances"])
