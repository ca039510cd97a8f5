"""Golden-value tests for dfkd.evaluate: L_p against scipy, Acc@1/Agree@1 by hand, predict modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from torch import nn

from dfkd.evaluate import (
    Evaluation,
    evaluate,
    js_divergence,
    predict,
    probability_loyalty,
    probability_loyalty_reference_code,
)


def _logit_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(student, teacher) float32 logits (N, C) covering the regimes where stability matters."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    near_one_hot = torch.zeros(32, 10)
    near_one_hot[torch.arange(32), torch.arange(32) % 10] = 40.0  # top-class probability 1 - 4e-17
    teacher_close = 3.0 * randn(64, 100)
    return {
        "moderate": (2.0 * randn(64, 10), 2.0 * randn(64, 10)),
        "confident": (30.0 * randn(64, 10), 30.0 * randn(64, 10)),
        "large_magnitude": (1e4 * randn(16, 10), 1e4 * randn(16, 10) + 1e5),
        "near_one_hot": (near_one_hot + 0.5 * randn(32, 10), near_one_hot),
        "student_close_to_teacher": (teacher_close + 1e-3 * randn(64, 100), teacher_close),
        "many_classes": (randn(16, 1000), randn(16, 1000)),
    }


CASES = _logit_pairs()
# scipy's float64 reference variant loses the divergence of near-identical one-hot pairs (~1e-27
# after the +1e-8): its value is off by ~1e-6 there and rounds negative (NaN) on some rows. Those
# pairs are checked against the extended-precision computation below instead.
SCIPY_UNRELIABLE_FOR_REFERENCE_CODE = {"near_one_hot"}


def _scipy_paper_lp(student: torch.Tensor, teacher: torch.Tensor) -> np.ndarray:
    # scipy's jensenshannon is the JS distance sqrt(JS divergence) in nats, so Eq. 14 is 1 - it.
    p_s = softmax(student.double().numpy(), axis=1)
    p_t = softmax(teacher.double().numpy(), axis=1)
    return 1.0 - jensenshannon(p_t, p_s, axis=1)


def _scipy_reference_code_lp(student: torch.Tensor, teacher: torch.Tensor) -> np.ndarray:
    # The authors' metric: +1e-8 on both softmaxes, scipy on the transposed arrays (one column
    # per image), then 1 - sqrt of the distance.
    p_s = softmax(student.double().numpy(), axis=1) + 1e-8
    p_t = softmax(teacher.double().numpy(), axis=1) + 1e-8
    return 1.0 - np.sqrt(jensenshannon(p_s.T, p_t.T))


def _mpmath_lp(student: torch.Tensor, teacher: torch.Tensor, reference_code: bool) -> np.ndarray:
    """Either loyalty at 50 significant digits, straight from the definitions."""
    mpmath = pytest.importorskip("mpmath")

    def probabilities(row: list[float]) -> list:
        weights = [mpmath.exp(mpmath.mpf(x) - max(row)) for x in row]
        if reference_code:
            total = mpmath.fsum(weights)
            weights = [w / total + mpmath.mpf("1e-8") for w in weights]
        total = mpmath.fsum(weights)
        return [w / total for w in weights]

    def divergence(p: list, q: list) -> object:
        return mpmath.fsum(
            x * mpmath.log(2 * x / (x + y)) / 2
            for a, b in ((p, q), (q, p))
            for x, y in zip(a, b, strict=True)
            if x > 0
        )

    loyalties = []
    with mpmath.workdps(50):
        for s_row, t_row in zip(student.double().tolist(), teacher.double().tolist(), strict=True):
            js = divergence(probabilities(s_row), probabilities(t_row))
            root = mpmath.sqrt(mpmath.sqrt(js)) if reference_code else mpmath.sqrt(js)
            loyalties.append(float(1 - root))
    return np.array(loyalties)


@pytest.mark.parametrize("case", sorted(CASES))
def test_probability_loyalty_matches_scipy(case: str) -> None:
    student, teacher = CASES[case]
    got = probability_loyalty(student, teacher)
    assert got.shape == (student.shape[0],)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _scipy_paper_lp(student, teacher), rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", sorted(set(CASES) - SCIPY_UNRELIABLE_FOR_REFERENCE_CODE))
def test_reference_code_loyalty_matches_scipy(case: str) -> None:
    student, teacher = CASES[case]
    got = probability_loyalty_reference_code(student, teacher)
    assert got.shape == (student.shape[0],)
    assert got.dtype == torch.float64
    # 1e-10: scipy's own rounding, amplified by the fourth root, reaches ~1e-11 on close pairs.
    expected = _scipy_reference_code_lp(student, teacher)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("reference_code", [False, True], ids=["paper", "reference_code"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loyalties_match_extended_precision(case: str, reference_code: bool) -> None:
    student, teacher = (logits[:4] for logits in CASES[case])  # 4 rows keep mpmath quick
    loyalty = probability_loyalty_reference_code if reference_code else probability_loyalty
    expected = _mpmath_lp(student, teacher, reference_code)
    np.testing.assert_allclose(loyalty(student, teacher).numpy(), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("case", sorted(set(CASES) - SCIPY_UNRELIABLE_FOR_REFERENCE_CODE))
def test_evaluate_loyalties_are_means_of_scipy_values(case: str) -> None:
    student, teacher = CASES[case]
    labels = torch.zeros(student.shape[0], dtype=torch.long)
    result = evaluate(student, teacher, labels)
    assert result.lp == pytest.approx(_scipy_paper_lp(student, teacher).mean(), abs=1e-12)
    expected_code = _scipy_reference_code_lp(student, teacher).mean()
    assert result.lp_reference_code == pytest.approx(expected_code, abs=1e-10)


def test_disjoint_one_hot_distributions_reach_the_js_maximum() -> None:
    # Softmax of +-1e4 logits is exactly one-hot in float64, so JS = ln 2 and 0 log 0 terms occur.
    student = torch.tensor([[1e4, -1e4], [-1e4, 1e4]])
    teacher = torch.tensor([[-1e4, 1e4], [1e4, -1e4]])
    got = probability_loyalty(student, teacher)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), 1.0 - math.sqrt(math.log(2.0)), rtol=0, atol=1e-15)


def test_js_divergence_hand_values() -> None:
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.75, 0.25]], dtype=torch.float64)
    # Third row: m = (0.5, 0.5); KL(p||m) = KL(q||m) = 0.25 ln 0.5 + 0.75 ln 1.5.
    third = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    expected = [math.log(2.0), 0.0, third]
    np.testing.assert_allclose(js_divergence(p, q).numpy(), expected, rtol=1e-14, atol=1e-16)


def test_identical_logits_are_perfectly_loyal_and_agree() -> None:
    logits = CASES["confident"][1]
    labels = logits.argmax(dim=1)
    result = evaluate(logits, logits.clone(), labels)
    assert result == Evaluation(acc1=100.0, agree1=100.0, lp=1.0, lp_reference_code=1.0)


def test_acc1_and_agree1_hand_built() -> None:
    # argmax student (0, 1, 2, 1), teacher (0, 1, 1, 2), labels (0, 2, 2, 1):
    # student right on images 0, 2, 3 -> 75%; agrees with the teacher on images 0, 1 -> 50%.
    student = torch.tensor([[5.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 2.0], [1.0, 4.0, -1.0]])
    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 9.0, 1.0], [0.0, 5.0, 1.0], [1.0, 0.0, 7.0]])
    labels = torch.tensor([0, 2, 2, 1])
    result = evaluate(student, teacher, labels)
    assert result.acc1 == 75.0
    assert result.agree1 == 50.0
    assert isinstance(result.acc1, float)


def test_as_dict_has_every_metric() -> None:
    result = Evaluation(acc1=1.0, agree1=2.0, lp=0.5, lp_reference_code=0.25)
    assert result.as_dict() == {"acc1": 1.0, "agree1": 2.0, "lp": 0.5, "lp_reference_code": 0.25}


def test_evaluate_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        evaluate(torch.zeros(4, 3), torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        evaluate(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def _small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def test_predict_runs_in_eval_mode_over_uneven_batches() -> None:
    model = _small_net().train()
    images = torch.randn(10, 3, 8, 8)
    running_mean = model[1].running_mean.clone()
    logits = predict(model, images, batch_size=3)
    assert logits.shape == (10, 5)
    assert not logits.requires_grad
    # Eval mode: BN running statistics untouched and dropout off, so it equals one eval pass.
    assert torch.equal(model[1].running_mean, running_mean)
    with torch.no_grad():
        expected = model.eval()(images)
    torch.testing.assert_close(logits, expected)


def test_predict_restores_training_mode() -> None:
    model = _small_net().train()
    predict(model, torch.randn(4, 3, 8, 8), batch_size=2)
    assert all(module.training for module in model.modules())


def test_predict_restores_eval_mode_and_mixed_modes() -> None:
    model = _small_net().eval()
    predict(model, torch.randn(4, 3, 8, 8), batch_size=4)
    assert not any(module.training for module in model.modules())
    model.train()
    model[1].eval()  # a frozen BN inside a training model must stay frozen
    predict(model, torch.randn(4, 3, 8, 8), batch_size=4)
    expected = [not isinstance(module, nn.BatchNorm2d) for module in model.modules()]
    assert [module.training for module in model.modules()] == expected


def test_predict_rejects_non_positive_batch_size() -> None:
    with pytest.raises(ValueError):
        predict(_small_net(), torch.randn(2, 3, 8, 8), batch_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluate_on_cuda_matches_cpu() -> None:
    student, teacher = CASES["moderate"]
    labels = teacher.argmax(dim=1)
    on_cpu = evaluate(student, teacher, labels)
    on_gpu = evaluate(student.cuda(), teacher.cuda(), labels.cuda())
    assert on_gpu.acc1 == on_cpu.acc1
    assert on_gpu.agree1 == on_cpu.agree1
    assert on_gpu.lp == pytest.approx(on_cpu.lp, abs=1e-12)
    assert on_gpu.lp_reference_code == pytest.approx(on_cpu.lp_reference_code, abs=1e-12)
