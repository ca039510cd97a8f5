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
    class_balance_loss,
    kl_divergence,
    one_hot_loss,
)


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
