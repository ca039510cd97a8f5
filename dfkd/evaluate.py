"""Test-set metrics of a distilled student: Acc@1, Agree@1 and probability loyalty.

Definitions follow CuDFKD (Li et al., arXiv 2208.13648, §5.1):

* Acc@1 (Eq. 12): percent of test images whose student argmax equals the label.
* Agree@1 (Eq. 13): percent of test images whose student argmax equals the teacher argmax.
* Probability loyalty L_p (Eq. 14): per image 1 - sqrt(JS(p_t || p_s)), averaged over images, with
  the Jensen-Shannon divergence in nats.

The authors' code (ljrprocc/DataFree, datafree/metrics/kl_metric.py) computes a different number:
it adds 1e-8 to both softmax vectors, takes scipy's ``jensenshannon`` (which renormalises and
returns the JS *distance*, the square root of the divergence) and then takes another square root,
so it reports 1 - JS^(1/4). Published L_p values are only comparable with that variant, so both
are reported: ``lp`` (paper) and ``lp_reference_code`` (code). That code ran in float32; both are
computed here in float64, so for students very close to their teacher published values can differ
from ours in the fourth decimal, and float32 rounding can even make scipy return NaN there.

The teacher is frozen, so callers compute its test logits once with ``predict`` and pass them to
``evaluate`` every epoch; ``evaluate`` itself runs no network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

# Eval-mode forward passes do not depend on the batch size, so one size serves every caller.
EVALUATION_BATCH_SIZE = 1000

# Added to both softmax vectors by the reference code before scipy renormalises them.
_REFERENCE_CODE_EPSILON = 1e-8


@dataclass(frozen=True)
class Evaluation:
    """Test-set metrics of one student checkpoint; accuracies in percent, loyalties in [0, 1]."""

    acc1: float  # Eq. 12, student vs labels
    agree1: float  # Eq. 13, student vs teacher argmax
    lp: float  # Eq. 14 as printed: mean of 1 - sqrt(JS divergence)
    lp_reference_code: float  # the authors' code: mean of 1 - JS divergence^(1/4)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _plogp_over_m(x: Tensor, r: Tensor, m: Tensor) -> Tensor:
    # x log(x / m) elementwise, given x = m (1 + r); 0 where x = 0 (0 log 0 = 0).
    # Near r = 0 the ratio x / m rounds away the small difference that a near-identical pair's
    # divergence (1e-14 and below) consists of; log1p(r) keeps it. Near r = -1 (x far below m) the
    # opposite holds: 1 + r cancels to nothing, and the ratio is the accurate form.
    log_ratio = torch.where(r.abs() < 0.5, torch.log1p(r), torch.log(x / m))
    return torch.where(x > 0, x * log_ratio, torch.zeros_like(x))


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence in nats between rows of p and q, both (N, C) probabilities -> (N,).

    JS = 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2, and 0 log 0 = 0 so that classes a
    confident model drives to exactly zero probability contribute nothing instead of NaN.
    """
    if p.shape != q.shape or p.dim() != 2:
        raise ValueError(f"expected two (N, C) tensors of equal shape, got {p.shape} and {q.shape}")
    m = (0.5 * (p + q)).clamp_min(torch.finfo(p.dtype).tiny)  # (N, C); floored where p = q = 0
    r = 0.5 * (p - q) / m  # (N, C) in [-1, 1]: p = m (1 + r), q = m (1 - r)
    terms = _plogp_over_m(p, r, m) + _plogp_over_m(q, -r, m)  # (N, C)
    # Rounding can push a near-zero divergence slightly negative, and the caller takes its root.
    return (0.5 * terms.sum(dim=1)).clamp_min(0.0)


def _softmax64(logits: Tensor) -> Tensor:
    # float64: for a student close to its teacher the divergence is tiny, and its fourth root
    # lifts float32 rounding into the fourth decimal, the precision the paper prints L_p to.
    return torch.softmax(logits.to(torch.float64), dim=1)  # (N, C)


def probability_loyalty(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Per-image L_p = 1 - sqrt(JS(p_t || p_s)) (Eq. 14), logits (N, C) -> (N,) float64."""
    divergence = js_divergence(_softmax64(teacher_logits), _softmax64(student_logits))  # (N,)
    return 1.0 - divergence.sqrt()


def probability_loyalty_reference_code(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Per-image loyalty as the CuDFKD code computes it, logits (N, C) -> (N,) float64.

    softmax + 1e-8, renormalised (as scipy does), JS distance = sqrt(JS), then 1 - sqrt(distance).
    """
    p_s = _softmax64(student_logits) + _REFERENCE_CODE_EPSILON  # (N, C)
    p_t = _softmax64(teacher_logits) + _REFERENCE_CODE_EPSILON  # (N, C)
    p_s = p_s / p_s.sum(dim=1, keepdim=True)
    p_t = p_t / p_t.sum(dim=1, keepdim=True)
    distance = js_divergence(p_s, p_t).sqrt()  # (N,)
    return 1.0 - distance.sqrt()


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """Logits (N, K) of ``model`` on pre-normalised images (N, C, H, W) on the model's device.

    Runs in eval mode (BN running statistics, no dropout), then restores every submodule's own
    mode, since a training student may hold submodules deliberately kept in eval mode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        return torch.cat([model(batch) for batch in images.split(batch_size)])
    finally:
        for module, training in modes:
            module.training = training


def evaluate(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Evaluation:
    """All metrics from test-set logits (N, K), (N, K) and labels (N,), on their device.

    Ties in argmax go to the lowest class index (torch's rule) for student and teacher alike.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"expected (N, K) logits of equal shape, got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(
            f"expected labels of shape ({student_logits.shape[0]},), got {labels.shape}"
        )
    student_top1 = student_logits.argmax(dim=1)  # (N,)
    teacher_top1 = teacher_logits.argmax(dim=1)  # (N,)
    metrics = torch.stack(
        [
            100.0 * (student_top1 == labels).to(torch.float64).mean(),
            100.0 * (student_top1 == teacher_top1).to(torch.float64).mean(),
            probability_loyalty(student_logits, teacher_logits).mean(),
            probability_loyalty_reference_code(student_logits, teacher_logits).mean(),
        ]
    )  # (4,) float64
    acc1, agree1, lp, lp_reference_code = metrics.tolist()  # the one host transfer
    return Evaluation(acc1=acc1, agree1=agree1, lp=lp, lp_reference_code=lp_reference_code)
