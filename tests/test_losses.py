"""Golden values for every shared loss term, computed independently with NumPy."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dfkd.hooks import BatchNormInputs
from dfkd.losses import (
    activation_loss,
    batch_norm_statistics_loss,
    clamped_js_divergence,
    class_balance_loss,
    contrastive_loss,
    kl_divergence,
    masked_kl_divergence,
    one_hot_loss,
    total_variation_l1,
)
from dfkd.synthesis.pool import to_uint8_truncated


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    return student, teacher


@pytest.mark.parametrize("temperature", [1.0, 3.0, 20.0])
def test_kl_divergence_is_teacher_to_student_batch_mean_times_t_squared(logits, temperature):
    student, teacher = logits
    p_t = _softmax(teacher.numpy() / temperature)
    p_s = _softmax(student.numpy() / temperature)
    expected = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean() * temperature**2
    assert kl_divergence(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-12)


def test_kl_divergence_hand_value():
    # Two classes: teacher (0.5, 0.5), student (e/(1+e), 1/(1+e)) from logits (1, 0).
    student = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    teacher = torch.zeros(1, 2, dtype=torch.float64)
    p = math.e / (1 + math.e)
    expected = 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    assert kl_divergence(student, teacher, 1.0).item() == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(teacher, teacher, 1.0).item() == 0.0


def test_one_hot_loss_is_cross_entropy_against_the_argmax(logits):
    _, teacher = logits
    t = teacher.numpy()
    log_p = np.log(_softmax(t))
    expected = -log_p[np.arange(len(t)), t.argmax(axis=1)].mean()
    assert one_hot_loss(teacher).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("base", [math.e, 10.0])
def test_class_balance_loss_is_negative_entropy_of_the_mean_prediction(logits, base):
    _, teacher = logits
    mean = _softmax(teacher.numpy()).mean(axis=0)
    expected = (mean * np.log(mean) / np.log(base)).sum()
    assert class_balance_loss(teacher, base).item() == pytest.approx(expected, rel=1e-12)


def test_class_balance_loss_is_minimal_for_a_uniform_batch():
    uniform = torch.eye(4, dtype=torch.float64) * 50  # each sample confident, classes balanced
    collapsed = torch.zeros(4, 4, dtype=torch.float64)
    collapsed[:, 0] = 50  # all samples the same class
    assert class_balance_loss(uniform).item() == pytest.approx(-math.log(4), abs=1e-12)
    assert class_balance_loss(collapsed).item() == pytest.approx(0.0, abs=1e-12)


def test_activation_loss():
    features = torch.tensor([[1.0, -2.0], [0.5, -0.5]])
    assert activation_loss(features).item() == pytest.approx(-(1 + 2 + 0.5 + 0.5) / 4)


def test_batch_norm_statistics_loss_matches_plain_l2_norms():
    generator = torch.Generator().manual_seed(1)
    layers = [
        torch.randn(4, 3, 5, 5, generator=generator),
        torch.randn(4, 7, 2, 2, generator=generator),
    ]
    running = [
        (torch.rand(3, generator=generator), torch.rand(3, generator=generator) + 0.5),
        (torch.rand(7, generator=generator), torch.rand(7, generator=generator) + 0.5),
    ]
    expected = 0.0
    for x, (running_mean, running_var) in zip(layers, running, strict=True):
        values = x.numpy().transpose(1, 0, 2, 3).reshape(x.shape[1], -1)  # (C, N*H*W)
        mean, var = values.mean(axis=1), values.var(axis=1)  # biased, as the reference hook
        expected += np.linalg.norm(var - running_var.numpy()) + np.linalg.norm(
            mean - running_mean.numpy()
        )
    means = [x.mean(dim=(0, 2, 3)) for x in layers]
    variances = [x.var(dim=(0, 2, 3), unbiased=False) for x in layers]
    value = batch_norm_statistics_loss(
        means, variances, [m for m, _ in running], [v for _, v in running]
    )
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_batch_norm_inputs_records_each_layer_input_in_order():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.BatchNorm2d(2)
    ).eval()
    for module in model:
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    capture = BatchNormInputs(model)
    x = torch.randn(5, 3, 8, 8)
    model(x)  # not recording: nothing is kept
    with capture.recording() as statistics:
        model(x)
    first_input = model[0](x)
    second_input = model[3](model[2](model[1](first_input)))
    for index, layer_input in enumerate((first_input, second_input)):
        assert torch.allclose(statistics.means[index], layer_input.mean(dim=(0, 2, 3)), atol=1e-6)
        expected_var = layer_input.var(dim=(0, 2, 3), unbiased=False)
        assert torch.allclose(statistics.variances[index], expected_var, atol=1e-6)
    assert statistics.running_means[1] is model[4].running_mean
    assert len(statistics.means) == 2
    capture.remove()
    with capture.recording() as statistics:
        model(x)
    assert statistics.means == []


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(axis=1)  # KL(p || q) per row


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_masked_kl_counts_only_the_samples_where_student_and_teacher_agree(logits, temperature):
    student, teacher = logits
    student = student.clone()
    student[0] = teacher[0] + 0.3  # same argmax as the teacher: this row counts
    student[1] = -teacher[1]  # opposite order: masked out
    s, t = student.numpy(), teacher.numpy()
    agree = s.argmax(axis=1) == t.argmax(axis=1)
    assert agree[0] and not agree[1]
    per_row = _kl_rows(_softmax(t / temperature), _softmax(s / temperature))
    expected = (per_row * agree).sum() / len(s) * temperature**2  # mean over the whole batch
    value = masked_kl_divergence(student, teacher, temperature).item()
    assert value == pytest.approx(expected, rel=1e-12)


def test_masked_kl_hand_value():
    # Row 1 agrees (both argmax 0): KL((1/2, 1/2) || (e/(1+e), 1/(1+e))); row 2 disagrees.
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    teacher = torch.tensor([[1e-9, 0.0], [1.0, 0.0]], dtype=torch.float64)
    p = math.e / (1 + math.e)
    q = 0.5 + 2.5e-10  # softmax of (1e-9, 0): first entry
    kl = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
    value = masked_kl_divergence(student, teacher, 1.0).item()
    assert value == pytest.approx(kl / 2, rel=1e-9)


def test_clamped_js_is_the_reference_kl_of_the_mixture_against_each_side(logits):
    student, teacher = logits
    p, q = _softmax(student.numpy() / 3), _softmax(teacher.numpy() / 3)
    m = np.clip((p + q) / 2, 0.01, 0.99)
    p, q = np.clip(p, 0.01, 0.99), np.clip(q, 0.01, 0.99)
    expected = 0.5 * _kl_rows(m, p).mean() + 0.5 * _kl_rows(m, q).mean()  # KL(M||P), KL(M||Q)
    value = clamped_js_divergence(student, teacher, 3.0).item()
    assert value == pytest.approx(expected, rel=1e-12)
    assert clamped_js_divergence(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-15)


def test_clamped_js_hand_value():
    # Two classes at T=1: P = (1/2, 1/2); Q = (0.999.., ~0) clamps to (0.99, 0.01); M = (0.75, 0.25)
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[20.0, 0.0]], dtype=torch.float64)
    q_first = 1 / (1 + math.exp(-20))
    m = ((0.5 + q_first) / 2, (0.5 + 1 - q_first) / 2)
    kl_m_p = sum(mi * math.log(mi / 0.5) for mi in m)
    kl_m_q = m[0] * math.log(m[0] / 0.99) + m[1] * math.log(m[1] / 0.01)
    value = clamped_js_divergence(student, teacher, 1.0).item()
    assert value == pytest.approx(0.5 * kl_m_p + 0.5 * kl_m_q, rel=1e-12)


def test_total_variation_is_the_mean_absolute_difference_in_four_directions():
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = x.numpy()
    expected = 0.0
    for i0, i1, j0, j1 in ((0, 0, 0, 1), (0, 1, 0, 0), (1, 0, 0, 1), (0, 1, 0, 1)):
        # pixel (i + i0, j + j0) against pixel (i + i1, j + j1) over every valid (i, j)
        h, w = (
            a.shape[2] - 1 if i0 != i1 else a.shape[2],
            a.shape[3] - 1 if j0 != j1 else a.shape[3],
        )
        first = a[:, :, i0 : i0 + h, j0 : j0 + w]
        second = a[:, :, i1 : i1 + h, j1 : j1 + w]
        expected += np.abs(first - second).mean()
    assert total_variation_l1(x).item() == pytest.approx(expected, rel=1e-12)
    flat = torch.full((1, 3, 4, 4), 0.7, dtype=torch.float64)
    assert total_variation_l1(flat).item() == 0.0


def _info_nce_rows(local: np.ndarray, global_: np.ndarray, temperature: float) -> np.ndarray:
    logits = local @ global_.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.diag(log_probabilities)  # row i's positive is column i


def _unit_rows(rows: int, seed: int) -> torch.Tensor:
    x = torch.randn(rows, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def test_contrastive_loss_without_cached_negatives_is_the_mean_over_the_batch():
    local, global_ = _unit_rows(5, 1), _unit_rows(5, 2)
    expected = _info_nce_rows(local.numpy(), global_.numpy(), 0.1).mean()
    assert contrastive_loss(local, global_, 5, 0.1).item() == pytest.approx(expected, rel=1e-10)


def test_contrastive_loss_with_cached_negatives_averages_current_and_cached_rows_apart():
    local, global_ = _unit_rows(7, 3), _unit_rows(7, 4)  # 3 current rows, 4 cached
    rows = _info_nce_rows(local.numpy(), global_.numpy(), 0.2)
    expected = rows[:3].mean() + rows[3:].mean()
    assert contrastive_loss(local, global_, 3, 0.2).item() == pytest.approx(expected, rel=1e-10)
    assert rows.mean() != pytest.approx(expected)  # the split is what is tested


def test_contrastive_loss_sends_no_gradient_through_the_global_side():
    local, global_ = _unit_rows(4, 5).requires_grad_(), _unit_rows(4, 6).requires_grad_()
    contrastive_loss(local, global_, 4, 0.1).backward()
    assert local.grad is not None and global_.grad is None


def test_quantisation_truncates_like_the_reference_png_writer():
    pixels = torch.tensor([-0.5, 0.0, 0.5, 0.99999, 1.0, 1.7, 254.9 / 255, 255.1 / 255])
    expected = (np.clip(pixels.numpy(), 0, 1) * 255).astype("uint8")  # numpy's cast truncates
    assert to_uint8_truncated(pixels.view(1, 1, 2, 4)).flatten().tolist() == expected.tolist()
    assert expected.tolist() == [0, 0, 127, 254, 255, 255, 254, 255]
