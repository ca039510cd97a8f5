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
    return kl_divergence_per_sample(student_logits, teacher_logits, temperature).mean()


def kl_divergence_per_sample(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> Tensor:
    """KL_i(p_teacher || p_student) x T^2 of each sample; their mean is `kl_divergence`."""
    # (N, C), (N, C) -> (N,)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return per_sample * temperature**2


def l1_distance_per_sample(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """mean_c |s_ic - t_ic| of each sample; their mean is torch's L1Loss on the logits."""
    # (N, C), (N, C) -> (N,)
    return (student_logits - teacher_logits).abs().mean(dim=1)


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


def masked_kl_divergence(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> Tensor:
    """mean_i m_i KL_i(p_teacher || p_student) x T^2, m_i = 1 where both argmaxes agree.

    CMI's "decision adversarial" term (contrastive.py): negated, it pushes apart only the samples
    on which student and teacher still agree. The mean runs over the whole batch, masked rows
    included, as in the reference.
    """
    # (N, C), (N, C) -> ()
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)  # (N,)
    agree = (student_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).to(per_sample.dtype)
    return (per_sample * agree).mean() * temperature**2


def clamped_js_divergence(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> Tensor:
    """The "JS" of ADI as the CMI and NVlabs code compute it, reproduced as is.

    P = softmax(s / T), Q = softmax(t / T), M = (P + Q) / 2, each clamped to [0.01, 0.99]; the
    value is KL(M || P) / 2 + KL(M || Q) / 2 (batch mean). The textbook JS divergence is
    KL(P || M) / 2 + KL(Q || M) / 2; the clamps also make it bounded. No T^2 factor.
    """
    # (N, C), (N, C) -> ()
    p = F.softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    m = (0.5 * (p + q)).clamp(0.01, 0.99)
    p, q = p.clamp(0.01, 0.99), q.clamp(0.01, 0.99)
    kl_m_p = (m * (m.log() - p.log())).sum(dim=1).mean()
    kl_m_q = (m * (m.log() - q.log())).sum(dim=1).mean()
    return 0.5 * kl_m_p + 0.5 * kl_m_q


def total_variation_l1(images: Tensor) -> Tensor:
    """Sum over four neighbour directions (right, down and both diagonals) of the mean |difference|.

    The CMI code's image prior (criterions.py get_image_prior_losses); NVlabs' DeepInversion uses
    L2 norms of the same differences, so the weights are not interchangeable.
    """
    # (N, C, H, W) -> ()
    right = images[:, :, :, :-1] - images[:, :, :, 1:]
    down = images[:, :, :-1, :] - images[:, :, 1:, :]
    anti_diagonal = images[:, :, 1:, :-1] - images[:, :, :-1, 1:]
    diagonal = images[:, :, :-1, :-1] - images[:, :, 1:, 1:]
    return sum(d.abs().mean() for d in (right, down, anti_diagonal, diagonal))


def contrastive_loss(
    local_projections: Tensor, global_projections: Tensor, current: int, temperature: float
) -> Tensor:
    """CMI's instance-discrimination loss between the local and global view of each sample.

    Rows 0..current-1 are this batch, the rest cached samples from the memory bank. Row i's
    logits are its local projection against every global projection (gradients stop at the
    global side), divided by `temperature`; the positive is the global view of the same sample.
    With cached rows the loss is mean(CE of the current rows) + mean(CE of the cached rows),
    so the few current samples are not drowned by thousands of cached ones (contrastive.py).
    """
    # (M, D), (M, D) with M = current + cached, both L2-normalised -> ()
    logits = local_projections @ global_projections.detach().T / temperature  # (M, M)
    labels = torch.arange(len(logits), device=logits.device)
    per_row = F.cross_entropy(logits, labels, reduction="none")  # (M,)
    if len(per_row) == current:
        return per_row.mean()
    return per_row[:current].mean() + per_row[current:].mean()
