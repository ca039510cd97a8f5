"""Helpers for the tests: tiny CPU networks and methods from the real params, repository copies."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from dfkd.config import Suite
from dfkd.data import dataset_info
from dfkd.methods import METHODS, DFKDMethod
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.runtime import memory_format
from dfkd.schema import from_dict

REPOSITORY = Path(__file__).resolve().parents[1]


def method_names() -> list[str]:
    return sorted(path.stem for path in (REPOSITORY / "params" / "methods").glob("*.yaml"))


def frozen_teacher(seed: int = 0) -> torch.nn.Module:
    """A cnn_small whose BN running statistics are those of some data, not the 0/1 defaults."""
    torch.manual_seed(seed)
    teacher = build_model("cnn_small", 10)
    teacher.train()
    size = dataset_info("digits").image_size
    with torch.no_grad():
        for _ in range(3):
            teacher(torch.randn(16, 3, size, size) * 0.7 + 0.2)
    return teacher.eval().requires_grad_(False)


def build_method(
    suite: Suite,
    name: str,
    batch_size: int = 8,
    seed: int = 0,
    dataset: str = "digits",
    epochs: int = 10,
    overrides: dict | None = None,
    warmup_epochs: int = 0,
) -> DFKDMethod:
    """Method `name` with its digits settings, a frozen cnn_small teacher, a cnn_tiny student,
    in the geometry and augmentation of `dataset` (10 classes), after `warmup_epochs` of a
    loop's synthesis-only warm-up."""
    _, hyperparameters = suite.method_settings(name, "digits", "cnn_small-cnn_tiny")
    implementation = METHODS.get(suite.methods[name].implementation)
    config = from_dict(implementation.config_class, {**hyperparameters, **(overrides or {})}, name)
    info = dataset_info(dataset)
    teacher = frozen_teacher(seed)
    torch.manual_seed(seed + 1)
    cpu = torch.device("cpu")
    context = method_context(
        info, teacher, build_model("cnn_tiny", 10), batch_size, epochs, cpu, memory_format(cpu),
        warmup_epochs=warmup_epochs,
    )  # fmt: skip
    return implementation(config, context)


BIN = Path(sys.executable).parent  # snakemake, dvc and dfkd live next to the interpreter


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_command(
    command: list[str], cwd: Path, check: bool = True, extra_environment: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**environment(), **(extra_environment or {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


SNAKEMAKE = [str(BIN / "snakemake"), "--cores", "all", "reports/digits_table.md"]
# Snakemake's own notices, which it prints before the workflow runs any of its code.
SNAKEMAKE_NOTICES = (
    "Using workflow specific profile profiles/default",
    "Config file params.yaml is extended by additional config specified via the command line.",
)


def snakemake_main(
    repository: Path, *extra: str, extra_environment: dict | None = None
) -> subprocess.CompletedProcess:
    """The main command (README) in `repository`, with `extra` arguments; never checked."""
    return run_command(
        [*SNAKEMAKE, *extra], repository, check=False, extra_environment=extra_environment
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without Snakemake's own notices."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    while lines and lines[0].startswith(SNAKEMAKE_NOTICES):
        lines = lines[1:]
    return lines


def edit_yaml(path: Path, edit) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def copy_repository(destination: Path) -> Path:
    """The project's files (tracked or new, never ignored ones) in a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPOSITORY / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    run_command(["git", "init", "-q"], destination)
    run_command(["git", "add", "-A"], destination)
    run_command(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "x"],
        destination,
    )
    return destination


def shrink_tiny_protocol(
    repository: Path, methods: list[str] | None = None, student_steps_per_epoch: int = 30
) -> None:
    """Fewer epochs (and, given `methods`, only those methods in the embedded default), for
    tests that compare runs or files rather than judge how well students learn; committed, so
    the copy stays clean."""
    import yaml

    path = repository / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["protocols"]["tiny"].update(
        teacher_epochs=3,
        distill_epochs=2,
        student_steps_per_epoch=student_steps_per_epoch,
        stability_start_epoch=1,
    )
    if methods is not None:
        params["experiments"]["digits"]["methods"] = methods
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    commit(repository, "params.yaml", "shrink")


def commit(repository: Path, paths: str, message: str) -> None:
    run_command(["git", "add", *paths.split()], repository)
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit"]
    run_command([*command, "-qm", message], repository)


def shrink_like_finished(repository: Path) -> None:
    """The protocol of `finished_digits`: DAFL and DFQ (what the tests that read it touch), with
    runs long enough (a few seconds) to be stopped while they run."""
    shrink_tiny_protocol(repository, methods=["dafl", "dfq"], student_steps_per_epoch=120)


def history_without_timings(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    return [{k: v for k, v in epoch.items() if not k.endswith("_seconds")} for epoch in history]


def finished_digits(shared: Path) -> Path:
    """A repository copy under `shared` whose shrunk embedded default (`shrink_like_finished`)
    `dvc repro` has run to the end under umask 022, committed with its dvc.lock as a user would;
    built by the first test worker that asks, under a lock, and read by all of them."""
    import fcntl

    repository = shared / "digits-finished"
    with (shared / "digits-finished.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (shared / "digits-finished.done").exists():
            return repository
        shutil.rmtree(repository, ignore_errors=True)  # a build that failed in another worker
        copy_repository(repository)
        shrink_like_finished(repository)
        previous = os.umask(0o022)  # the usual default, inherited by every job
        try:
            run_command([str(BIN / "dvc"), "repro", "benchmark@digits"], repository)
        finally:
            os.umask(previous)
        # dvc.lock, and the headline metrics and histories that DVC reads from git (dvc.yaml).
        commit(repository, "dvc.lock reports", "finished")
        (shared / "digits-finished.done").touch()
    return repository


def copy_finished(finished: Path, destination: Path) -> Path:
    """A private copy of a finished repository, with its results, its DVC cache and Snakemake's
    metadata, file times kept (Snakemake would otherwise see every output as outdated)."""
    shutil.copytree(finished, destination, symlinks=True)
    return destination


def planned_jobs(repository: Path, target: str = "reports/digits_table.md") -> dict[str, int]:
    """Job counts of Snakemake's dry run for `target`, the total included; {} for nothing."""
    plan = run_command([str(BIN / "snakemake"), "-n", "--cores", "1", target], repository)
    return {name: int(n) for name, n in re.findall(r"^(\w+) +(\d+)$", plan.stdout, re.MULTILINE)}


def assert_a_changed_setting_reruns_exactly_its_jobs(repository: Path) -> None:
    """In a finished shrunk embedded default: a DFQ hyperparameter changed re-runs DFQ's two runs
    and the report (the dry run writes nothing), and changing it back re-runs nothing."""
    method = repository / "params/methods/dfq.yaml"
    original = method.read_text()
    method.write_text(original.replace("class_balance_weight: 20.0", "class_balance_weight: 19.0"))
    assert planned_jobs(repository) == {"distill": 2, "report": 1, "total": 3}
    method.write_text(original)
    assert planned_jobs(repository) == {}
