"""CuDFKD's two curricula as pure functions of the run's position (Li et al., arXiv 2208.13648).

- The adversarial weight alpha_adv of the generator objective (Eq. 2), a function of the epoch:
  `eq15`, the paper's Eq. 15, or `reference_increment`, what ljrprocc/DataFree bf3096b
  datafree_kd.py does (a fixed increment after each epoch strictly between the two bounds).
- The self-paced weights v*(lambda, L) of the student loss (Eq. 4, the three forms of §5.6) and
  the pace lambda, which grows linearly with the student steps (datafree/datasets/utils.py
  `lambda_scheduler`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

AdversarialSchedule = Literal["eq15", "reference_increment"]
SelfPacedForm = Literal["hard", "soft", "log"]


def adversarial_weight(
    schedule: AdversarialSchedule,
    epoch: int,
    epochs: int,
    start: float,
    slope: float,
    begin_fraction: float,
    end_fraction: float,
) -> float:
    """alpha_adv during epoch `epoch` (1-based) of a run of `epochs` epochs (N).

    eq15: 0 while epoch <= k_begin N; slope * epoch while epoch <= k_end N; afterwards the
    value the ramp reached, slope * floor(k_end N) (Eq. 15 names it lambda_adv,final without a
    value). `start` must be 0: Eq. 15 has no offset.
    reference_increment: `start` plus `slope` for each finished epoch j (0-based, as the code
    counts) with int(N k_begin) < j < int(N k_end), both bounds strict. A slope of 0 is a
    constant weight (CuDFKD Table 5's alpha_adv = 1.0 rows).
    """
    if schedule == "eq15":
        if epoch <= begin_fraction * epochs:
            return 0.0
        if epoch <= end_fraction * epochs:
            return slope * epoch
        return slope * math.floor(end_fraction * epochs)
    begin, end = int(epochs * begin_fraction), int(epochs * end_fraction)
    increments = sum(1 for finished in range(epoch - 1) if begin < finished < end)
    return start + slope * increments


def pace(student_steps_done: int, initial: float, growth_per_step: float) -> float:
    """lambda(tau) = lambda_0 + growth * tau, tau = student steps done before this one.

    The reference caps tau at 5e8 steps, which no schedule reaches; the cap is left out.
    """
    return initial + growth_per_step * student_steps_done


def self_paced_weights(losses: Tensor, pace: float, form: SelfPacedForm) -> Tensor:
    """v*(lambda, L) of §5.6 for each loss value, without gradient.

    hard: 1[L < lambda]; soft: 1[L < lambda] (1 - L / lambda); log ("Logarithm"):
    (1 + e^-lambda) / (1 + e^(L - lambda)). Easy (small-loss) samples get weights near 1.
    """
    # (...) -> (...)
    losses = losses.detach()
    if form == "hard":
        return (losses < pace).to(losses.dtype)
    if form == "soft":
        return (losses < pace).to(losses.dtype) * (1 - losses / pace)
    return (1 + math.exp(-pace)) / (1 + torch.exp(losses - pace))
