"""NAYER (dfkd/methods/nayer.py) and the label embeddings it reads (dfkd/label_embeddings.py).

Expected values are computed here, independently: NumPy formulas on the inputs the teacher's
layers saw, captured by this file's own hooks.
"""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from dfkd.errors import CheckpointError
from dfkd.label_embeddings import (
    STAND_IN,
    load_label_embeddings,
    random_orthogonal,
    read_embedding_file,
)
from dfkd.synthesis.pool import to_uint8_truncated
from tests.support import build_method
from tests.test_methods import _LayerInputs, _softmax

# ---------------------------------------------------------------------------------------------
# Independent reference computations (float64 NumPy)


def _statistics(records):
    """Per BN layer: (module, mean, biased variance) of its input over (N, H, W)."""
    result = []
    for module, x in records:
        per_channel = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
        result.append((module, per_channel.mean(axis=1), per_channel.var(axis=1)))
    return result


def _bn_loss_with_momentum(now, kept_means, kept_variances, momentum):
    total = 0.0
    for (module, mean, variance), kept_mean, kept_variance in zip(
        now, kept_means, kept_variances, strict=True
    ):
        blended_variance = (1 - momentum) * variance + momentum * kept_variance
        blended_mean = (1 - momentum) * mean + momentum * kept_mean
        total += np.linalg.norm(module.running_var.double().numpy() - blended_variance)
        total += np.linalg.norm(module.running_mean.double().numpy() - blended_mean)
    return total


def _masked_kl(student: torch.Tensor, teacher: torch.Tensor) -> float:
    p_t, p_s = _softmax(teacher), _softmax(student)
    per_sample = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1)
    agree = student.argmax(1).numpy() == teacher.argmax(1).numpy()
    return float((per_sample * agree).mean())


class _Inputs:
    """The input of every forward of `model`, in order."""

    def __init__(self, model: nn.Module) -> None:
        self.seen: list[torch.Tensor] = []
        self.handle = model.register_forward_pre_hook(
            lambda module, inputs: self.seen.append(inputs[0].detach().clone())
        )


def _synthesis(method, steps: int) -> None:
    for _ in range(steps):
        method.generator_step()
    method.finish_synthesis()


# ---------------------------------------------------------------------------------------------
# The objective


def test_nayer_generator_terms_match_their_formulas_with_the_statistics_momentum(suite):
    method = build_method(suite, "nayer", batch_size=12)
    method.student.eval().requires_grad_(False)
    config, momentum = method.config, method.config.bn_statistics_momentum
    bn_inputs = _LayerInputs(method.teacher, nn.BatchNorm2d)
    last = []
    for _ in range(2):  # two syntheses: the moving average starts, then moves
        for _ in range(2):
            bn_inputs.records.clear()
            method.generator_step()
        last.append(_statistics(bn_inputs.records))
        method.finish_synthesis()
    kept_means = [momentum * a[1] + (1 - momentum) * b[1] for a, b in zip(*last, strict=True)]
    kept_vars = [momentum * a[2] + (1 - momentum) * b[2] for a, b in zip(*last, strict=True)]

    bn_inputs.records.clear()
    views = _Inputs(method.teacher)
    terms = method.generator_step()
    bn_inputs.remove()
    view, targets = views.seen[0], method._round["targets"]
    with torch.no_grad():
        teacher_logits, student_logits = method.teacher(view), method.student(view)
    probabilities = _softmax(teacher_logits)
    expected = {
        "bn_statistics": config.bn_statistics_weight
        * _bn_loss_with_momentum(_statistics(bn_inputs.records), kept_means, kept_vars, momentum),
        "one_hot": config.one_hot_weight
        * float(-np.log(probabilities[np.arange(12), targets.numpy()]).mean()),
        "adversarial": -config.adversarial_weight * _masked_kl(student_logits, teacher_logits),
    }
    assert len(bn_inputs.records) == 3  # every BatchNorm2d of cnn_small
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5), name
    assert expected["adversarial"] != 0  # some samples agree, so the mask was exercised


def test_the_adversarial_term_and_the_students_forward_wait_for_the_end_of_the_warm_up(suite):
    method = build_method(suite, "nayer", warmup_epochs=2)
    method.student.eval().requires_grad_(False)
    student_inputs = _Inputs(method.student)
    for epoch in range(3):
        terms = method.generator_step()
        method.finish_synthesis()
        method.on_epoch_end(epoch + 1)
        warm = epoch < 2
        assert ("adversarial" in terms) is not warm, epoch
        assert len(student_inputs.seen) == (0 if warm else 1), epoch


