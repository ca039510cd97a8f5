"""CuDFKD: its curricula, its self-paced student loss and its generator objective, against values
computed here independently (the reference code's loops and NumPy formulas)."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from dfkd.curriculum import adversarial_weight, pace, self_paced_weights
from tests.support import build_method
from tests.test_methods import _bn_statistics_distance, _LayerInputs, _one_hot, _softmax


def _reference_increments(epochs: int, start: float, slope: float, begin: float, end: float):
    """alpha_adv during each epoch, by datafree_kd.py's own loop (0-based epochs)."""
    adv, during = start, []
    for epoch in range(epochs):
        during.append(adv)
        if int(epochs * begin) < epoch < int(epochs * end):
            adv += slope
    return during


def test_the_reference_schedule_adds_its_increment_after_each_epoch_strictly_inside_the_bounds():
    # The CIFAR-10 ResNet-34 script: 250 epochs, +0.5 from 0 between 0.25 and 0.75.
    expected = _reference_increments(250, 0.0, 0.5, 0.25, 0.75)
    actual = [
        adversarial_weight("reference_increment", e, 250, 0.0, 0.5, 0.25, 0.75)
        for e in range(1, 251)
    ]
    assert actual == pytest.approx(expected)
    assert actual[63] == 0.0 and actual[64] == 0.5  # epochs 64 and 65: after 0-based epoch 63
    assert actual[-1] == pytest.approx(62.0)  # 124 increments (methods.md §3.5)
    # The WRN40-2->WRN16-1 script starts at 0.5 with +0.05: 6.7 at the end.
    wrn = adversarial_weight("reference_increment", 250, 250, 0.5, 0.05, 0.25, 0.75)
    assert wrn == pytest.approx(6.7)


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(1, 0.0), (62, 0.0), (63, 31.5), (100, 50.0), (187, 93.5), (188, 93.5), (250, 93.5)],
)
def test_eq15_is_zero_then_alpha_tau_then_constant(epoch, expected):
    # N = 250, k_begin N = 62.5, k_end N = 187.5, alpha = 0.5.
    assert adversarial_weight("eq15", epoch, 250, 0.0, 0.5, 0.25, 0.75) == pytest.approx(expected)


@pytest.mark.parametrize(("epoch", "expected"), [(50, 0.0), (51, 25.5), (150, 75.0), (151, 75.0)])
def test_eq15_bounds_are_inclusive_where_they_fall_on_an_epoch(epoch, expected):
    # N = 200: k_begin N = 50 is still 0 (tau <= k_begin N); k_end N = 150 is still alpha tau.
    assert adversarial_weight("eq15", epoch, 200, 0.0, 0.5, 0.25, 0.75) == pytest.approx(expected)


def test_the_pace_grows_linearly_with_the_student_steps():
    assert pace(0, 2.0, 1e-4) == 2.0
    assert pace(100_000, 2.0, 1e-4) == pytest.approx(12.0)  # 250 epochs x 400 steps, CIFAR-10
    assert pace(160_000, 1.0, 2e-5) == pytest.approx(4.2)


LOSSES = torch.tensor([0.5, 1.9, 2.5, 10.0])


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("hard", [1.0, 1.0, 0.0, 0.0]),
        ("soft", [0.75, 0.05, 0.0, 0.0]),
        ("log", [(1 + math.exp(-2)) / (1 + math.exp(x - 2)) for x in (0.5, 1.9, 2.5, 10.0)]),
    ],
)
def test_self_paced_weights_of_each_form(form, expected):
    weights = self_paced_weights(LOSSES.clone().requires_grad_(True), 2.0, form)
    assert not weights.requires_grad
    assert weights.tolist() == pytest.approx(expected, abs=1e-6)


def test_logarithmic_weights_fall_from_about_one_for_easy_samples_to_zero_for_hard_ones():
    weights = self_paced_weights(torch.tensor([0.0, 2.0, 30.0]), 2.0, "log")
    assert weights[0] == pytest.approx(1.0, abs=1e-6)
    assert weights[1] == pytest.approx((1 + math.exp(-2)) / 2)
    assert weights[2] < 1e-10


@pytest.fixture
def cudfkd(suite):
    method = build_method(suite, "cudfkd", batch_size=8, epochs=10)
    method.student.train().requires_grad_(True)
    return method


