"""The method contract, checked for every params/methods/*.yaml, plus each method's loss terms."""

import copy

import pytest
import torch

from dfkd.hooks import BatchNormInputs
from dfkd.losses import (
    activation_loss,
    batch_norm_statistics_loss,
    class_balance_loss,
    kl_divergence,
    one_hot_loss,
)
from tests.support import build_method, method_names


def _parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("name", method_names())
def test_generator_step_updates_only_the_synthesis_side(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)  # what the loop does in the generator phase
    teacher_before, student_before = _parameters(method.teacher), _parameters(method.student)
    generator_before = _parameters(method.generator)

    terms = method.generator_step()

    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert all(not t.requires_grad for t in terms.values())
    assert _same(teacher_before, method.teacher) and _same(student_before, method.student)
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(p.grad is None for p in method.student.parameters())
    assert not _same(generator_before, method.generator)


@pytest.mark.parametrize("name", method_names())
def test_student_loss_trains_the_student_on_a_synthetic_batch(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    method.generator_step()
    method.generator.zero_grad(set_to_none=True)
    method.student.train().requires_grad_(True)
    images = method.sample(8)
    assert images.shape == (8, 3, 16, 16) and not images.requires_grad
    terms = method.student_loss()
    loss = torch.stack(list(terms.values())).sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in method.student.parameters())
    assert all(p.grad is None for p in method.generator.parameters())


@pytest.mark.parametrize("name", method_names())
def test_state_dict_resumes_the_method_exactly(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    for _ in range(2):
        method.generator_step()
    resumed = build_method(suite, name, seed=0)
    resumed.context.student.load_state_dict(method.student.state_dict())
    resumed.load_state_dict(copy.deepcopy(method.state_dict()))
    resumed.student.eval().requires_grad_(False)

    torch.manual_seed(7)
    expected = method.generator_step()
    torch.manual_seed(7)
    actual = resumed.generator_step()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            method.generator.state_dict().values(),
            resumed.generator.state_dict().values(),
            strict=True,
        )
    )


def test_dfq_generator_terms_are_the_weighted_loss_functions(suite):
    method = build_method(suite, "dfq")
    method.student.eval().requires_grad_(False)
    config = method.config
    generator_copy = copy.deepcopy(method.generator)
    capture = BatchNormInputs(method.teacher)

    torch.manual_seed(3)
    terms = method.generator_step()

    torch.manual_seed(3)
    z = torch.randn(8, config.latent_dim)
    images = method.context.normalize(generator_copy.train()(z))
    with torch.no_grad(), capture.recording() as statistics:
        teacher_logits = method.teacher(images)
        student_logits = method.student(images)
    expected = {
        "adversarial": -config.adversarial_weight
        * kl_divergence(student_logits, teacher_logits, 1.0),
        "bn_statistics": config.bn_statistics_weight
        * batch_norm_statistics_loss(
            statistics.means,
            statistics.variances,
            statistics.running_means,
            statistics.running_variances,
        ),
        "one_hot": config.one_hot_weight * one_hot_loss(teacher_logits),
        "class_balance": config.class_balance_weight * class_balance_loss(teacher_logits),
    }
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5), name


@pytest.mark.parametrize("name", ["dafl", "dafl_original"])
def test_dafl_generator_terms_are_the_weighted_loss_functions(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    config = method.config
    generator_copy = copy.deepcopy(method.generator)

    torch.manual_seed(3)
    terms = method.generator_step()

    torch.manual_seed(3)
    generated = generator_copy.train()(torch.randn(8, config.latent_dim))
    images = generated if generator_copy.outputs_normalized else method.context.normalize(generated)
    with torch.no_grad():
        teacher_logits, features = method.teacher.forward_with_features(images)
    expected = {
        "one_hot": config.one_hot_weight * one_hot_loss(teacher_logits),
        "information_entropy": config.information_entropy_weight
        * class_balance_loss(teacher_logits, config.entropy_log_base),
        "activation": config.activation_weight * activation_loss(features),
    }
    assert terms.keys() == expected.keys()
    for term, value in expected.items():
        assert terms[term].item() == pytest.approx(value.item(), rel=1e-5), term


def test_original_dafl_trains_the_student_on_the_generator_steps_batch(suite):
    method = build_method(suite, "dafl_original")
    method.student.eval().requires_grad_(False)
    torch.manual_seed(4)
    method.generator_step()
    torch.manual_seed(4)
    # The batch of the step: same z, generator weights before the update, train-mode BN.
    assert method.sample(8) is method.sample(8)
    fresh = build_method(suite, "dafl")
    fresh.student.eval().requires_grad_(False)
    fresh.generator_step()
    assert fresh.sample(8) is not fresh.sample(8)
