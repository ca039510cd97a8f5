"""The loop's schedule features as config: warm-up epochs, several syntheses per round, a cosine
with a floor and a set length, protocols that rescale them, the matched-budget protocol, and
params variants that extend another file."""

import math
import shutil
from dataclasses import replace

import pytest
import torch
import yaml

from dfkd.config import LoopConfig, OptimizerConfig, load_suite, read_yaml
from dfkd.errors import ConfigError
from dfkd.optim import build_optimizer
from tests.support import REPOSITORY


@pytest.fixture
def params(tmp_path):
    """A writable copy of the real params: (params.yaml data, params dir)."""
    shutil.copytree(REPOSITORY / "params", tmp_path / "params")
    return read_yaml(REPOSITORY / "params.yaml"), tmp_path / "params"


def _cosine(**changes) -> OptimizerConfig:
    return replace(OptimizerConfig("sgd", 0.2, 0.9, 1e-4, "cosine", (), 0.1), **changes)


def test_a_file_may_leave_out_the_keys_of_features_that_are_off(params):
    data, directory = params
    dfq = yaml.safe_load((directory / "methods/dfq.yaml").read_text())
    assert "warmup_epochs" not in dfq["schedule"]  # an older file, as written before them
    suite = load_suite(data, directory)
    loop = suite.methods["dfq"].schedule
    assert (loop.warmup_epochs, loop.syntheses_per_round) == (0, 1)
    assert loop.student_optimizer.minimum_learning_rate == 0.0
    dfq["schedule"]["warmup_epochs"] = -1
    dfq["schedule"]["student_optimizer"]["cosine_epoch"] = 3
    (directory / "methods/dfq.yaml").write_text(yaml.safe_dump(dfq))
    with pytest.raises(ConfigError) as error:
        load_suite(data, directory)
    message = str(error.value)
    assert "schedule.warmup_epochs: got -1; expected a number >= 0" in message
    assert "schedule.student_optimizer.cosine_epoch: unknown key" in message


def test_warm_up_and_cosine_settings_are_checked():
    with pytest.raises(ValueError, match="expected fewer than epochs"):
        LoopConfig(5, 1, 2, 3, 4, _cosine(), warmup_epochs=5, warmup_syntheses_per_epoch=1)
    with pytest.raises(ValueError, match="set both"):
        LoopConfig(5, 1, 2, 3, 4, _cosine(), warmup_epochs=2)
    with pytest.raises(ValueError, match="only used by schedule 'cosine'"):
        _cosine(schedule="constant", minimum_learning_rate=1e-3)
    with pytest.raises(ValueError, match="at most the learning_rate"):
        _cosine(minimum_learning_rate=0.3)


def test_a_set_cosine_length_is_the_reference_behaviour_past_it(suite):
    """Fast-DFKD hard-codes T_max = 200: past it the lr rises again, as torch's cosine does."""
    weights = [torch.nn.Parameter(torch.zeros(1))]
    optimizer, scheduler = build_optimizer(weights, _cosine(minimum_learning_rate=2e-4,
                                                            cosine_epochs=4), 6)  # fmt: skip
    rates = []
    for _ in range(6):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    expected = [2e-4 + (0.2 - 2e-4) * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 7)]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[3] == pytest.approx(2e-4) and rates[5] > rates[3]


def test_a_shorter_protocol_keeps_the_warm_up_and_the_schedule_in_proportion(suite):
    paper = suite.run_config("paper", "cifar10", "resnet34", "resnet18", "nayer", 0, "t.pt").loop
    assert (paper.epochs, paper.warmup_epochs, paper.training_epochs) == (120, 20, 100)
    tiny = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "nayer", 0, "t.pt").loop
    assert (tiny.epochs, tiny.warmup_epochs, tiny.warmup_syntheses_per_epoch) == (10, 2, 2)
    assert tiny.student_optimizer.minimum_learning_rate == 2e-4
    from dfkd.config.suite import rescheduled

    fixed = replace(paper, student_optimizer=replace(paper.student_optimizer, cosine_epochs=200))
    quick = rescheduled(fixed, 20)
    assert (quick.epochs, quick.warmup_epochs) == (20, 3)  # 20 x 20 / 120, rounded
    assert quick.student_optimizer.cosine_epochs == 34  # 200 x 17 / 100
    one = rescheduled(paper, 1)
    assert (one.epochs, one.warmup_epochs, one.warmup_syntheses_per_epoch) == (1, 0, 0)


def test_the_matched_budget_gives_every_method_the_same_student_images(suite):
    for dataset in ("cifar10", "cifar100"):
        experiment = suite.params.experiments[dataset]
        for method in experiment.methods:
            for pair in experiment.pairs:
                teacher, student = pair.split("-")
                paper = suite.run_config("paper", dataset, teacher, student, method, 0, "t.pt")
                budget = suite._resolve_run(
                    "matched_budget", dataset, teacher, student, method, 0, "t.pt", None
                )
                loop, published = budget.loop, paper.loop
                per_epoch = published.student_images // published.training_epochs
                assert abs(loop.student_images - 20_480_000) <= per_epoch / 2, (method, pair)
                unchanged = (
                    "warmup_epochs", "rounds_per_epoch", "syntheses_per_round",
                    "generator_steps_per_round", "student_steps_per_round", "batch_size",
                )  # fmt: skip
                for key in unchanged:
                    assert getattr(loop, key) == getattr(published, key), (method, key)
                assert budget.hyperparameters == paper.hyperparameters
                assert loop.student_optimizer.learning_rate == (
                    published.student_optimizer.learning_rate
                )
    cmi = suite._resolve_run("matched_budget", "cifar10", "wrn40_2", "wrn16_1", "cmi", 0, "t", None)
    assert cmi.loop.epochs == 400  # 400 steps x 128 per epoch: twice its published 200
    mad = suite._resolve_run(
        "matched_budget", "cifar10", "resnet34", "resnet18", "mad", 0, "t", None
    )
    assert mad.loop.epochs == 53 and mad.loop.student_optimizer.milestones == (18, 35)


def test_a_variant_extends_another_params_file(suite, params):
    base, longer = suite.methods["nayer"], suite.methods["nayer_200"]
    assert longer.schedule == replace(base.schedule, epochs=220)
    assert longer.hyperparameters == base.hyperparameters and longer.overrides == base.overrides
    assert (base.display_name, longer.display_name) == ("NAYER", "NAYER-200")
    data, directory = params
    (directory / "methods/loop_a.yaml").write_text("extends: loop_b\n")
    (directory / "methods/loop_b.yaml").write_text("extends: loop_a\n")
    (directory / "methods/orphan.yaml").write_text("extends: nothing\n")
    (directory / "methods/plain.yaml").write_text("extends: nayer\nsource: x\n")
    with pytest.raises(ConfigError) as error:
        load_suite(data, directory)
    message = str(error.value)
    assert "extends: loop_a -> loop_b -> loop_a is a cycle" in message
    assert "orphan.yaml: extends: got 'nothing'; expected the name of a file in" in message
    # A variant's display name is not inherited: the reports would print the base's.
    assert "plain.yaml: display_name: missing" in message


def test_dvc_tracks_every_params_file_through_the_folder():
    stage = yaml.safe_load((REPOSITORY / "dvc.yaml").read_text())["stages"]["benchmark"]["do"]
    assert "params" in stage["deps"]  # a new method's file needs no line here
    listed = [entry for entry in stage["params"] if isinstance(entry, dict)]
    assert not listed, f"params files listed one by one: {listed}"