def test_per_sample_and_per_batch_weighting(cudfkd):
    losses = LOSSES.clone().requires_grad_(True)
    lam = pace(3, cudfkd.config.pace_initial, cudfkd.config.pace_growth_per_step)
    v = [(1 + math.exp(-lam)) / (1 + math.exp(x - lam)) for x in LOSSES.tolist()]
    per_sample = cudfkd.self_paced_loss(losses, steps_done=3)
    assert per_sample.item() == pytest.approx(np.mean(np.multiply(v, LOSSES.tolist())), rel=1e-6)
    per_sample.backward()
    assert losses.grad.tolist() == pytest.approx([w / 4 for w in v], rel=1e-6)  # v is a constant

    cudfkd.config = replace(cudfkd.config, self_paced_weighting="per_batch")
    mean = float(LOSSES.mean())
    v_batch = (1 + math.exp(-lam)) / (1 + math.exp(mean - lam))
    assert cudfkd.self_paced_loss(LOSSES, steps_done=3).item() == pytest.approx(v_batch * mean)
    assert v_batch * mean != pytest.approx(np.mean(np.multiply(v, LOSSES.tolist())), rel=1e-3)

    cudfkd.config = replace(cudfkd.config, self_paced="none")
    assert cudfkd.self_paced_loss(LOSSES, steps_done=3).item() == pytest.approx(mean)


def _fixed_batch(method, seed: int = 11) -> torch.Tensor:
    torch.manual_seed(seed)
    size = method.context.image_size
    return 3 * torch.randn(method.context.batch_size, 3, size, size)


@pytest.mark.parametrize("loss_type", ["kl", "l1"])
def test_student_loss_is_the_self_paced_loss_of_the_step_at_its_pace(cudfkd, loss_type):
    images = _fixed_batch(cudfkd)
    cudfkd.sample = lambda batch_size: images
    with torch.no_grad():  # student_loss steps no optimizer: every call sees these logits
        teacher, student = cudfkd.teacher(images), cudfkd.student(images)
    t = 1.0  # at T=20 the KL of these near-uniform outputs is at float32 resolution
    if loss_type == "kl":
        p_t, p_s = _softmax(teacher, t), _softmax(student, t)
        per_sample = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1) * t**2
    else:
        per_sample = np.abs(student.double().numpy() - teacher.double().numpy()).mean(axis=1)
    lam = float(np.median(per_sample))  # the pace of the third step: the weights spread out
    growth = lam / 10
    cudfkd.config = replace(
        cudfkd.config,
        self_paced="soft",  # scale-free, unlike log on these small losses
        student_loss_type=loss_type,
        student_temperature=t,
        pace_initial=lam - 2 * growth,
        pace_growth_per_step=growth,
    )
    cudfkd.student_loss()
    cudfkd.student_loss()

    loss = cudfkd.student_loss()["kd"].item()

    v = (per_sample < lam) * (1 - per_sample / lam)
    assert v.min() == 0 and v.max() > 0
    assert cudfkd.student_steps_done == 3
    assert loss == pytest.approx(float((v * per_sample).mean()), rel=1e-4)


def _generator_terms(method, images: torch.Tensor):
    """The generator step's terms on a fixed batch, the networks' view of that batch, the BN
    inputs of the teacher on it, and how often the step ran the student."""
    method.student.eval().requires_grad_(False)
    method.generate = lambda batch_size: images.clone().requires_grad_(True)
    bn = _LayerInputs(method.teacher, nn.BatchNorm2d)
    with torch.no_grad():
        teacher_logits = method.teacher(images)
    bn.remove()
    with torch.no_grad():
        student_logits = method.student(images)
    calls = []
    hook = method.student.register_forward_hook(lambda *args: calls.append(1))
    try:
        terms = method.generator_step()
    finally:
        hook.remove()
    return terms, teacher_logits, student_logits, bn.records, len(calls)