def test_targets_are_the_classes_in_order_then_a_uniform_remainder(suite):
    method = build_method(suite, "nayer", batch_size=23)
    method.generator_step()
    targets = method._round["targets"]
    assert torch.equal(targets[:20], torch.arange(10).repeat(2))
    assert len(targets) == 23 and ((targets[20:] >= 0) & (targets[20:] < 10)).all()
    assert len(method.generator.noisy_layers) == 3  # ceil(23 / 10), the last for 3 samples


def test_the_generator_sends_each_block_of_classes_through_its_own_noisy_layer(suite):
    method = build_method(suite, "nayer", batch_size=23)
    generator = method.generator.train()
    torch.manual_seed(3)
    embeddings = torch.randn(23, method.embeddings.shape[1])
    norm = generator.embedding_norm
    normalised = (embeddings - embeddings.mean(0)) / torch.sqrt(
        embeddings.var(0, unbiased=False) + norm.eps
    ) * norm.weight + norm.bias  # BatchNorm1d in train mode, written out
    layers = [generator.noisy_layers[i // 10] for i in range(23)]
    codes = torch.stack(
        [layer.weight @ normalised[i] + layer.bias for i, layer in enumerate(layers)]
    )
    with torch.no_grad():
        expected = generator.body(codes)
        actual = generator(embeddings)
    assert torch.allclose(actual, expected, atol=1e-5)


def test_the_kept_batch_is_the_generated_batch_of_the_lowest_loss(suite):
    method = build_method(suite, "nayer", overrides={"generator_learning_rate": 0.2})
    method.student.eval().requires_grad_(False)
    seen = []
    original = method.inversion_terms

    def spy(pixels, targets):
        terms = original(pixels, targets)
        seen.append(
            (pixels.detach().clone(), float(torch.stack(list(terms.values())).sum().detach()))
        )
        return terms

    method.inversion_terms = spy
    lowest_not_last = 0
    for synthesis in range(4):
        seen.clear()
        _synthesis(method, 6)
        best = int(np.argmin([loss for _, loss in seen]))
        lowest_not_last += best != 5
        kept = method.pool.images[-8:]
        assert len(method.pool) == 8 * (synthesis + 1)  # one batch per synthesis
        assert torch.equal(kept, to_uint8_truncated(seen[best][0])), synthesis
    assert lowest_not_last  # the case tells "lowest" from "last" apart


# ---------------------------------------------------------------------------------------------
# Noisy layers every synthesis, a new generator on schedule


def test_noisy_layers_are_redrawn_every_synthesis_and_the_rest_is_kept(suite):
    method = build_method(suite, "nayer")
    method.student.eval().requires_grad_(False)
    _synthesis(method, 3)
    for _ in range(3):  # later syntheses of the same epoch: no rebuild
        generator = method.generator
        trained = {k: v.clone() for k, v in generator.state_dict().items()}
        method._start_round()
        assert method.generator is generator
        for index, layer in enumerate(generator.noisy_layers):
            weight = layer.weight.detach()
            assert not torch.equal(weight, trained[f"noisy_layers.{index}.weight"])
            assert abs(weight.std().item() - 1) < 0.05 and abs(weight.mean().item()) < 0.05
            assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))
        for key, value in generator.state_dict().items():
            if not key.startswith("noisy_layers."):
                assert torch.equal(value, trained[key]), key
        _synthesis(method, 3)


@pytest.mark.parametrize(("warmup", "lifetime"), [(3, 4), (20, 10)])
def test_the_generator_is_rebuilt_at_the_epochs_the_reference_rebuilds_it(suite, warmup, lifetime):
    method = build_method(
        suite, "nayer", warmup_epochs=warmup,
        overrides={"generator_lifetime_epochs": lifetime, "adversarial_weight": 0.0},
    )  # fmt: skip
    rebuilt = []
    for epoch in range(24):
        before = method.generator
        trained = {k: v.clone() for k, v in before.state_dict().items()}
        method._start_round()
        new = method.generator is not before
        rebuilt.append(new)
        fresh = method.generator.state_dict()
        if new:  # PyTorch's default initialisation: BN statistics at 0 and 1, new weights
            assert torch.equal(fresh["body.body.0.running_mean"], torch.zeros(32))
            assert not torch.equal(fresh["body.project.weight"], trained["body.project.weight"])
        method._round = None
        _synthesis(method, 1)
        method.generator_step()  # a second synthesis of the epoch never rebuilds
        assert not rebuilt[-1] or method.generator is not before
        method.finish_synthesis()
        method.on_epoch_end(epoch + 1)
    expected = [(k - warmup) % lifetime == 0 or k % lifetime == 0 for k in range(24)]
    assert rebuilt == expected


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_student_is_in_train_mode_after_an_epochs_first_synthesis_only_as_the_reference(
    suite, mode
):
    method = build_method(suite, "nayer", overrides={"later_syntheses_student_mode": mode})
    student = method.student.eval().requires_grad_(False)
    modes = []
    student.register_forward_pre_hook(lambda m, x: modes.append(m.training))
    for epoch in range(2):
        for synthesis in range(3):
            before = {k: v.clone() for k, v in student.state_dict().items()}
            modes.clear()
            _synthesis(method, 2)  # the adversarial term's two student passes
            moved = any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
            expected = mode == "train" and synthesis > 0
            assert modes == [expected] * 2 and moved == expected, (epoch, synthesis)
            assert not student.training  # handed back to the loop frozen
        method.on_epoch_end(epoch + 1)


