"""ADI and CMI: golden values of their synthesis objectives (computed here with NumPy, on views
and layer inputs this file captures itself) and the behaviours that make them what they are."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import dfkd.methods.cmi
from dfkd.synthesis.pool import to_uint8_truncated
from tests.support import build_method
from tests.test_methods import (
    _bn_statistics_distance,
    _LayerInputs,
    _softmax,
)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    p = _softmax(logits)
    return float(-np.log(p[np.arange(len(p)), targets.numpy()]).mean())


def _clamped_js(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    p, q = _softmax(student, t), _softmax(teacher, t)
    m = np.clip((p + q) / 2, 0.01, 0.99)
    p, q = np.clip(p, 0.01, 0.99), np.clip(q, 0.01, 0.99)
    kl = lambda a, b: (a * (np.log(a) - np.log(b))).sum(axis=1).mean()  # noqa: E731
    return float(0.5 * kl(m, p) + 0.5 * kl(m, q))


def _total_variation(x: torch.Tensor) -> float:
    a = x.detach().double().numpy()
    return float(
        np.abs(a[:, :, :, :-1] - a[:, :, :, 1:]).mean()
        + np.abs(a[:, :, :-1, :] - a[:, :, 1:, :]).mean()
        + np.abs(a[:, :, 1:, :-1] - a[:, :, :-1, 1:]).mean()
        + np.abs(a[:, :, :-1, :-1] - a[:, :, 1:, 1:]).mean()
    )


def _known_view(images: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """A fixed stand-in for a random augmentation: roll by (1, -2), then mirror."""
    rolled = torch.roll(images, shifts=(1, -2), dims=(2, 3))
    return torch.flip(rolled, dims=(3,)) if flip else rolled


# ADI -----------------------------------------------------------------------------------------


def test_adi_objective_is_its_formula_on_the_jittered_view(suite, monkeypatch):
    method = build_method(suite, "adi")
    method.student.eval().requires_grad_(False)
    monkeypatch.setattr("dfkd.methods.adi.jitter", lambda x, flip: _known_view(x))
    torch.manual_seed(2)
    method._start_round()
    pixels, targets = method._round["pixels"].detach().clone(), method._round["targets"]

    terms = method.generator_step()

    config, view = method.config, _known_view(pixels)
    bn_inputs = _LayerInputs(method.teacher, nn.BatchNorm2d)
    with torch.no_grad():
        teacher, student = method.teacher(view), method.student(view)
    bn_inputs.remove()
    expected = {
        "bn_statistics": config.bn_statistics_weight * _bn_statistics_distance(bn_inputs.records),
        "one_hot": config.one_hot_weight * _cross_entropy(teacher, targets),
        "adversarial": -config.adversarial_weight * _clamped_js(student, teacher, 3.0),
        "total_variation": config.total_variation_weight * _total_variation(pixels),  # raw x
        "l2": 0.0,
    }
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize("kept", ["best", "last"])
def test_adi_keeps_the_lowest_loss_batch_or_with_the_reference_option_the_last(suite, kept):
    method = build_method(suite, "adi")
    # A large step makes later iterates worse, so the best and the last batch differ.
    method.config = replace(method.config, kept_batch=kept, pixel_learning_rate=3.0)
    method.student.eval().requires_grad_(False)
    torch.manual_seed(0)
    method._start_round()
    before, losses = [], []
    for _ in range(3):
        before.append(method._round["pixels"].detach().clone())
        losses.append(float(sum(method.generator_step().values())))
    last = method._round["pixels"].detach().clone()
    best = int(np.argmin(losses))
    assert best != len(losses) - 1, "the case must tell the best and the last batch apart"

    method.finish_synthesis()

    kept_pixels = before[best] if kept == "best" else last
    expected = to_uint8_truncated(method.context.denormalize(kept_pixels))
    assert torch.equal(method.pool.images, expected)
    assert method._round is None  # the next step starts a fresh batch


def test_adi_pixels_stay_in_the_valid_range_and_each_round_starts_afresh(suite):
    method = build_method(suite, "adi")
    method.config = replace(method.config, pixel_learning_rate=3.0)
    method.student.eval().requires_grad_(False)
    for _ in range(3):
        method.generator_step()
    low, high = method.context.normalized_bounds
    pixels = method._round["pixels"]
    assert (pixels >= low).all() and (pixels <= high).all()
    method.finish_synthesis()
    method.generator_step()
    assert not torch.equal(method._round["pixels"], pixels)
    assert len(method.pool) == method.synthesis_batch_size


# CMI -----------------------------------------------------------------------------------------


def _cmi(suite, monkeypatch):
    method = build_method(suite, "cmi")
    method.student.eval().requires_grad_(False)
    # Fixed stand-ins for the two random views, different from each other.
    context = replace(method.context, augment=lambda x: _known_view(x))
    method.context = context
    method.local_view = lambda x: _known_view(x, flip=False).flip(dims=(2,))
    return method


def _info_nce(local: np.ndarray, global_: np.ndarray, current: int, t: float) -> float:
    logits = local @ global_.T / t
    logits -= logits.max(axis=1, keepdims=True)
    rows = -np.diag(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    return float(
        rows.mean() if len(rows) == current else rows[:current].mean() + rows[current:].mean()
    )


@pytest.mark.parametrize("cached", [0, 5])
def test_cmi_objective_is_its_formula_on_the_global_and_local_views(suite, monkeypatch, cached):
    method = _cmi(suite, monkeypatch)
    dim = method.head.layers[0].in_features
    negatives = torch.randn(cached, 2 * dim, generator=torch.Generator().manual_seed(1))
    method.bank.sample = lambda k: negatives  # what the bank would hand out
    torch.manual_seed(4)
    method._start_round()
    generator, head = copy.deepcopy(method.generator), copy.deepcopy(method.head)
    z, targets = method._round["z"].detach().clone(), method._round["targets"]

    terms = method.generator_step()

    config = method.config
    with torch.no_grad():
        pixels = generator.train()(z)
        global_view = method.context.normalize(_known_view(pixels))
        local_view = method.context.normalize(method.local_view(pixels))
        global_inputs = _LayerInputs(method.teacher, nn.BatchNorm2d)
        teacher = method.teacher(global_view)
        global_inputs.remove()
        local_inputs = _LayerInputs(method.teacher, nn.BatchNorm2d)
        method.teacher(local_view)
        local_inputs.remove()
        student = method.student(global_view)
        means = lambda records: np.concatenate([x.mean(axis=(2, 3)) for _, x in records], 1)  # noqa: E731
        local, global_ = means(local_inputs.records), means(global_inputs.records)
        n = negatives.double().numpy()
        rows = np.concatenate([local, n[:, :dim], global_, n[:, dim:]])
        projected = head.double()(torch.from_numpy(rows)).numpy()
    agree = (student.argmax(1) == teacher.argmax(1)).numpy()
    p_t, p_s = _softmax(teacher), _softmax(student)
    masked = ((p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1) * agree).mean()
    half = len(projected) // 2
    expected = {
        "bn_statistics": config.bn_statistics_weight
        * _bn_statistics_distance(global_inputs.records),
        "one_hot": config.one_hot_weight * _cross_entropy(teacher, targets),
        "adversarial": -config.adversarial_weight * masked,
        "contrastive": config.contrastive_weight
        * _info_nce(projected[:half], projected[half:], len(z), config.contrastive_temperature),
    }
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-7), name


def test_cmi_resets_its_generator_at_the_start_of_every_round_only(suite, monkeypatch):
    method = build_method(suite, "cmi")
    method.student.eval().requires_grad_(False)
    calls = []
    original = dfkd.methods.cmi.reset_weights
    monkeypatch.setattr(
        "dfkd.methods.cmi.reset_weights", lambda g: (calls.append(len(method.pool)), original(g))
    )
    for _ in range(2):
        for _ in range(3):
            method.generator_step()
        method.finish_synthesis()
    assert calls == [0, method.synthesis_batch_size]  # once per round, before its first step


def test_resetting_the_generator_redraws_its_weights_and_keeps_its_statistics(suite):
    generator = build_method(suite, "cmi").generator
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.fill_(0.3)
    torch.manual_seed(0)
    dfkd.methods.cmi.reset_weights(generator)
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert abs(module.weight.std().item() - 0.02) < 0.004
            assert module.bias is None or not module.bias.any()
        if isinstance(module, nn.BatchNorm2d):
            assert abs(module.weight.mean().item() - 1) < 0.01 and not module.bias.any()
            assert torch.all(module.running_mean == 0.3)


def test_cmi_commits_the_lowest_loss_batch_and_its_features(suite, monkeypatch):
    method = build_method(suite, "cmi")
    method.config = replace(method.config, generator_learning_rate=0.5)  # later steps worse
    method.student.eval().requires_grad_(False)
    outputs = []
    method.generator.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    losses = [float(sum(method.generator_step().values())) for _ in range(4)]
    best = int(np.argmin(losses))
    assert best != len(losses) - 1, "the case must tell the best and the last batch apart"
    best_features = method._round["best_features"].clone()

    method.finish_synthesis()

    assert torch.equal(method.pool.images, to_uint8_truncated(outputs[best]))
    assert method.bank.count == method.synthesis_batch_size
    assert torch.equal(method.bank.data[: method.bank.count], best_features)
