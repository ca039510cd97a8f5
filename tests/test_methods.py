"""The method contract, checked for every params/methods/*.yaml, and each method's fidelity.

Expected values are computed here, independently of dfkd.losses and dfkd.hooks: NumPy formulas
on logits and on layer inputs captured by this file's own hooks.
"""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from tests.support import build_method, method_names

# ---------------------------------------------------------------------------------------------
# Independent reference computations (float64 NumPy)


def _softmax(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    x = logits.detach().double().numpy() / temperature
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl_teacher_to_student(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    p_t, p_s = _softmax(teacher, t), _softmax(student, t)
    return float((p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean() * t**2)


def _one_hot(teacher: torch.Tensor) -> float:
    p = _softmax(teacher)
    return float(-np.log(p[np.arange(len(p)), p.argmax(axis=1)]).mean())


def _negative_entropy_of_mean(teacher: torch.Tensor, log_base: float) -> float:
    mean = _softmax(teacher).mean(axis=0)
    return float((mean * np.log(mean)).sum() / np.log(log_base))


class _LayerInputs:
    """Copies the input of every module of `kind` in forward order (and the module)."""

    def __init__(self, model: nn.Module, kind: type[nn.Module]) -> None:
        self.records: list[tuple[nn.Module, np.ndarray]] = []
        self.handles = [
            m.register_forward_pre_hook(self._keep) for m in model.modules() if isinstance(m, kind)
        ]

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.records.append((module, inputs[0].detach().double().numpy().copy()))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _bn_statistics_distance(records: list[tuple[nn.Module, np.ndarray]]) -> float:
    """sum over BN layers of ||var - running_var||_2 + ||mean - running_mean||_2 (CMI code)."""
    total = 0.0
    for module, x in records:
        per_channel = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)  # (C, N*H*W)
        mean, variance = per_channel.mean(axis=1), per_channel.var(axis=1)  # biased
        total += np.linalg.norm(variance - module.running_var.double().numpy())
        total += np.linalg.norm(mean - module.running_mean.double().numpy())
    return total


def _teacher_space(method, pixels: torch.Tensor) -> torch.Tensor:
    return pixels if method.generator.outputs_normalized else method.context.normalize(pixels)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BN running statistics included)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def _batch_norm_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


# ---------------------------------------------------------------------------------------------
# The contract, for every method


def _flat(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested state dict (optimizer states included), by its key path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state.detach().clone()}
    if isinstance(state, (dict, list, tuple)):
        items = state.items() if isinstance(state, dict) else enumerate(state)
        return {k: v for key, item in items for k, v in _flat(item, f"{prefix}/{key}").items()}
    return {}


def _same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


GENERATIVE = [name for name in method_names() if name not in ("adi",)]
# CuDFKD's student loss is self-paced, MAD's has two generators and bounds (their own tests);
# the others distil with plain KD.
PLAIN_KD = [name for name in method_names() if not name.startswith(("cudfkd", "mad"))]


@pytest.mark.parametrize("name", method_names())
def test_generator_step_updates_only_the_synthesis_side(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)  # what the loop does in the generator phase
    teacher_before, student_before = _state(method.teacher), _state(method.student)
    method.generator_step()
    synthesis_before = _flat(method.state_dict())

    terms = method.generator_step()

    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert all(not t.requires_grad for t in terms.values())
    assert _same(teacher_before, method.teacher), "the teacher (weights or BN statistics) changed"
    assert _same(student_before, method.student), "the student changed in a generator step"
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(p.grad is None for p in method.student.parameters())
    assert not _same_tensors(synthesis_before, _flat(method.state_dict()))


@pytest.mark.parametrize("name", GENERATIVE)
def test_generators_are_trained_in_train_mode(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    method.generator_step()  # CMI re-initialises its generator (not its statistics) here
    buffers = _batch_norm_buffers(method.generator)
    method.generator_step()
    moved = {k: not torch.equal(v, method.generator.state_dict()[k]) for k, v in buffers.items()}
    assert all(moved.values()), (
        f"the generator is trained in train mode (batch statistics): {moved}"
    )


@pytest.mark.parametrize("name", method_names())
def test_student_loss_trains_the_student_on_a_synthetic_batch(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    method.generator_step()
    method.finish_synthesis()  # what the loop does after a round's generator steps
    generator = getattr(method, "generator", torch.nn.Module())
    generator.zero_grad(set_to_none=True)  # the generator step's own gradients
    synthesis_before = _flat(method.state_dict())
    method.student.train().requires_grad_(True)
    teacher_before = _state(method.teacher)
    size = method.context.image_size
    images = method.sample(8)
    assert images.shape[1:] == (3, size, size) and not images.requires_grad
    terms = method.student_loss()
    loss = torch.stack(list(terms.values())).sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in method.student.parameters())
    assert all(p.grad is None for p in generator.parameters())
    assert _same(teacher_before, method.teacher), "the teacher changed in a student step"
    changed = [
        k for k, v in _flat(method.state_dict()).items()
        if "running" in k and not torch.equal(v, synthesis_before[k])
    ]  # fmt: skip
    assert not changed, f"sampling for the student moved BN statistics (train mode?): {changed}"


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
    assert _same_tensors(_flat(method.state_dict()), _flat(resumed.state_dict()))


@pytest.mark.parametrize("name", PLAIN_KD)
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_default_student_loss_is_kl_teacher_to_student_times_t_squared(suite, name, temperature):
    method = build_method(suite, name)
    method.config = replace(method.config, student_temperature=temperature)
    torch.manual_seed(11)
    size = method.context.image_size
    images = 3 * torch.randn(8, 3, size, size)  # contrast enough for a KL far from 0
    method.sample = lambda batch_size: images  # the batch under test, whatever the method samples
    method.student.train().requires_grad_(True)

    terms = method.student_loss()

    with torch.no_grad():
        teacher_logits, student_logits = method.teacher(images), method.student(images)
    expected = _kl_teacher_to_student(student_logits, teacher_logits, temperature)
    reversed_direction = _kl_teacher_to_student(teacher_logits, student_logits, temperature)
    assert reversed_direction != pytest.approx(expected, rel=1e-3)  # the case tells them apart
    assert terms.keys() == {"kd"}
    assert terms["kd"].item() == pytest.approx(expected, rel=1e-4), (
        f"the student loss is not KL(teacher || student) x T^2 at T={temperature}"
    )


# ---------------------------------------------------------------------------------------------
# Where the student's batches come from


@pytest.mark.parametrize("name", ["cudfkd", "dafl", "dfq"])
def test_sample_runs_the_generator_in_eval_mode_on_fresh_latent_codes(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    for _ in range(3):  # running statistics now differ from any one batch's statistics
        method.generator_step()
    generator = copy.deepcopy(method.generator)

    torch.manual_seed(5)
    images = method.sample(16)

    torch.manual_seed(5)
    z = torch.randn(16, method.config.latent_dim)
    with torch.no_grad():
        eval_mode = _teacher_space(method, generator.eval()(z))
        train_mode = _teacher_space(method, copy.deepcopy(generator).train()(z))
    assert not torch.allclose(eval_mode, train_mode, atol=1e-4)
    assert torch.allclose(images, eval_mode, rtol=0, atol=1e-6), (
        "sample() must run the generator in eval mode (running statistics) on N(0, 1) codes"
    )
    torch.manual_seed(5)
    assert not torch.equal(method.sample(16), method.sample(16))  # a fresh z per call


def test_original_dafl_trains_the_student_on_the_generator_steps_batch(suite):
    method = build_method(suite, "dafl_original")
    method.student.eval().requires_grad_(False)
    method.generator_step()
    before_step = copy.deepcopy(method.generator)  # the weights the next step generates with

    torch.manual_seed(4)
    method.generator_step()

    torch.manual_seed(4)
    z = torch.randn(method.context.batch_size, method.config.latent_dim)
    with torch.no_grad():
        expected = _teacher_space(method, before_step.train()(z))  # same z, pre-update, train BN
    assert torch.allclose(method.sample(method.context.batch_size), expected, rtol=0, atol=1e-6), (
        "dafl_original must train the student on the detached batch of the generator step just "
        "taken (same z, weights before the update, train-mode BN)"
    )
    method.student.train().requires_grad_(True)
    with torch.no_grad():
        teacher_logits, student_logits = method.teacher(expected), method.student(expected)
    assert method.student_loss()["kd"].item() == pytest.approx(
        _kl_teacher_to_student(student_logits, teacher_logits, 1.0), rel=1e-5
    )


# ---------------------------------------------------------------------------------------------
# Golden values of the generator objectives


def _generator_step_inputs(method, seed: int):
    """Runs one generator step; returns its terms and the teacher's and student's view of the
    batch it was computed on, recomputed from a copy of the generator taken before the step."""
    generator = copy.deepcopy(method.generator)
    torch.manual_seed(seed)
    terms = method.generator_step()
    torch.manual_seed(seed)
    z = torch.randn(method.context.batch_size, method.config.latent_dim)
    teacher_bn = _LayerInputs(method.teacher, nn.BatchNorm2d)
    teacher_head = _LayerInputs(method.teacher, nn.Linear)
    with torch.no_grad():
        images = _teacher_space(method, generator.train()(z))
        teacher_logits = method.teacher(images)
        student_logits = method.student(images)
    teacher_bn.remove()
    teacher_head.remove()
    features = torch.from_numpy(teacher_head.records[-1][1])  # the input of the linear head
    return terms, teacher_logits, student_logits, teacher_bn.records, features


def test_dfq_generator_terms_match_their_formulas(suite):
    method = build_method(suite, "dfq")
    method.student.eval().requires_grad_(False)
    config = method.config
    terms, teacher, student, bn_inputs, _ = _generator_step_inputs(method, seed=3)
    expected = {
        "adversarial": -config.adversarial_weight * _kl_teacher_to_student(student, teacher, 1.0),
        "bn_statistics": config.bn_statistics_weight * _bn_statistics_distance(bn_inputs),
        "one_hot": config.one_hot_weight * _one_hot(teacher),
        "class_balance": config.class_balance_weight * _negative_entropy_of_mean(teacher, np.e),
    }
    assert len(bn_inputs) == 3  # every BatchNorm2d of cnn_small
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5), name


@pytest.mark.parametrize("name", ["dafl", "dafl_original"])
def test_dafl_generator_terms_match_their_formulas(suite, name):
    method = build_method(suite, name)
    method.student.eval().requires_grad_(False)
    config = method.config
    terms, teacher, _, _, features = _generator_step_inputs(method, seed=3)
    expected = {
        "one_hot": config.one_hot_weight * _one_hot(teacher),
        "information_entropy": config.information_entropy_weight
        * _negative_entropy_of_mean(teacher, config.entropy_log_base),
        "activation": -config.activation_weight * float(features.abs().mean()),
    }
    assert terms.keys() == expected.keys()
    for term, value in expected.items():
        assert terms[term].item() == pytest.approx(value, rel=1e-5), term
