"""Released teachers: a published checkpoint verified, converted and evaluated once.

Two formats (params/released_teachers.yaml names each collection's):

`cmi`: the files released with zju-vipa/CMI (9e79fa9) are what `train_scratch.py` saves with
`torch.save`: a dict with 'state_dict' (the bare model's weights; the code loads them strictly
before any DataParallel wrapping, so no `module.` prefix) beside 'epoch', 'arch', 'best_acc1',
'optimizer' and 'scheduler', which only its `--resume` reads. Its models name their layers
differently from the suite's, layer for layer in the same order and shapes, so a rename of the
top-level keys loads them strictly (and gives identical logits):

    resnet18/34   conv1 bn1 layer1..4 linear        -> stem.0 stem.1 stages.0..3 head
    wrn*          conv1 block1..3.layer bn1 fc,     -> stem groups.0..2 bn head,
                  convShortcut                      -> shortcut
    vgg11 (bn)    block0..4 classifier              -> blocks.0..4 head

`torchvision`: a bare state dict, as torchvision's model zoo saves its weights (MAD's ImageNet
AlexNet); its last layer, classifier.6, is the suite's head (dfkd/models/alexnet.py).

Outputs, as for a trained teacher (atomic): `teacher.pt`, `history.csv` (one row: the test
accuracy measured here) and `metrics.json`, whose provenance records the file's SHA-256.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dfkd.config import ImportTeacherConfig, config_hash, load_import_config
from dfkd.data import dataset_info, load_split, normalize
from dfkd.errors import CheckpointError
from dfkd.evaluate import EVALUATION_BATCH_SIZE, predict
from dfkd.models import build_model
from dfkd.models.alexnet import torchvision_state_dict
from dfkd.provenance import collect
from dfkd.runfolder import RunFolder
from dfkd.runtime import choose_device
from dfkd.schema import to_dict
from dfkd.teacher import write_teacher_outputs
from dfkd.workflow import sha256_of

# (pattern anchored at the start of a key, replacement) per model family, applied in order.
_CMI_RENAMES: dict[str, list[tuple[str, Any]]] = {
    "resnet": [
        (r"conv1\.", "stem.0."),
        (r"bn1\.", "stem.1."),
        (r"layer(\d)\.", lambda m: f"stages.{int(m[1]) - 1}."),
        (r"linear\.", "head."),
    ],
    "wrn": [
        (r"conv1\.", "stem."),
        (r"block(\d)\.layer\.", lambda m: f"groups.{int(m[1]) - 1}."),
        (r"bn1\.", "bn."),
        (r"fc\.", "head."),
    ],
    "vgg": [(r"block(\d)\.", r"blocks.\1."), (r"classifier\.", "head.")],
}


def cmi_state_dict(state: Mapping[str, torch.Tensor], architecture: str) -> dict[str, Any]:
    """The CMI code's weights of `architecture` under the suite's key names."""
    family = next((f for f in _CMI_RENAMES if architecture.startswith(f)), None)
    if family is None:
        raise CheckpointError(
            f"the zju-vipa/CMI format has no '{architecture}'; released teachers are resnet34, "
            "vgg11 and wrn40_2"
        )
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # a DataParallel save, should anyone have one
        for pattern, replacement in _CMI_RENAMES[family]:
            key, count = re.subn(f"^{pattern}", replacement, key)
            if count:
                break
        renamed[key.replace(".convShortcut.", ".shortcut.")] = value
    return renamed


def _load_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises a dozen types for files it cannot read
        lines = str(error).strip().splitlines()
        reason = lines[0][:200] if lines else type(error).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None


def _tensors(state: Mapping[Any, Any], path: Path, what: str) -> Mapping[str, torch.Tensor]:
    """A state dict's entries, each a tensor under a name, as a model's weights are."""
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path} is not {what}: it holds {type(value).__name__} under "
                f"{str(key)[:60]!r}, where a model's weights are tensors"
            )
    return state


def _read_cmi(path: Path, architecture: str) -> dict[str, Any]:
    saved = _load_file(path)
    if not isinstance(saved, Mapping) or not isinstance(saved.get("state_dict"), Mapping):
        keys = ", ".join(map(str, saved)) if isinstance(saved, Mapping) else type(saved).__name__
        raise CheckpointError(
            f"{path} has no 'state_dict' (found: {keys}); expected a zju-vipa/CMI teacher file"
        )
    state = _tensors(saved["state_dict"], path, "a zju-vipa/CMI teacher file")
    return cmi_state_dict(state, architecture)


def _read_torchvision(path: Path, architecture: str) -> dict[str, Any]:
    if architecture != "alexnet":
        raise CheckpointError(
            f"the torchvision format is read for alexnet only, not '{architecture}'"
        )
    saved = _load_file(path)
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{path} is not a bare state dict, as torchvision saves weights")
    return torchvision_state_dict(_tensors(saved, path, "a bare state dict, as torchvision saves"))


_READERS = {"cmi": _read_cmi, "torchvision": _read_torchvision}


def _load_into(model: torch.nn.Module, state: dict[str, Any], path: Path, what: str) -> None:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not hold a {what}: {len(missing)} missing keys (e.g. "
            f"{', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected (e.g. "
            f"{', '.join(unexpected[:3]) or '-'}); check the file's architecture"
        )
    for key, value in expected.items():
        if state[key].shape != value.shape:
            if key.startswith("head."):
                raise CheckpointError(
                    f"{path} holds a {state[key].shape[0]}-class head; {what} has "
                    f"{value.shape[0]} classes; check the file's dataset"
                )
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, the {what} expects "
                f"{tuple(value.shape)}; check the file's architecture"
            )
    model.load_state_dict(state)


def import_released_teacher(config: ImportTeacherConfig | str | Path, out_dir: str | Path) -> int:
    """Verifies, converts and evaluates the released teacher `config` names (a resolved config,
    or its YAML file) into `out_dir`, which it claims first (dfkd/runfolder.py)."""
    started = time.perf_counter()
    if not isinstance(config, ImportTeacherConfig):
        config = load_import_config(config)
    with RunFolder(out_dir, config) as claim:
        return 0 if claim.finished else _import(config, claim, started)


def _import(config: ImportTeacherConfig, claim: RunFolder, started: float) -> int:
    out_dir, path = claim.folder, Path(config.checkpoint)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: released teacher not found; download it (params/released_teachers.yaml "
            "names where from) or choose teacher_source: trained"
        )
    digest = sha256_of(path)
    if config.sha256 is None:
        raise CheckpointError(
            f"{path} has SHA-256 {digest}; compare it with your download and pin it as sha256 "
            f"of {config.dataset}/{config.architecture} in params/released_teachers.yaml"
        )
    if digest != config.sha256:
        raise CheckpointError(
            f"{path} has SHA-256 {digest}, not the {config.sha256} pinned in "
            "params/released_teachers.yaml; download the file again or correct the pin"
        )
    info = dataset_info(config.dataset)
    model = build_model(config.architecture, info.num_classes)
    what = f"{config.architecture} for {config.dataset} ({info.num_classes} classes)"
    _load_into(model, _READERS[config.format](path, config.architecture), path, what)

    device = choose_device()
    test = load_split(config.dataset, config.data.root, "test", config.data.download).to(device)
    claim.record_config()
    model = model.to(device).eval()
    predictions = predict(model, normalize(test.images, info), EVALUATION_BATCH_SIZE).argmax(1)
    acc1 = 100.0 * (predictions == test.labels).double().mean().item()
    print(f"[released teacher {config.dataset} {config.architecture}] test acc1 {acc1:.2f}")
    run_hash = config_hash(config)
    write_teacher_outputs(
        out_dir, model, config.protocol, config.dataset, config.architecture, None, run_hash,
        provenance={
            **collect(device, False, run_hash),
            "released": {"file": str(path), "sha256": digest, "source": config.source},
        },
        config=to_dict(config),
        train_hours=0.0,
        total_hours=(time.perf_counter() - started) / 3600.0,
        history=[{"epoch": 0, "acc1": acc1}],
        device=device,
    )  # fmt: skip
    return 0
