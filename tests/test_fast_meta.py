"""Fast-DFKD (dfkd/methods/fast_meta.py): the first-order meta-update, the synthesis objective
it shares with NAYER, its targets, the adversarial term's start and the first-layer reset.

The meta-update is recomputed here with Adam written out in NumPy from the inner copies'
gradients; the objective from the inputs the teacher's layers saw (tests/test_nayer.py).
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.support import build_method
from tests.test_methods import _LayerInputs, _softmax
from tests.test_nayer import _bn_loss_with_momentum, _Inputs, _masked_kl, _statistics

VARIANTS = ["fast2", "fast5", "fast10"]


def _adam(parameters, gradients, lr, betas, eps=1e-8):
    """Adam's steps written out: each step's gradient list, from the given parameters."""
    params = [p.detach().double().numpy().copy() for p in parameters]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for step, step_gradients in enumerate(gradients, start=1):
        for i, g in enumerate(step_gradients):
            first[i] = betas[0] * first[i] + (1 - betas[0]) * g
            second[i] = betas[1] * second[i] + (1 - betas[1]) * g * g
            corrected = first[i] / (1 - betas[0] ** step)
            scale = np.sqrt(second[i] / (1 - betas[1] ** step)) + eps
            params[i] = params[i] - lr * corrected / scale
    return params


@pytest.mark.parametrize("name", VARIANTS)
def test_the_meta_generator_steps_adam_on_the_summed_gradients_of_each_synthesis(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    config = method.config
    start = [p.detach().clone() for p in method.meta_generator.parameters()]
    steps = {"fast2": 2, "fast5": 5, "fast10": 10}[name]
    summed = []
    for _ in range(2):
        total = None
        for _ in range(steps):
            before = copy.deepcopy(method.meta_generator.state_dict())
            method.generator_step()
            grads = [p.grad.detach().double().numpy() for p in method.generator.parameters()]
            total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
            after = method.meta_generator.state_dict()
            assert all(torch.equal(before[k], after[k]) for k in before)  # inner steps only
        summed.append(total)
        method.finish_synthesis()
        assert all(p.grad is None for p in method.meta_generator.parameters())
    expected = _adam(start, summed, config.meta_learning_rate, config.generator_betas)
    for actual, wanted in zip(method.meta_generator.parameters(), expected, strict=True):
        np.testing.assert_allclose(actual.detach().double().numpy(), wanted, rtol=1e-4, atol=1e-6)
    assert config.meta_learning_rate == pytest.approx(config.generator_learning_rate * steps)


def test_each_synthesis_starts_from_the_meta_generator_with_fresh_codes(suite):
    method = build_method(suite, "fast10")
    method.student.eval().requires_grad_(False)
    started = []
    original = method.inversion_terms

    def spy(pixels, targets):  # the copy's weights as it generated, before its step
        weights = method.generator.named_parameters()
        started.append({k: v.detach().clone() for k, v in weights})
        return original(pixels, targets)

    method.inversion_terms = spy
    codes = []
    for synthesis in range(3):
        meta = {k: v.detach().clone() for k, v in method.meta_generator.named_parameters()}
        started.clear()
        for _ in range(3):
            method.generator_step()
        codes.append(method._round["z"].detach().clone())
        targets = method._round["targets"]
        assert all(torch.equal(started[0][k], meta[k]) for k in meta), synthesis
        assert not torch.equal(started[1]["project.weight"], meta["project.weight"])
        assert [group["lr"] for group in method._round["optimizer"].param_groups] == [2e-3, 0.01]
        method.finish_synthesis()
    assert not torch.equal(codes[0], codes[1]) and not torch.equal(codes[1], codes[2])
    assert not torch.equal(targets, targets.sort().values)  # uniform, unsorted (no sort)


def test_fast_generator_terms_match_their_formulas(suite):
    method = build_method(suite, "fast10", batch_size=12)
    method.student.eval().requires_grad_(False)
    config, momentum = method.config, method.config.bn_statistics_momentum
    bn_inputs = _LayerInputs(method.teacher, nn.BatchNorm2d)
    bn_inputs.records.clear()
    method.generator_step()
    first = _statistics(bn_inputs.records)
    method.finish_synthesis()  # the average is now this synthesis's last step's statistics
    bn_inputs.records.clear()
    views = _Inputs(method.teacher)
    terms = method.generator_step()
    bn_inputs.remove()
    view, targets = views.seen[0], method._round["targets"]
    with torch.no_grad():
        teacher_logits, student_logits = method.teacher(view), method.student(view)
    probabilities = _softmax(teacher_logits)
    kept_means, kept_vars = [s[1] for s in first], [s[2] for s in first]
    expected = {
        "bn_statistics": config.bn_statistics_weight
        * _bn_loss_with_momentum(_statistics(bn_inputs.records), kept_means, kept_vars, momentum),
        "one_hot": config.one_hot_weight
        * float(-np.log(probabilities[np.arange(12), targets.numpy()]).mean()),
        "adversarial": -config.adversarial_weight * _masked_kl(student_logits, teacher_logits),
    }
    assert terms.keys() == expected.keys()
    for term, value in expected.items():
        assert terms[term].item() == pytest.approx(value, rel=1e-5), term


def test_the_adversarial_term_joins_in_the_last_warm_up_epoch_as_the_reference_counts(suite):
    method = build_method(suite, "fast10", warmup_epochs=3)
    method.student.eval().requires_grad_(False)
    active = []
    for epoch in range(4):
        active.append("adversarial" in method.generator_step())
        method.finish_synthesis()
        method.on_epoch_end(epoch + 1)
    assert active == [False, False, True, True]  # `ep >= warmup` after ep += 1


def test_the_first_layers_are_reset_once_at_the_start_of_their_epoch(suite):
    method = build_method(suite, "fast2", overrides={"first_layer_reset_epoch": 3})
    method.student.eval().requires_grad_(False)
    reset = []
    for epoch in range(5):
        for synthesis in range(2):
            meta = method.meta_generator
            before = {k: v.clone() for k, v in meta.state_dict().items()}
            method.generator_step()  # starts the synthesis; the meta-generator moves only after
            after = meta.state_dict()
            changed = {k for k in before if not torch.equal(before[k], after[k])}
            reset.append((epoch, synthesis, changed))
            method.generator_step()
            method.finish_synthesis()
        method.on_epoch_end(epoch + 1)
    first = {"project.weight", "project.bias", "body.0.weight", "body.0.bias"}
    assert [(e, s) for e, s, changed in reset if changed] == [(2, 0)]
    assert next(changed for e, s, changed in reset if changed) == first
    # The reset values: N(0, 0.02) weights (the BatchNorm's too) and zero biases; the rest kept.
    method = build_method(suite, "fast2", overrides={"first_layer_reset_epoch": 1})
    method.generator_step()
    meta = method.meta_generator
    for module in (meta.project, meta.body[0]):
        assert abs(module.weight.std().item() - 0.02) < 0.005
        assert torch.equal(module.bias.detach(), torch.zeros_like(module.bias))


def test_every_term_trains_the_copy_and_the_codes_never_the_meta_generator(suite):
    method = build_method(suite, "fast10")
    method.student.eval().requires_grad_(False)
    method.generator_step()
    z, targets = method._round["z"], method._round["targets"]
    terms = method.inversion_terms(method.generator(z), targets)
    assert terms.keys() == {"bn_statistics", "one_hot", "adversarial"}
    inputs = [z, method.generator.project.weight, *method.meta_generator.parameters()]
    for name, term in terms.items():
        gradients = torch.autograd.grad(term, inputs, allow_unused=True, retain_graph=True)
        assert gradients[0].abs().sum() > 0 and gradients[1].abs().sum() > 0, name
        assert all(g is None for g in gradients[2:]), name  # only through the summed step
