"""Compute modes: what `fast` changes on each device, and that it keeps every recipe's outcome."""

import json
from dataclasses import replace

import pytest
import torch

from dfkd.compute import Compute
from dfkd.config import save_config
from dfkd.distill import run_distillation
from dfkd.errors import UserError
from dfkd.models import build_model
from dfkd.teacher import run_teacher_training
from tests.support import REPOSITORY

EMBEDDED = ("dafl", "adi", "dfq", "cmi", "cudfkd", "mad")


def test_fast_on_cuda_is_bf16_compiled_and_fused_and_on_the_cpu_only_foreach():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert Compute("fast", cuda).describe() == {
        "mode": "fast", "autocast": "bfloat16", "compiled": True,
        "memory_format": "channels_last", "optimizers": "fused", "cuda_recipe": False,
    }  # fmt: skip
    assert Compute("eager", cuda).describe() == {
        "mode": "eager", "autocast": None, "compiled": False,
        "memory_format": "contiguous_format", "optimizers": "default", "cuda_recipe": False,
    }  # fmt: skip
    assert Compute("fast", cpu).describe()["optimizers"] == "foreach"
    assert Compute("fast", cpu).memory_format == Compute("eager", cpu).memory_format
    model = torch.nn.Linear(2, 2)
    assert Compute("fast", cpu).prepare(model) is model  # nothing compiled on the CPU
    with Compute("fast", cpu).autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_the_cuda_recipe_on_the_cpu_is_what_fast_runs_on_cuda(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("DFKD_FAST_RECIPE", "cuda")
    compute = Compute.for_run("fast", cpu)
    assert compute.describe() == {
        "mode": "fast", "autocast": "bfloat16", "compiled": True,
        "memory_format": "channels_last", "optimizers": "fused", "cuda_recipe": True,
    }  # fmt: skip
    assert Compute.for_run("eager", cpu).describe()["compiled"] is False
    model = torch.nn.Linear(2, 2)
    assert compute.prepare(model) is model and model._compiled_call_impl is not None
    with compute.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv("DFKD_FAST_RECIPE", "device")
    assert Compute.for_run("fast", cpu).describe()["optimizers"] == "foreach"
    monkeypatch.setenv("DFKD_FAST_RECIPE", "gpu")
    with pytest.raises(UserError, match="DFKD_FAST_RECIPE='gpu': expected 'cuda' or 'device'"):
        Compute.for_run("fast", cpu)


def test_logits_leave_a_network_in_float32_under_bfloat16_autocast():
    """Every loss then starts from float32 on any device: autocast's float32 op lists differ
    (CUDA's runs softmax in float32, the CPU's in bfloat16)."""
    model = build_model("cnn_tiny", 10)
    images = torch.randn(4, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = model.forward_with_features(images)
        assert model(images).dtype == logits.dtype == torch.float32
        assert features.dtype == torch.bfloat16  # the layers did run in bfloat16
        assert torch.softmax(logits, 1).dtype == torch.float32


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, suite):
    config = suite.teacher_config("tiny", "digits", "cnn_small")
    optimizer = replace(config.recipe.optimizer, milestones=(3, 5))
    config = replace(config, recipe=replace(config.recipe, epochs=6, optimizer=optimizer))
    run_dir = tmp_path_factory.mktemp("teacher")
    save_config(config, run_dir / "config.yaml")
    assert run_teacher_training(run_dir / "config.yaml", run_dir) == 0
    return run_dir / "teacher.pt"


def _final(suite, method: str, compute: str, teacher, run_dir) -> dict:
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", method, 0, str(teacher))
    optimizer = config.loop.student_optimizer
    if optimizer.milestones:
        optimizer = replace(optimizer, milestones=(1, 2))
    loop = replace(
        config.loop, epochs=3, rounds_per_epoch=4, batch_size=16, student_optimizer=optimizer,
        generator_steps_per_round=min(config.loop.generator_steps_per_round, 6),
        student_steps_per_round=min(config.loop.student_steps_per_round, 10),
    )  # fmt: skip
    config = replace(config, loop=loop, compute=compute)
    save_config(config, run_dir / "config.yaml")
    assert run_distillation(run_dir / "config.yaml", run_dir) == 0
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("method", EMBEDDED)
def test_fast_and_eager_reach_the_same_accuracy(tmp_path, suite, teacher, method):
    eager = _final(suite, method, "eager", teacher, tmp_path / "eager")
    fast = _final(suite, method, "fast", teacher, tmp_path / "fast")
    assert fast["provenance"]["compute"]["optimizers"] == "foreach"
    assert eager["provenance"]["compute"]["mode"] == "eager"
    # Within the seed noise of the embedded default (the spread over its 5 seeds); on the CPU the
    # two modes run the same arithmetic in other kernels, so every epoch agrees far more closely.
    measured = json.loads((REPOSITORY / "benchmarks/results/seed_robustness.json").read_text())
    spread = measured["methods"][f"cnn_small-cnn_tiny/{method}"]
    finals = [run["history"][-1]["acc1"] for run in (eager, fast)]
    assert abs(finals[0] - finals[1]) <= spread["max"] - spread["min"], finals
    for ours, theirs in zip(eager["history"], fast["history"], strict=True):
        assert ours["acc1"] == pytest.approx(theirs["acc1"], abs=1.0)
