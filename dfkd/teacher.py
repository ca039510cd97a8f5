"""Teacher training on the real training set (the only place the suite reads training images).

Recipe (params/teachers.yaml): SGD with momentum and weight decay, cross-entropy, a step schedule,
the dataset's train augmentation (for CIFAR: random crop with 4 px zero padding and horizontal
flip) applied on the device, the last partial batch kept, evaluation on the full test set after
every epoch. The *final* model is the teacher (no test-set selection); its test accuracy appears
in every report.

Outputs (atomic): `teacher.pt`, `metrics.json`, `history.csv`; while running, checkpoints that
hold the epoch's shuffling order and position, so a resumed run continues mid-epoch exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dfkd.checkpoint import (
    capture_rng,
    load_run_state,
    remove_run_state,
    restore_rng,
    save_model,
    save_run_state,
    seed_everything,
)
from dfkd.compute import Compute
from dfkd.config import TeacherRunConfig, config_hash, load_teacher_config
from dfkd.data import dataset_info, load_split, normalize, training_batch
from dfkd.evaluate import EVALUATION_BATCH_SIZE, predict
from dfkd.loop import Diverged, TermAccumulator
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.outputs import write_run_outputs
from dfkd.progress import Progress
from dfkd.provenance import collect
from dfkd.runfolder import RunFolder
from dfkd.runtime import (
    Interrupted,
    StopRequest,
    TrainingClock,
    choose_device,
    configure_determinism,
    reset_peak_memory,
)
from dfkd.schema import to_dict


@dataclass
class TeacherState:
    epochs_completed: int = 0
    batches_completed: int = 0  # inside the epoch in progress
    order: torch.Tensor | None = None  # the epoch's shuffling permutation
    terms: dict[str, Any] | None = None  # TermAccumulator state of the epoch in progress
    history: list[dict[str, Any]] = field(default_factory=list)


def run_teacher_training(config: TeacherRunConfig | str | Path, out_dir: str | Path) -> int:
    """Trains (or resumes) the teacher `config` describes (a resolved config, or its YAML file)
    in `out_dir`, which it claims first (dfkd/runfolder.py); returns the exit status."""
    started = time.perf_counter()
    if not isinstance(config, TeacherRunConfig):
        config = load_teacher_config(config)
    with RunFolder(out_dir, config) as claim:
        return 0 if claim.finished else _train(config, claim, started)


def _train(config: TeacherRunConfig, claim: RunFolder, started: float) -> int:
    out_dir = claim.folder
    digest = config_hash(config)
    device = choose_device()
    configure_determinism(config.deterministic, device)
    info = dataset_info(config.dataset)
    recipe = config.recipe

    train = load_split(config.dataset, config.data.root, "train", config.data.download).to(device)
    test = load_split(config.dataset, config.data.root, "test", config.data.download).to(device)
    compute = Compute.for_run(config.compute, device)
    layout = compute.memory_format
    test_images = normalize(test.images, info).contiguous(memory_format=layout)

    seed_everything(config.seed)
    model = build_model(config.architecture, info.num_classes).to(device, memory_format=layout)
    model = compute.prepare(model)
    optimizer, scheduler = build_optimizer(
        model.parameters(), recipe.optimizer, recipe.epochs, compute.optimizer_options,
        recipe.warmup_epochs,
    )  # fmt: skip
    state, clock = TeacherState(), TrainingClock(device)
    earlier_seconds = 0.0  # wall-clock of the processes before a resume
    saved = load_run_state(out_dir, digest)
    claim.record_config()  # the input is checked: the job runs
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = TeacherState(**saved["loop"])
        if state.order is not None:
            state.order = state.order.to(device)
        clock.elapsed_seconds = saved["train_seconds"]
        earlier_seconds = saved["total_seconds"]
        restore_rng(saved["rng"])

    def total_seconds() -> float:
        return earlier_seconds + time.perf_counter() - started

    def save() -> None:
        save_run_state(
            out_dir,
            {
                "config_hash": digest,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "loop": vars(state),
                "train_seconds": clock.elapsed_seconds,
                "total_seconds": total_seconds(),
                "rng": capture_rng(),
            },
        )

    batches_per_epoch = -(-len(train) // recipe.batch_size)
    label = f"teacher {config.dataset} {config.architecture}"
    progress = Progress(label, recipe.epochs, batches_per_epoch, "batch")
    reset_peak_memory(device)
    stop = StopRequest()
    try:
        with stop.installed():
            # Printed once SIGTERM is caught, so a signal after this line always checkpoints.
            progress.start(
                state.epochs_completed, state.batches_completed, resumed=saved is not None
            )
            for epoch in range(state.epochs_completed + 1, recipe.epochs + 1):
                if state.order is None:
                    state.order = torch.randperm(len(train), device=device)
                terms = TermAccumulator(device)
                if state.terms is not None:
                    terms.load_state_dict(state.terms)
                clock.start()
                model.train()
                for batch in range(state.batches_completed, batches_per_epoch):
                    indices = state.order[
                        batch * recipe.batch_size : (batch + 1) * recipe.batch_size
                    ]
                    images, labels = training_batch(train, indices, info)
                    with compute.autocast():
                        loss = F.cross_entropy(model(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    terms.add("train", {"cross_entropy": loss}, batch + 1)
                    progress.advance()
                    if stop and batch + 1 < batches_per_epoch:
                        clock.stop()
                        state.batches_completed, state.terms = batch + 1, terms.state_dict()
                        save()
                        raise Interrupted(stop.exit_status)
                scheduler.step()
                clock.stop()
                means, bad = terms.summary()
                for term, (step, value) in bad.items():
                    raise Diverged(term, epoch, step, batches_per_epoch, value)
                began = time.perf_counter()
                predictions = predict(model, test_images, EVALUATION_BATCH_SIZE).argmax(1)
                record = {
                    "epoch": epoch,
                    "acc1": 100.0 * (predictions == test.labels).double().mean().item(),
                    "train_loss": means["train/cross_entropy"],  # mean over the epoch's batches
                    "train_seconds": clock.elapsed_seconds,
                    "eval_seconds": time.perf_counter() - began,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                }
                state.history.append(record)
                state.epochs_completed, state.batches_completed = epoch, 0
                state.order = state.terms = None
                save()
                progress.epoch(record)
                if stop and epoch < recipe.epochs:
                    raise Interrupted(stop.exit_status)
    finally:
        progress.close()

    write_teacher_outputs(
        out_dir, model, config.protocol, config.dataset, config.architecture, config.seed,
        digest,
        provenance={
            **collect(device, config.deterministic, digest),
            "compute": compute.describe(),
        },
        config=to_dict(config),
        train_hours=clock.elapsed_seconds / 3600.0,
        total_hours=total_seconds() / 3600.0,
        history=state.history,
        device=device,
    )  # fmt: skip
    remove_run_state(out_dir)
    return 0


def write_teacher_outputs(
    out_dir: Path, model: torch.nn.Module, protocol: str, dataset: str, architecture: str,
    seed: int | None, digest: str, provenance: dict[str, Any], config: dict[str, Any],
    train_hours: float, total_hours: float, history: list[dict[str, Any]],
    device: torch.device,
) -> None:  # fmt: skip
    """A teacher's `teacher.pt`, `history.csv` and `metrics.json` (last), trained by the suite
    or released (dfkd/released.py): its test accuracy is the last history record's."""
    write_run_outputs(
        out_dir,
        model_file="teacher.pt",
        save_model_file=lambda path: save_model(
            path, model, architecture, dataset, {"config_hash": digest}
        ),
        metrics={
            "kind": "teacher",
            "status": "completed",
            "run": {
                "protocol": protocol,
                "dataset": dataset,
                "architecture": architecture,
                "seed": seed,
            },
            "provenance": provenance,
            "config": config,
            "summary": {"final_acc1": history[-1]["acc1"], "train_hours": train_hours},
            "total_hours": total_hours,
        },
        history=history,
        device=device,
    )
