"""What the Snakemake workflow checks when it starts, before it schedules any job.

Bad input ends the workflow with one line per problem on stderr and exit status 2, as the `dfkd`
commands do. Finished results that other jobs read (dataset records, teachers, run metrics) are
verified too: Snakemake re-runs a job whose input changed and deletes the job's old outputs
first, so a damaged or replaced teacher would otherwise cost every finished run distilled from
it before the first job even read the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from dfkd.errors import UserError, print_user_error


def exit_with(error: UserError) -> NoReturn:
    print_user_error(error)
    sys.exit(2)


def check_params_file(path: str | Path) -> None:
    """Exits on a params file that is not valid YAML, naming the line and column (Snakemake's
    own loader, which reads it next, names neither)."""
    from dfkd.config import read_yaml

    try:
        read_yaml(Path(path))
    except UserError as error:
        exit_with(error)


def load_suite_or_exit(config: Mapping[str, Any], params_file: str, params_dir: str) -> Any:
    from dfkd.config import load_workflow_params

    try:
        return load_workflow_params(config, Path(params_file), params_dir)
    except UserError as error:
        exit_with(error)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, kind: str | None) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"{path} is damaged ({type(error).__name__})"
    if not isinstance(data, dict) or (kind is not None and data.get("kind") != kind):
        return None, f"{path} is not the metrics file of a {kind} run"
    return data, None


def damaged_results(
    dataset_records: Iterable[str], teacher_dirs: Iterable[str], run_dirs: Iterable[str]
) -> list[str]:
    """One line per finished result that is damaged or not what its run wrote."""
    problems = []
    for record in map(Path, dataset_records):
        if record.exists():
            _, problem = _read_json(record, kind=None)
            if problem:
                problems.append(f"{problem}; delete it to prepare the dataset again")
    for directory in map(Path, teacher_dirs):
        metrics_path, model = directory / "metrics.json", directory / "teacher.pt"
        if not metrics_path.exists():
            continue  # not finished: Snakemake trains it (again)
        metrics, problem = _read_json(metrics_path, kind="teacher")
        recorded = (metrics or {}).get("model_sha256")
        if problem is None and recorded and model.exists() and sha256_of(model) != recorded:
            problem = (
                f"{model} is not the teacher its run wrote (its SHA-256 differs from the one in "
                f"{metrics_path}): it was damaged or replaced"
            )
        if problem:
            problems.append(
                f"{problem}; restore it (`dvc checkout`) or delete {directory}/ to train it again"
            )
    for directory in map(Path, run_dirs):
        metrics_path = directory / "metrics.json"
        if metrics_path.exists():
            _, problem = _read_json(metrics_path, kind="distillation")
            if problem:
                problems.append(
                    f"{problem}; restore it (`dvc checkout`) or delete {directory}/ to run it again"
                )
    return problems


def check_finished_results_or_exit(
    dataset_records: Iterable[str], teacher_dirs: Iterable[str], run_dirs: Iterable[str]
) -> None:
    problems = damaged_results(dataset_records, teacher_dirs, run_dirs)
    if problems:
        exit_with(UserError("\n".join(problems)))