# ---------------------------------------------------------------------------------------------
# Label embeddings


def test_the_stand_in_is_orthogonal_fixed_and_of_unit_scale():
    embeddings = random_orthogonal(10)
    assert embeddings.shape == (10, 512) and embeddings.dtype == torch.float32
    gram = embeddings.double() @ embeddings.double().T
    assert torch.allclose(gram, 512 * torch.eye(10, dtype=torch.float64), atol=1e-3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert torch.equal(random_orthogonal(10), embeddings)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG untouched
    with pytest.raises(ValueError, match="cannot have orthogonal"):
        random_orthogonal(513)


def _pickled(path, tensor):
    with path.open("wb") as handle:  # as NAYER's label_embedding.py writes its files
        pickle.dump(tensor, handle)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pinned_embedding_file_is_read_as_float32_and_a_wrong_pin_refused(tmp_path):
    from dfkd.config.settings import LabelEmbeddingsConfig

    tensor = torch.randn(10, 512).half()
    path = tmp_path / "cifar10_le.pickle"
    digest = _pickled(path, tensor)
    config = LabelEmbeddingsConfig("clip_vit_b32", str(path), digest, "test")
    loaded = load_label_embeddings(config, 10)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, tensor.float())
    with pytest.raises(CheckpointError, match=f"has SHA-256 {digest}, not the 0+ pinned"):
        load_label_embeddings(LabelEmbeddingsConfig("x", str(path), "0" * 64, "test"), 10)
    with pytest.raises(CheckpointError, match=f"has SHA-256 {digest}; compare it"):
        load_label_embeddings(LabelEmbeddingsConfig("x", str(path), None, "test"), 10)
    with pytest.raises(CheckpointError, match="label embeddings not found"):
        load_label_embeddings(LabelEmbeddingsConfig("x", str(tmp_path / "no"), digest, "t"), 10)
    with pytest.raises(CheckpointError, match=r"expected a tensor .* with 100 rows"):
        read_embedding_file(path, 100)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_an_embedding_file_cannot_run_code(tmp_path, capsys):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match=r"builtins\.print is not part of a pickled tensor"):
        read_embedding_file(path, 10)
    assert "must never run" not in capsys.readouterr().out


def test_runs_name_their_embeddings_and_the_stand_in_needs_no_file(suite):
    digits = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "nayer", 0, "t.pt")
    assert digits.label_embeddings.name == STAND_IN and digits.label_embeddings.file is None
    cifar = suite.run_config("paper", "cifar100", "resnet34", "resnet18", "nayer", 0, "t.pt")
    chosen = cifar.label_embeddings
    assert chosen.name == "clip_vit_b32" and chosen.file.endswith("cifar100_le.pickle")
    assert chosen.sha256 and len(chosen.sha256) == 64
    other = suite.run_config("paper", "cifar100", "resnet34", "resnet18", "dfq", 0, "t.pt")
    assert other.label_embeddings is None


def test_every_term_trains_the_whole_generator_noisy_layers_included(suite):
    method = build_method(suite, "nayer")
    method.student.eval().requires_grad_(False)
    method.generator_step()  # a synthesis in progress, the adversarial term on
    targets = method._round["targets"]
    terms = method.inversion_terms(method.generator(method.embeddings[targets]), targets)
    assert terms.keys() == {"bn_statistics", "one_hot", "adversarial"}
    parts = {
        "embedding norm": method.generator.embedding_norm.weight,
        "noisy layer": method.generator.noisy_layers[0].weight,
        "projection": method.generator.body.project.weight,
    }
    for name, term in terms.items():
        gradients = torch.autograd.grad(
            term, list(parts.values()), allow_unused=True, retain_graph=True
        )
        for part, gradient in zip(parts, gradients, strict=True):
            assert gradient is not None and gradient.abs().sum() > 0, (name, part)