class _PartlyAgreeing(nn.Module):
    """A stand-in student: the teacher's logits, moved to another class on every other row, so
    that the decision mask of the adversarial term is neither all ones nor all zeros."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = [teacher]  # not a submodule: its parameters stay the teacher's

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.teacher[0](images)
        rows = torch.arange(len(logits))
        chosen = logits.argmax(dim=1)  # even rows: the teacher's class, more confidently
        chosen[1::2] = (chosen[1::2] + 1) % logits.shape[1]  # odd rows: another class
        moved = torch.zeros_like(logits)
        moved[rows, chosen] = 5.0
        return logits + moved


@pytest.mark.parametrize("divergence", ["masked_kl", "clamped_js"])
def test_generator_terms_match_their_formulas_at_the_epochs_alpha(cudfkd, divergence):
    cudfkd.config = replace(cudfkd.config, adversarial_divergence=divergence)
    cudfkd.context = replace(cudfkd.context, student=_PartlyAgreeing(cudfkd.teacher))
    cudfkd.on_epoch_end(5)  # epoch 6 of 10: 6 <= k_end N = 7.5, so alpha = 0.5 x 6
    assert cudfkd.adversarial_weight() == pytest.approx(3.0)
    images = _fixed_batch(cudfkd, seed=4)
    terms, teacher, student, bn_records, student_calls = _generator_terms(cudfkd, images)
    config = cudfkd.config

    p_t, p_s = _softmax(teacher, 3.0), _softmax(student, 3.0)
    if divergence == "masked_kl":
        agree = teacher.argmax(dim=1).numpy() == student.argmax(dim=1).numpy()
        assert 0 < agree.sum() < len(agree)  # the mask matters in this case
        kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1) * 9.0
        adversarial = float((kl * agree).mean())
    else:
        m = np.clip((p_s + p_t) / 2, 0.01, 0.99)
        p, q = np.clip(p_s, 0.01, 0.99), np.clip(p_t, 0.01, 0.99)
        kl_m = lambda x: (m * (np.log(m) - np.log(x))).sum(axis=1).mean()  # noqa: E731
        adversarial = float(np.clip(0.5 * kl_m(p) + 0.5 * kl_m(q), 0.0, 1.0))
    mean = _softmax(teacher, config.class_entropy_temperature).mean(axis=0)
    expected = {
        "adversarial": -3.0 * adversarial,
        "bn_statistics": config.bn_statistics_weight * _bn_statistics_distance(bn_records),
        "one_hot": config.one_hot_weight * _one_hot(teacher),
        "class_entropy": config.class_entropy_weight * float((mean * np.log(mean)).sum()),
    }
    assert student_calls == 1
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_the_class_entropy_is_taken_at_its_temperature(cudfkd):
    images = _fixed_batch(cudfkd, seed=4)
    hot = _generator_terms(cudfkd, images)[0]["class_entropy"]
    cudfkd.config = replace(cudfkd.config, class_entropy_temperature=1.0)
    cold = _generator_terms(cudfkd, images)[0]["class_entropy"]
    assert hot.item() != pytest.approx(cold.item(), rel=1e-3)
    assert hot.item() == pytest.approx(-20 * math.log(10), rel=0.05)  # T=20: near uniform


def test_no_adversarial_term_and_no_student_pass_while_alpha_is_zero(cudfkd):
    assert cudfkd.adversarial_weight() == 0.0  # epoch 1 of 10 <= k_begin N = 2.5
    terms, *_, student_calls = _generator_terms(cudfkd, _fixed_batch(cudfkd))
    assert terms["adversarial"].item() == 0.0 and student_calls == 0


def test_the_curriculum_position_survives_a_resume(suite, cudfkd):
    cudfkd.student.eval().requires_grad_(False)
    cudfkd.generator_step()
    cudfkd.on_epoch_end(6)
    cudfkd.student.train().requires_grad_(True)
    for _ in range(5):
        cudfkd.student_loss()
    resumed = build_method(suite, "cudfkd", batch_size=8, epochs=10)
    resumed.student.load_state_dict(cudfkd.student.state_dict())
    resumed.load_state_dict(copy.deepcopy(cudfkd.state_dict()))
    assert resumed.epochs_finished == 6 and resumed.student_steps_done == 5
    assert resumed.adversarial_weight() == cudfkd.adversarial_weight() == pytest.approx(3.5)
    images = _fixed_batch(cudfkd)
    cudfkd.sample = resumed.sample = lambda batch_size: images
    resumed.student.train().requires_grad_(True)
    assert torch.equal(cudfkd.student_loss()["kd"], resumed.student_loss()["kd"])


def test_the_reference_increments_only_while_the_curriculum_is_on(suite):
    method = build_method(suite, "cudfkd_reference", batch_size=8, epochs=250)
    method.on_epoch_end(249)
    assert method.adversarial_weight() == pytest.approx(62.0)  # 124 increments of 0.5
    method.config = replace(method.config, self_paced="none")  # --curr_option none
    assert method.adversarial_weight() == 0.0  # datafree_kd.py keeps --adv 0
    method.config = replace(method.config, adversarial_schedule="eq15")
    assert method.adversarial_weight() == pytest.approx(93.5)  # Eq. 15 does not depend on v


def test_the_generator_starts_from_the_codes_normal_draw(suite):
    # ProbSynthesizer.__init__: reset_model(G); the paper says nothing.
    generator = build_method(suite, "cudfkd", batch_size=8).generator
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert abs(module.weight.std().item() - 0.02) < 0.004
            assert module.bias is None or not module.bias.any()
        if isinstance(module, nn.BatchNorm2d):
            assert abs(module.weight.mean().item() - 1) < 0.01 and not module.bias.any()


def test_a_synthesis_batch_of_its_own_for_the_generator_step(suite, cudfkd):
    cudfkd.config = replace(cudfkd.config, synthesis_batch_size=12)
    cudfkd.student.eval().requires_grad_(False)
    sizes = []
    hook = cudfkd.teacher.register_forward_pre_hook(lambda m, x: sizes.append(len(x[0])))
    cudfkd.generator_step()
    cudfkd.student.train().requires_grad_(True)
    cudfkd.student_loss()
    hook.remove()
    assert sizes == [12, 8]  # the generator step's batch, then the student's
