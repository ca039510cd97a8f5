"""The Tiny-ImageNet experiment: every method's recipe runs a job on data in the real layout."""

import json
from dataclasses import replace

import pytest
import torch

from dfkd.checkpoint import save_model
from dfkd.config import DataSettings, save_config
from dfkd.data import dataset_info
from dfkd.distill import run_distillation
from dfkd.methods import METHODS
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.runtime import memory_format
from dfkd.schema import from_dict
from tests.test_data import _write_tiny_imagenet

TINY = ("adi", "dfq", "cmi", "cudfkd", "mad", "nayer")


def test_the_experiment_lists_the_methods_with_a_tiny_imagenet_source(suite):
    experiment = suite.params.experiments["tiny_imagenet"]
    assert experiment.methods == TINY and experiment.pairs == ("resnet34-resnet18",)
    assert len(suite.runs("tiny_imagenet")) == len(TINY) * len(experiment.seeds)
    published = suite.published["results"]["tiny_imagenet"]["resnet34-resnet18"]
    assert {method: result.acc1 for method, result in published.items()} == {
        "adi": 26.00, "dfq": 41.30, "cmi": 11.65, "cudfkd": 43.42,
    }  # fmt: skip


def _shrunk(suite, method: str, root, teacher):
    """The method's Tiny-ImageNet config with a CPU-sized loop and small networks."""
    config = suite.run_config("paper", "tiny_imagenet", "resnet34", "resnet18", method, 0, teacher)
    warmup = min(config.loop.warmup_epochs, 1)  # NAYER's synthesis-only epochs, one kept
    loop = replace(
        config.loop, epochs=1 + warmup, warmup_epochs=warmup, rounds_per_epoch=1, batch_size=4,
        generator_steps_per_round=min(config.loop.generator_steps_per_round, 2),
        student_steps_per_round=2,
        student_optimizer=replace(config.loop.student_optimizer, milestones=()),
    )  # fmt: skip
    hyperparameters = dict(config.hyperparameters)
    if "synthesis_batch_size" in hyperparameters:
        hyperparameters["synthesis_batch_size"] = None  # the student's batch
    if hyperparameters.get("feature_layers") == "stages":  # a ResNet's; cnn_small has none
        hyperparameters["feature_layers"] = "batch_norm"
    if "label_embeddings" in hyperparameters:  # NAYER's CLIP file is the user's to download
        hyperparameters["label_embeddings"] = "random_orthogonal"
    return replace(
        config, teacher="cnn_small", student="cnn_tiny", loop=loop,
        hyperparameters=hyperparameters, data=DataSettings(root=str(root), download=False),
        statistics=replace(config.statistics, start_epoch=1),
    )  # fmt: skip


@pytest.mark.parametrize("method", TINY)
def test_a_tiny_imagenet_job_synthesises_64x64_images_and_completes(tmp_path, suite, method):
    _write_tiny_imagenet(tmp_path / "data")
    info = dataset_info("tiny_imagenet")
    torch.manual_seed(0)
    teacher = build_model("cnn_small", info.num_classes).eval()
    save_model(tmp_path / "teacher.pt", teacher, "cnn_small", "tiny_imagenet", {"config_hash": "t"})
    config = _shrunk(suite, method, tmp_path / "data", str(tmp_path / "teacher.pt"))

    implementation = METHODS.get(config.implementation)
    chosen = from_dict(implementation.config_class, config.hyperparameters, method)
    cpu = torch.device("cpu")
    context = method_context(
        info, teacher.requires_grad_(False), build_model("cnn_tiny", info.num_classes), 4, 1,
        cpu, memory_format(cpu),
    )  # fmt: skip
    instance = implementation(chosen, context)
    instance.generator_step()
    instance.finish_synthesis()
    assert instance.sample(4).shape == (4, 3, 64, 64)

    save_config(config, tmp_path / "run" / "config.yaml")
    assert run_distillation(tmp_path / "run" / "config.yaml", tmp_path / "run") == 0
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and len(record["history"]) == config.loop.epochs
