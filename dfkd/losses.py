"""Loss terms shared by several data-free KD methods, as pure functions.

Each function takes tensors and returns a scalar; none reads a module or keeps state. The
definitions follow the CMI code base (zju-vipa/CMI at 9e79fa9: datafree/criterions.py,
datafree/hooks.py, datafree/synthesis/generative.py), the code that produced the published
comparison numbers of DAFL, DFQ, ADI and CMI; where the original papers differ, the method that
uses a term says so in its docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def kl_divergence(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(p_teacher || p_student) at temperature T, batch mean, times T^2 (CMI `kldiv`).

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """
    # (N, C), (N, C) -> ()
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return per_sample.mean() * temperature**2


def one_hot_loss(teacher_logits: Tensor) -> Tensor:
    """Cross-entropy of the teacher against its own argmax: rewards confident predictions."""
    # (N, C) -> ()
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1))


def class_balance_loss(teacher_logits: Tensor, log_base: float = math.e) -> Tensor:
    """sum_c p_c log p_c of the batch-mean teacher distribution (negative entropy).

    Added with a positive weight, minimising it spreads the batch over all classes. DAFL's
    "information entropy" loss; the original DAFL code uses log10, the CMI code the natural log.
    """
    # (N, C) -> ()
    mean_probabilities = F.softmax(teacher_logits, dim=1).mean(dim=0)  # (C,)
    return (mean_probabilities * torch.log(mean_probabilities)).sum() / math.log(log_base)


def activation_loss(features: Tensor) -> Tensor:
    """-mean |f| of the teacher's penultimate features: rewards strongly activating inputs."""
    # (N, D) -> ()
    return -features.abs().mean()


def batch_norm_statistics_loss(
    batch_means: Sequence[Tensor],
    batch_variances: Sequence[Tensor],
    running_means: Sequence[Tensor],
    running_variances: Sequence[Tensor],
) -> Tensor:
    """sum_l ||var_l - running_var_l||_2 + ||mean_l - running_mean_l||_2 over BN layers.

    Plain (not squared, not channel-normalised) L2 norms, as CMI's `DeepInversionHook`; the batch
    statistics are the biased mean/variance of each BatchNorm2d *input* over (N, H, W).
    """
    # each entry: (C_l,) -> ()
    terms = [
        torch.linalg.vector_norm(var - running_var) + torch.linalg.vector_norm(mean - running_mean)
        for mean, var, running_mean, running_var in zip(
            batch_means, batch_variances, running_means, running_variances, strict=True
        )
    ]
    return torch.stack(terms).sum()
