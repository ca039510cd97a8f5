"""MAD: its generators (Tables 8-9), its bounds, the EMA generator and Eqs. 10-11, against values
computed here by hand or with NumPy."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from dfkd.data import dataset_info
from dfkd.errors import ConfigError
from dfkd.generators import build_generator
from dfkd.methods.mad import ema_update, hinge, norm_regularizer
from tests.support import build_method
from tests.test_methods import _bn_statistics_distance, _LayerInputs, _softmax

# Parameter counts by hand from Tables 8-9 (d_z 256, ngf 32): weights + biases of every layer.
CONV_BLOCKS_A = (
    (256 * 128 * 9 + 128) + 2 * 128 + (128 * 128 * 9 + 128) + 2 * 128  # ConvBlockX(256, 128)
    + (128 * 64 * 9 + 64) + 2 * 64 + (64 * 64 * 9 + 64) + 2 * 64  # ConvBlockX(128, 64)
    + (64 * 32 * 9 + 32) + 2 * 32 + (32 * 32 * 9 + 32) + 2 * 32  # ConvBlockX(64, 32)
    + 2 * 256 + (32 * 3 + 3)  # the BN after the reshape, the 1x1 conv to RGB
)  # fmt: skip


def _resnet_block(c_in: int, c_out: int) -> int:
    shortcut = c_in * c_out + c_out if c_in != c_out else 0
    return (
        (c_in * c_out * 9 + c_out) + 2 * c_out + (c_out * c_out * 9 + c_out) + 2 * c_out + shortcut
    )


TABLE_8C = (
    (256 * 8192 + 8192)
    + sum(
        _resnet_block(*c)
        for c in [(512, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 16), (16, 16)]
    )
    + (16 * 3 * 9 + 3)
)


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("mad_uncond", 32, 256 * 4096 + 4096 + CONV_BLOCKS_A),  # Table 8(a)
        ("mad_sum", 32, 256 * 4096 + 4096 + CONV_BLOCKS_A),  # e_y shares W (the Embedding is E)
        ("mad_cat", 32, 512 * 4096 + 4096 + CONV_BLOCKS_A),  # W z + U e_y: U adds 256 x 4096
        ("mad_uncond", 64, 256 * 16384 + 16384 + CONV_BLOCKS_A),  # Table 8(b)
        ("mad_uncond", 256, TABLE_8C),  # Table 8(c)
    ],
)
def test_generator_parameter_counts_and_shapes(name, size, expected):
    generator = build_generator(name, 256, 32, size)
    assert sum(p.numel() for p in generator.parameters()) == expected
    embedding = None if name == "mad_uncond" else torch.randn(2, 256)
    u = generator.logits(torch.randn(2, 256), embedding)
    assert u.shape == (2, 3, size, size)
    assert generator(torch.randn(2, 256), embedding).shape == u.shape


def test_the_three_first_layers():
    torch.manual_seed(0)
    z, e = torch.randn(4, 256), torch.randn(4, 256)
    summed = build_generator("mad_sum", 256, 32, 32)
    uncond = build_generator("mad_uncond", 256, 32, 32)
    uncond.load_state_dict(summed.state_dict())
    for g in (summed, uncond):
        g.eval()
    torch.testing.assert_close(summed.logits(z, e), uncond.logits(z + e))  # W (z + e_y) + b
    cat = build_generator("mad_cat", 256, 32, 32).eval()
    w = cat.project.weight
    with torch.no_grad():
        h = z @ w[:, :256].T + e @ w[:, 256:].T + cat.project.bias  # W z + U e_y + b
        body = cat.body(h.view(4, 256, 4, 4))
    torch.testing.assert_close(cat.logits(z, e), body)
    with pytest.raises(ValueError, match="needs class embeddings"):
        summed.logits(z)


def test_hinge_and_norm_regularizer_golden_values():
    values = torch.tensor([[-25.0, 3.0], [21.0, -19.5]])
    assert hinge(values, 20.0).item() == pytest.approx((5 + 0 + 1 + 0) / 4)
    embeddings = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])  # norms 3 and 1
    # bound gamma sqrt(d_e) = 1.1 x 2 = 2.2: (3 - 2.2 + 0) / 2
    assert norm_regularizer(embeddings, 1.1).item() == pytest.approx(0.4)


def _module(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    module.train()(torch.randn(8, 3) * (seed + 1))  # moves the running statistics
    return module


@pytest.mark.parametrize("buffers", ["average", "copy"])
def test_ema_update_weights_the_old_average(buffers):
    average, current = _module(0), _module(1)
    old, new = copy.deepcopy(average.state_dict()), current.state_dict()
    ema_update(average, current, 0.95, buffers)
    state = average.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias"):
        torch.testing.assert_close(state[key], 0.95 * old[key] + 0.05 * new[key])
    for key in ("1.running_mean", "1.running_var"):
        expected = 0.95 * old[key] + 0.05 * new[key] if buffers == "average" else new[key]
        torch.testing.assert_close(state[key], expected)
    assert state["1.num_batches_tracked"] == new["1.num_batches_tracked"]


@pytest.fixture
def mad(suite):
    method = build_method(suite, "mad", batch_size=8)
    method.student.eval().requires_grad_(False)
    return method


def _same(first: nn.Module, second: nn.Module) -> bool:
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    return all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("placement", ["after_generator_steps", "every_generator_step"])
def test_the_ema_is_updated_where_its_placement_says(mad, placement):
    mad.config = replace(mad.config, ema_placement=placement)
    before = copy.deepcopy(mad.ema_generator)
    mad.generator_step()
    assert _same(before, mad.ema_generator) == (placement == "after_generator_steps")
    after_steps = copy.deepcopy(mad.ema_generator)
    mad.finish_synthesis()  # the loop calls it after the round's generator steps
    assert _same(after_steps, mad.ema_generator) == (placement == "every_generator_step")
    expected = copy.deepcopy(after_steps)
    if placement == "after_generator_steps":
        ema_update(expected, mad.generator, 0.95, "average")
    assert _same(expected, mad.ema_generator)


def test_the_student_learns_from_both_generators(mad):
    for _ in range(3):  # G moves away from G~
        mad.generator_step()
    mad.finish_synthesis()
    assert not _same(mad.generator, mad.ema_generator)
    mad.student.train().requires_grad_(True)
    # delta small enough that the bound is active on this untrained student's logits
    mad.config = replace(
        mad.config, generator_sample_weight=0.5, ema_sample_weight=2.0, logit_bound=0.02
    )
    weights = {"generator": 0.5, "ema": 2.0}  # lambda_0, lambda_1 scale KD and the bound
    generator, ema = copy.deepcopy(mad.generator).eval(), copy.deepcopy(mad.ema_generator).eval()

    calls = {"generator": 0, "ema": 0}
    hooks = [
        mad.generator.register_forward_hook(
            lambda *a: calls.__setitem__("generator", calls["generator"] + 1)
        ),
        mad.ema_generator.register_forward_hook(
            lambda *a: calls.__setitem__("ema", calls["ema"] + 1)
        ),
    ]
    torch.manual_seed(3)
    terms = mad.student_loss()
    for hook in hooks:
        hook.remove()
    assert calls == {"generator": 1, "ema": 1}  # one fresh batch from each, every student step

    torch.manual_seed(3)
    expected = {}
    for name, network in (("generator", generator), ("ema", ema)):
        z = torch.randn(8, 256)
        torch.randint(10, (8,))  # y, unused by an unconditional generator
        with torch.no_grad():
            images = mad.context.normalize(network(z))
            teacher, student = mad.teacher(images), mad.student(images)
        p_t, p_s = _softmax(teacher), _softmax(student)
        kd = float((p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean())
        expected[f"kd_{name}"] = weights[name] * kd
        excess = np.clip(np.abs(student.double().numpy()) - 0.02, 0, None).mean()
        assert excess > 0
        expected[f"logit_bound_{name}"] = weights[name] * 0.01 * float(excess)
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-9), name


def test_eq11_terms_on_a_hand_built_case(suite):
    overrides = {"generator": "mad_sum", "nll_weight": 0.3, "norm_reg_weight": 0.5}
    method = build_method(suite, "mad", batch_size=8, overrides=overrides)
    method.student.eval().requires_grad_(False)
    torch.manual_seed(2)
    u = (torch.randn(8, 3, 16, 16) * 15).requires_grad_(True)  # some |u| beyond nu = 20
    method.generator.logits = lambda z, e=None: u
    with torch.no_grad():
        method.embeddings.weight.mul_(1.5)  # norms about 24, above gamma sqrt(256) = 17.6
    torch.manual_seed(9)
    torch.randn(8, 256)  # z, which the step draws before y
    y = torch.randint(10, (8,))
    images = method.context.normalize(torch.sigmoid(u.detach()))
    bn = _LayerInputs(method.teacher, nn.BatchNorm2d)
    with torch.no_grad():
        teacher = method.teacher(images)
    bn.remove()
    with torch.no_grad():
        student = method.student(images)
        norms = torch.linalg.vector_norm(method.embeddings(y), dim=1).numpy()
    torch.manual_seed(9)
    terms = method.generator_step()

    p_t, p_s = _softmax(teacher), _softmax(student)
    excess = lambda v, b: float(np.clip(np.abs(v) - b, 0, None).mean())  # noqa: E731
    expected = {
        "adversarial": -float((p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean()),
        "teacher_logit_bound": 0.1 * excess(teacher.double().numpy(), 20.0),
        "generator_logit_bound": 0.1 * excess(u.detach().double().numpy(), 20.0),
        "bn_statistics": _bn_statistics_distance(bn.records),
        "nll": 0.3 * float(-np.log(p_t[np.arange(8), y.numpy()]).mean()),
        "norm_reg": 0.5 * float(np.clip(norms - 1.1 * 16, 0, None).mean()),
    }
    assert expected["generator_logit_bound"] > 0 and expected["norm_reg"] > 0
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-7), name


def test_an_unconditional_generator_refuses_class_terms(suite):
    from dfkd.methods.mad import MADConfig
    from dfkd.schema import from_dict

    _, hyperparameters = suite.method_settings("mad", "digits", "cnn_small-cnn_tiny")
    with pytest.raises(ConfigError, match="unconditional generator"):
        from_dict(MADConfig, {**hyperparameters, "nll_weight": 0.1}, "mad")
    sum_config = from_dict(MADConfig, {**hyperparameters, "generator": "mad_sum",
                                        "nll_weight": 0.1}, "mad")  # fmt: skip
    assert sum_config.nll_weight == 0.1


def test_a_conditional_generator_trains_its_class_embeddings_which_both_generators_read(suite):
    method = build_method(
        suite, "mad", batch_size=8, overrides={"generator": "mad_sum", "nll_weight": 0.1}
    )
    method.student.eval().requires_grad_(False)
    before = method.embeddings.weight.detach().clone()
    terms = method.generator_step()
    assert {"nll", "norm_reg"} <= terms.keys()
    assert not torch.equal(before, method.embeddings.weight)  # E is optimised with G (Eq. 11)
    method.finish_synthesis()
    seen = []
    hook = method.ema_generator.project.register_forward_pre_hook(lambda m, x: seen.append(x[0]))
    torch.manual_seed(1)
    method.student.train().requires_grad_(True)
    method.student_loss()
    hook.remove()
    torch.manual_seed(1)
    torch.randn(8, 256), torch.randint(10, (8,))  # the draw for G's batch
    z, y = torch.randn(8, 256), torch.randint(10, (8,))
    with torch.no_grad():
        torch.testing.assert_close(seen[0], z + method.embeddings(y))  # G~ reads the live E


def test_an_unconditional_generator_has_fixed_zero_embeddings(mad):
    assert not mad.embeddings.weight.requires_grad
    assert torch.count_nonzero(mad.embeddings.weight) == 0
    terms = mad.generator_step()
    assert "nll" not in terms and torch.count_nonzero(mad.embeddings.weight) == 0


def test_the_ema_generator_and_the_embeddings_survive_a_resume(suite):
    method = build_method(
        suite, "mad", batch_size=8, overrides={"generator": "mad_sum", "nll_weight": 0.1}
    )
    method.student.eval().requires_grad_(False)
    for _ in range(2):
        method.generator_step()
        method.finish_synthesis()
    resumed = build_method(suite, "mad", batch_size=8, seed=5,
                           overrides={"generator": "mad_sum", "nll_weight": 0.1})  # fmt: skip
    assert not _same(method.ema_generator, resumed.ema_generator)
    resumed.load_state_dict(copy.deepcopy(method.state_dict()))
    assert _same(method.ema_generator, resumed.ema_generator)
    assert torch.equal(method.embeddings.weight, resumed.embeddings.weight)


@pytest.mark.parametrize("objective", ["without_adversarial", "full"])
def test_pretraining_steps_g_and_e_on_its_objective_then_g_tilde_is_a_copy_of_g(suite, objective):
    overrides = {"generator": "mad_sum", "nll_weight": 0.1, "generator_pretraining_steps": 4,
                 "pretraining_objective": objective}  # fmt: skip
    method = build_method(suite, "mad", batch_size=8, overrides=overrides)
    method.student.eval().requires_grad_(False)
    before = copy.deepcopy(method.generator)
    embeddings = method.embeddings.weight.detach().clone()
    student_calls = []
    hook = method.student.register_forward_hook(lambda *a: student_calls.append(1))
    method.pretrain()
    hook.remove()
    assert len(student_calls) == (4 if objective == "full" else 0)  # -lambda_2 KD only in full
    state = method.generator_optimizer.state_dict()["state"]
    assert {int(s["step"]) for s in state.values()} == {4}  # 4 Adam steps of G and E
    assert not _same(before, method.generator)
    assert not torch.equal(embeddings, method.embeddings.weight)
    assert _same(method.generator, method.ema_generator)  # copied, not averaged (D-2)


def test_without_pretraining_steps_pretrain_changes_nothing(mad):
    assert mad.config.generator_pretraining_steps == 0  # Table 6 pg "No" on the digits row
    before = copy.deepcopy(mad.generator)
    mad.pretrain()
    assert _same(before, mad.generator) and _same(before, mad.ema_generator)
    assert not mad.generator_optimizer.state_dict()["state"]


def test_a_batch_norm_free_teacher_leaves_out_the_bn_statistics_term(suite):
    from dfkd.methods.base import method_context
    from dfkd.methods.mad import MAD, MADConfig
    from dfkd.models import build_model
    from dfkd.runtime import memory_format
    from dfkd.schema import from_dict

    _, hyperparameters = suite.method_settings("mad", "imagenet", "alexnet-alexnet")
    config = from_dict(MADConfig, {**hyperparameters, "generator_base_channels": 2,
                                   "generator_pretraining_steps": 1}, "mad")  # fmt: skip
    assert config.bn_statistics_weight == 1.0  # Table 7's lambda_5, vacuous here (I-5)
    torch.manual_seed(0)
    teacher = build_model("alexnet", 5).eval().requires_grad_(False)
    cpu = torch.device("cpu")
    context = method_context(dataset_info("imagenet"), teacher, build_model("alexnet", 5), 2,
                             1, cpu, memory_format(cpu))  # fmt: skip
    method = MAD(config, replace(context, num_classes=5))
    method.student.eval().requires_grad_(False)
    method.pretrain()
    terms = method.generator_step()
    assert "bn_statistics" not in terms
    assert {"adversarial", "nll", "norm_reg", "teacher_logit_bound"} <= terms.keys()
