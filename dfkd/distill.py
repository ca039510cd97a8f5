"""One distillation run: build everything from a resolved config, run the loop, write results.

Outputs in the run directory (all written atomically):
- `metrics.json`: status (completed/diverged), final and best (oracle) Acc@1/Agree@1/L_p,
  stability (mu, sigma^2 from the protocol's start epoch), time to the accuracy threshold,
  training and total hours, peak memory, the per-epoch history, provenance and the config.
  Times add up over resumes: training time is saved in every checkpoint, and total time is the
  wall-clock of the processes up to their last checkpoint (work a kill throws away is not
  counted, as it is redone).
- `history.csv`: the per-epoch history, for plots.
- `student.pt`: the final student (see dfkd.checkpoint.save_model).
- while running: `checkpoint.pt` / `checkpoint.prev.pt`, removed once the run has finished.

Data-free: only the test split is loaded, for evaluation; no training image is ever read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dfkd.checkpoint import (
    capture_rng,
    load_model,
    load_run_state,
    remove_run_state,
    restore_rng,
    save_model,
    save_run_state,
    seed_everything,
)
from dfkd.compute import Compute
from dfkd.config import RunConfig, config_hash, load_run_config
from dfkd.data import dataset_info, load_split, normalize
from dfkd.evaluate import EVALUATION_BATCH_SIZE, evaluate, predict
from dfkd.label_embeddings import embeddings_resolver
from dfkd.loop import Diverged, LoopState, distill
from dfkd.methods import METHODS
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.outputs import write_run_outputs
from dfkd.progress import Progress
from dfkd.provenance import collect
from dfkd.runfolder import RunFolder
from dfkd.runtime import (
    StopRequest,
    TrainingClock,
    choose_device,
    configure_determinism,
    reset_peak_memory,
)
from dfkd.schema import from_dict, to_dict
from dfkd.stats import summarize_history
from dfkd.workflow import sha256_of


def run_distillation(config: RunConfig | str | Path, out_dir: str | Path) -> int:
    """Runs (or resumes) the distillation `config` describes (a resolved config, or its YAML
    file) in `out_dir`, which it claims first (dfkd/runfolder.py); returns the exit status."""
    started = time.perf_counter()
    if not isinstance(config, RunConfig):
        config = load_run_config(config)
    with RunFolder(out_dir, config) as claim:
        return 0 if claim.finished else _distill(config, claim, started)


def checkpoint_key(config: RunConfig, teacher_sha256: str | None = None) -> str:
    """What a run's checkpoint is written for: its settings' digest and the SHA-256 of its
    teacher file (read from `config.teacher_checkpoint` unless given)."""
    if teacher_sha256 is None:
        teacher_sha256 = sha256_of(Path(config.teacher_checkpoint))
    return f"{config_hash(config)}/{teacher_sha256}"


def _distill(config: RunConfig, claim: RunFolder, started: float) -> int:
    out_dir = claim.folder
    digest = config_hash(config)
    device = choose_device()
    compute = Compute.for_run(config.compute, device)
    layout = compute.memory_format
    configure_determinism(config.deterministic, device)
    info = dataset_info(config.dataset)

    # Everything that can fail on bad input happens before any training.
    implementation = METHODS.get(config.implementation)
    method_config = from_dict(
        implementation.config_class,
        config.hyperparameters,
        str(out_dir / "config.yaml"),
        "hyperparameters",
    )
    teacher, teacher_record = load_model(
        config.teacher_checkpoint, config.teacher, config.dataset, info.num_classes
    )
    # The teacher file this run distils from: the workflow runs it again when it changes, and a
    # checkpoint resumes only with the same settings and the same teacher.
    teacher_sha256 = sha256_of(Path(config.teacher_checkpoint))
    resume_key = checkpoint_key(config, teacher_sha256)
    teacher = compute.prepare(teacher.to(device, memory_format=layout).eval().requires_grad_(False))
    test = load_split(config.dataset, config.data.root, "test", config.data.download).to(device)
    test_images = normalize(test.images, info).contiguous(memory_format=layout)
    teacher_logits = predict(teacher, test_images, EVALUATION_BATCH_SIZE)  # fixed for the run
    teacher_acc1 = 100.0 * (teacher_logits.argmax(1) == test.labels).double().mean().item()

    seed_everything(config.seed)
    student = build_model(config.student, info.num_classes).to(device, memory_format=layout)
    student = compute.prepare(student)
    context = method_context(
        info, teacher, student, config.loop.batch_size, config.loop.epochs, device, layout,
        compute.optimizer_options, config.loop.warmup_epochs,
        embeddings_resolver(config.label_embeddings, info.num_classes),
    )  # fmt: skip
    method = implementation(method_config, context)
    optimizer, scheduler = build_optimizer(  # stepped in the epochs after the warm-up
        student.parameters(), config.loop.student_optimizer, config.loop.training_epochs,
        compute.optimizer_options,
    )  # fmt: skip

    state = LoopState()
    clock = TrainingClock(device)
    earlier_seconds = 0.0  # wall-clock of the processes before a resume
    saved = load_run_state(out_dir, resume_key)
    claim.record_config()  # the input is checked: the job runs
    if saved is not None:
        student.load_state_dict(saved["student"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        method.load_state_dict(saved["method"])
        state = LoopState(**saved["loop"])
        clock.elapsed_seconds = saved["train_seconds"]
        earlier_seconds = saved["total_seconds"]
        restore_rng(saved["rng"])

    def total_seconds() -> float:
        return earlier_seconds + time.perf_counter() - started

    def save(current: LoopState) -> None:
        save_run_state(
            out_dir,
            {
                "config_hash": resume_key,
                "student": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "method": method.state_dict(),
                "loop": vars(current),
                "train_seconds": clock.elapsed_seconds,
                "total_seconds": total_seconds(),
                "rng": capture_rng(),
            },
        )

    def evaluate_student() -> dict[str, float]:
        began = time.perf_counter()
        student_logits = predict(student, test_images, EVALUATION_BATCH_SIZE)
        metrics = evaluate(student_logits, teacher_logits, test.labels).as_dict()
        return {**metrics, "eval_seconds": time.perf_counter() - began}

    label = f"{config.method} {config.dataset} {config.teacher}-{config.student} seed{config.seed}"
    progress = Progress(label, config.loop.epochs, config.loop.rounds_per_epoch, "round")
    reset_peak_memory(device)
    stop = StopRequest()
    divergence: dict[str, Any] | None = None
    try:
        with stop.installed():
            # Printed once SIGTERM is caught, so a signal after this line always checkpoints.
            progress.start(
                state.epochs_completed, state.rounds_completed, resumed=saved is not None
            )
            state = distill(
                method, student, optimizer, scheduler, config.loop, state, clock,
                evaluate_student, save, progress, stop, compute.autocast,
            )  # fmt: skip
    except Diverged as error:
        progress.line(f"diverged: {error}; the last good checkpoint is kept")
        divergence = error.record
        saved = load_run_state(out_dir, resume_key)
        if saved is not None:  # report the last good student, not the NaN one
            student.load_state_dict(saved["student"])
            state = LoopState(**saved["loop"])
    finally:
        progress.close()

    write_run_outputs(
        out_dir,
        model_file="student.pt",
        save_model_file=lambda path: save_model(
            path, student, config.student, config.dataset, {"config_hash": digest}
        ),
        metrics=_metrics(config, digest, state, divergence, compute)
        | {
            "teacher": {
                "acc1": teacher_acc1,
                "config_hash": teacher_record.get("config_hash"),
                "sha256": teacher_sha256,
            },
            "total_hours": total_seconds() / 3600.0,
        },
        history=state.history,
        device=device,
    )
    if divergence is None:
        remove_run_state(out_dir)
    return 0


def _metrics(
    config: RunConfig,
    digest: str,
    state: LoopState,
    divergence: dict[str, Any] | None,
    compute: Compute,
) -> dict[str, Any]:
    return {
        "kind": "distillation",
        "status": "diverged" if divergence else "completed",
        "divergence": divergence,
        "run": {
            "protocol": config.protocol,
            "dataset": config.dataset,
            "teacher": config.teacher,
            "student": config.student,
            "method": config.method,
            "seed": config.seed,
        },
        "summary": summarize_history(
            state.history, config.statistics.start_epoch, config.statistics.accuracy_threshold
        )
        if state.history
        else {},
        "epochs_planned": config.loop.epochs,
        "epochs_completed": state.epochs_completed,
        "provenance": {
            **collect(compute.device, config.deterministic, digest),
            "compute": compute.describe(),
        },
        "config": to_dict(config),
    }
