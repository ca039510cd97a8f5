"""Released teachers: checkpoints in zju-vipa/CMI's format, verified, converted, evaluated."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from dfkd.checkpoint import load_model
from dfkd.cli import main
from dfkd.config import ImportTeacherConfig, save_config
from dfkd.data import dataset_info, load_split, normalize
from dfkd.distill import run_distillation
from dfkd.errors import CheckpointError
from dfkd.models import build_model
from tests.support import copy_repository, run_command

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _cmi_wrn16_1_keys() -> list[str]:
    """The state_dict keys of the CMI code's wrn_16_1 (datafree/models/classifiers/wresnet.py):
    conv1, block1..3 of 2 BasicBlocks each (bn1, conv1, bn2, conv2, and a 1x1 convShortcut
    where the width changes: block2 and block3), the final bn1 and the fc head."""
    keys = ["conv1.weight"]
    for block in (1, 2, 3):
        for index in (0, 1):
            prefix = f"block{block}.layer.{index}."
            keys += [prefix + f"bn1.{name}" for name in BN] + [prefix + "conv1.weight"]
            keys += [prefix + f"bn2.{name}" for name in BN] + [prefix + "conv2.weight"]
            if block > 1 and index == 0:
                keys.append(prefix + "convShortcut.weight")
    return keys + [f"bn1.{name}" for name in BN] + ["fc.weight", "fc.bias"]


def _cmi_resnet18_keys() -> list[str]:
    """datafree/models/classifiers/resnet.py's resnet18: conv1, bn1, layer1..4 of 2 BasicBlocks
    (conv1, bn1, conv2, bn2, and shortcut.0 conv + shortcut.1 BN where the shape changes),
    the linear head."""
    keys = ["conv1.weight"] + [f"bn1.{name}" for name in BN]
    for layer in (1, 2, 3, 4):
        for index in (0, 1):
            prefix = f"layer{layer}.{index}."
            keys += [prefix + "conv1.weight"] + [prefix + f"bn1.{name}" for name in BN]
            keys += [prefix + "conv2.weight"] + [prefix + f"bn2.{name}" for name in BN]
            if layer > 1 and index == 0:
                keys += [prefix + "shortcut.0.weight"]
                keys += [prefix + f"shortcut.1.{name}" for name in BN]
    return [*keys, "linear.weight", "linear.bias"]


def _cmi_vgg11_keys() -> list[str]:
    """datafree/models/classifiers/vgg.py's vgg11_bn: block0..4 of conv (with bias) + BN pairs
    at indices 0, 1 (and 3, 4 in the blocks of two convolutions), then the classifier."""
    keys = []
    for block, indices in enumerate([(0,), (0,), (0, 3), (0, 3), (0, 3)]):
        for conv in indices:
            keys += [f"block{block}.{conv}.weight", f"block{block}.{conv}.bias"]
            keys += [f"block{block}.{conv + 1}.{name}" for name in BN]
    return [*keys, "classifier.weight", "classifier.bias"]


CMI_KEYS = {"wrn16_1": _cmi_wrn16_1_keys, "resnet18": _cmi_resnet18_keys, "vgg11": _cmi_vgg11_keys}


def _randomised(architecture: str, classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(architecture, classes)
    with torch.no_grad():  # BN statistics that are not the 0/1 defaults, so a swap would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.1)
    return model.eval()


def _write_cmi_checkpoint(path: Path, model: torch.nn.Module, architecture: str) -> str:
    """What CMI's train_scratch.py saves: its own key names, beside epoch, arch, best_acc1,
    optimizer and scheduler. Returns the file's SHA-256."""
    values = list(model.state_dict().values())
    keys = CMI_KEYS[architecture]()
    assert len(keys) == len(values)
    state = dict(zip(keys, values, strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"epoch": 200, "arch": architecture, "state_dict": state, "best_acc1": 95.0,
         "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 200}},
        path,
    )  # fmt: skip
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("architecture", sorted(CMI_KEYS))
def test_a_cmi_checkpoint_loads_strictly_with_identical_outputs(tmp_path, architecture):
    from dfkd.released import cmi_state_dict

    source = _randomised(architecture, 10)
    _write_cmi_checkpoint(tmp_path / "t.pth", source, architecture)
    saved = torch.load(tmp_path / "t.pth", weights_only=True)["state_dict"]
    imported = build_model(architecture, 10)
    imported.load_state_dict(cmi_state_dict(saved, architecture))  # strict
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(imported.eval()(images), source(images))


def test_torchvision_s_alexnet_file_loads_strictly_with_identical_outputs(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from dfkd.released import _READERS

    torch.manual_seed(0)
    source = torchvision.models.alexnet(weights=None).eval()  # 1000 classes, as the zoo's
    torch.save(source.state_dict(), tmp_path / "alexnet-owt.pth")
    imported = build_model("alexnet", 1000)
    imported.load_state_dict(_READERS["torchvision"](tmp_path / "alexnet-owt.pth", "alexnet"))
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(imported.eval()(images), source(images))
    _write_cmi_checkpoint(tmp_path / "cmi.pth", _randomised("wrn16_1", 10), "wrn16_1")
    with pytest.raises(CheckpointError, match="not a bare state dict"):
        _READERS["torchvision"](tmp_path / "cmi.pth", "alexnet")


def test_the_imagenet_experiment_imports_torchvision_s_alexnet(suite):
    config = suite.import_teacher_config("paper", "imagenet", "alexnet")
    assert (config.format, config.checkpoint) == (
        "torchvision", "checkpoints/torchvision/alexnet-owt-7be5be79.pth"
    )  # fmt: skip


def _import_config(checkpoint: Path, sha256: str | None) -> ImportTeacherConfig:
    from dfkd.config import DataSettings

    return ImportTeacherConfig(
        suite_version="0", protocol="tiny", dataset="digits", architecture="wrn16_1",
        checkpoint=str(checkpoint), sha256=sha256, format="cmi", source="a test",
        data=DataSettings(root="data", download=False),
    )  # fmt: skip


def _import(tmp_path: Path, config: ImportTeacherConfig, capsys) -> tuple[int, str, Path]:
    out = tmp_path / "imported"
    save_config(config, tmp_path / "import.yaml")
    status = main(
        ["import-teacher", "--config", str(tmp_path / "import.yaml"), "--out-dir", str(out)]
    )
    return status, capsys.readouterr().err, out


def test_a_released_teacher_is_pinned_measured_and_distilled_from(tmp_path, suite, capsys):
    source = _randomised("wrn16_1", 10)
    checkpoint = tmp_path / "checkpoints" / "digits_wrn16_1.pth"
    digest = _write_cmi_checkpoint(checkpoint, source, "wrn16_1")

    status, error, out = _import(tmp_path, _import_config(checkpoint, None), capsys)
    assert status == 2 and digest in error and "pin it" in error  # no pin: it prints the digest
    assert not (out / "metrics.json").exists()
    status, error, out = _import(tmp_path, _import_config(checkpoint, "0" * 64), capsys)
    assert status == 2 and f"has SHA-256 {digest}, not the {'0' * 64}" in error
    assert not (out / "metrics.json").exists()

    status, _, out = _import(tmp_path, _import_config(checkpoint, digest), capsys)
    assert status == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["provenance"]["released"]["sha256"] == digest
    info = dataset_info("digits")
    test = load_split("digits", "data", "test", False)
    with torch.no_grad():
        expected = (source(normalize(test.images, info)).argmax(1) == test.labels).double().mean()
    assert record["summary"]["final_acc1"] == pytest.approx(100.0 * expected.item())
    teacher, _ = load_model(out / "teacher.pt", "wrn16_1", "digits", 10)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(teacher.eval()(images), source(images))

    # A student distils from it on the embedded data, and records the teacher it measured.
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, "unused")
    loop = replace(config.loop, epochs=1, rounds_per_epoch=2, batch_size=16)
    config = replace(
        config, teacher="wrn16_1", teacher_checkpoint=str(out / "teacher.pt"), loop=loop,
        statistics=replace(config.statistics, start_epoch=1),
    )  # fmt: skip
    save_config(config, tmp_path / "run" / "config.yaml")
    assert run_distillation(tmp_path / "run" / "config.yaml", tmp_path / "run") == 0
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["teacher"]["acc1"] == pytest.approx(record["summary"]["final_acc1"])


def test_a_tampered_or_wrong_released_file_is_refused_in_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "t.pth"
    digest = _write_cmi_checkpoint(checkpoint, _randomised("wrn16_1", 10), "wrn16_1")
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    status, error, out = _import(tmp_path, _import_config(checkpoint, digest), capsys)
    assert status == 2 and "not the" in error and len(error.splitlines()) == 1

    cases = {
        "100-class head": lambda path: _write_cmi_checkpoint(
            path, _randomised("wrn16_1", 100), "wrn16_1"
        ),
        "does not hold a wrn16_1": lambda path: _write_cmi_checkpoint(
            path, _randomised("resnet18", 10), "resnet18"
        ),
        "has no 'state_dict'": lambda path: (
            torch.save({"model": {}}, path),
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )[1],
        "not a readable PyTorch checkpoint": lambda path: (
            path.write_bytes(b"<html>sign in</html>"),
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )[1],
    }
    for expected, write in cases.items():
        wrong = tmp_path / f"{len(expected)}.pth"
        status, error, out = _import(tmp_path, _import_config(wrong, write(wrong)), capsys)
        assert status == 2 and expected in error and len(error.splitlines()) == 1, error
        assert not (out / "metrics.json").exists()


def _fuzzed(good: bytes, count: int, seed: int = 0) -> list[bytes]:
    """Odd files a user may find where a checkpoint should be: truncations, flipped bytes, cut
    holes, random bytes, text, other pickles."""
    import pickle
    import random

    rng = random.Random(seed)
    files = [
        b"", b"plain text, not a checkpoint\n", b"<html>sign in</html>", b"PK\x03\x04",
        pickle.dumps([1, 2, 3]), pickle.dumps({"state_dict": {"conv1.weight": 1.0}}),
    ]  # fmt: skip
    while len(files) < count:
        data = bytearray(good)
        kind = rng.randrange(4)
        if kind == 0:
            data = data[: rng.randrange(len(data))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:
            start = rng.randrange(len(data))
            del data[start : start + rng.randrange(1, 4096)]
        else:
            data = bytearray(rng.randbytes(rng.randrange(1, 512)))
        files.append(bytes(data))
    return files


def test_odd_files_as_released_teachers_are_one_line_each(tmp_path, capsys):
    """A fuzz of 40 files through the import's reader: each is refused in one line, or (a
    flipped byte in a tensor's data) loads as weights; none ends in a traceback."""
    good = tmp_path / "good.pth"
    _write_cmi_checkpoint(good, _randomised("wrn16_1", 10), "wrn16_1")
    odd = _fuzzed(good.read_bytes(), 40)
    # A state dict of the right names whose values are not all tensors.
    state = torch.load(good, weights_only=True)
    state["state_dict"] = {**state["state_dict"], "conv1.weight": [0.5]}
    torch.save(state, tmp_path / "lists.pth")
    odd.append((tmp_path / "lists.pth").read_bytes())
    for number, data in enumerate(odd):
        case = tmp_path / f"case{number}"
        case.mkdir()
        (case / "odd.pth").write_bytes(data)
        config = _import_config(case / "odd.pth", hashlib.sha256(data).hexdigest())
        status, error, _ = _import(case, config, capsys)
        assert status in (0, 2) and "Traceback" not in error, (number, error)
        assert status == 0 or len(error.splitlines()) == 1, (number, error)
    assert "holds list under 'conv1.weight', where a model's weights are tensors" in error


@pytest.mark.slow
def test_an_experiment_with_released_teachers_imports_instead_of_training(tmp_path):
    repository = copy_repository(tmp_path / "repository")
    params = yaml.safe_load((repository / "params.yaml").read_text())
    params["experiments"]["digits"].update(teacher_source="released", methods=["dfq"])
    (repository / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    checked = run_command(["dfkd", "check"], repository, check=False)
    assert checked.returncode == 2
    assert "lists no released cnn_small for digits" in checked.stderr

    released_path = repository / "params" / "released_teachers.yaml"
    released = yaml.safe_load(released_path.read_text())
    teachers = released["collections"]["cmi"]["teachers"]
    teachers["digits"] = {"cnn_small": {"file": "digits.pth", "sha256": None}}
    released_path.write_text(yaml.safe_dump(released))
    # Not downloaded, then not pinned: one line each, with the download link and the step.
    missing = run_command(["snakemake", "-n", "reports/digits_table.md"], repository, check=False)
    assert missing.returncode == 2
    (line,) = missing.stderr.splitlines()[-1:]
    assert line.startswith("error: params.yaml: experiments.digits: its released cnn_small is not")
    assert released["collections"]["cmi"]["url"] in line and "steps 1-2" in line
    (repository / "checkpoints" / "pretrained").mkdir(parents=True)
    source = repository / "checkpoints" / "pretrained" / "digits.pth"
    source.write_bytes(b"downloaded")
    unpinned = run_command(["snakemake", "-n", "reports/digits_table.md"], repository, check=False)
    assert unpinned.returncode == 2
    digest = hashlib.sha256(b"downloaded").hexdigest()
    assert f"has no pin: compare its SHA-256 {digest} with your download" in unpinned.stderr
    teachers["digits"]["cnn_small"]["sha256"] = digest
    released_path.write_text(yaml.safe_dump(released))
    assert run_command(["dfkd", "check", "digits"], repository).returncode == 0
    plan = run_command(["snakemake", "-n", "reports/digits_table.md"], repository)
    assert "import_teacher" in plan.stdout and "train_teacher" not in plan.stdout
    # A damaged download, its pin unchanged: one line when the workflow starts.
    source.write_bytes(b"damaged")
    damaged = run_command(["snakemake", "-n", "reports/digits_table.md"], repository, check=False)
    assert damaged.returncode == 2 and "it was damaged or replaced" in damaged.stderr
