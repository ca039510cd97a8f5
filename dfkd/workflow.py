"""What the Snakemake workflow checks when it starts, before it schedules any job.

Bad input ends the workflow with one line per problem on stderr and exit status 2, as the `dfkd`
commands do. Finished results are verified, and what runs again decided, by dfkd/freshness.py;
released teachers by `released_teacher_problems`, which `dfkd check` runs too.
"""

from __future__ import annotations

import hashlib
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


def inputs_record(paths: Iterable[str], root: Path = Path()) -> dict[str, Any]:
    """What a report is rendered from: the SHA-256 of each input file (paths relative to the
    workflow's folder, `root`), in its order (dfkd/freshness.py compares it)."""
    return {"inputs": {path: sha256_of(root / path) for path in paths}}


def released_teacher_problems(suite: Any, experiments: Iterable[str]) -> list[str]:
    """One line per released teacher that the experiments distil from and that is not
    downloaded, not pinned, or not the pinned file (params/released_teachers.yaml)."""
    problems = []
    for dataset in experiments:
        if suite.teacher_source(dataset) != "released":
            continue
        for architecture in suite.teachers_of(dataset):
            problem = released_teacher_problem(suite, dataset, architecture)
            if problem:
                problems.append(f"params.yaml: experiments.{dataset}: {problem}")
    return problems


def released_teacher_problem(suite: Any, dataset: str, architecture: str) -> str | None:
    """What keeps the released `architecture` of `dataset` from being imported, or None."""
    collection, chosen = suite.released.find(dataset, architecture)
    path = Path(collection.directory, chosen.file)
    steps = 'README, "Released teachers", steps 1-2'
    if not path.is_file():
        return (
            f"its released {architecture} is not downloaded: download {collection.url} so that "
            f"{path} exists, then pin its SHA-256 in params/released_teachers.yaml ({steps})"
        )
    digest = sha256_of(path)
    if chosen.sha256 is None:
        return (
            f"its released {architecture}, {path}, has no pin: compare its SHA-256 {digest} with "
            f"your download and write it as sha256 of {dataset}/{architecture} in "
            f"params/released_teachers.yaml ({steps})"
        )
    if digest != chosen.sha256:
        return (
            f"its released {architecture}, {path}, has SHA-256 {digest}, not the pinned "
            f"{chosen.sha256}: it was damaged or replaced; download {collection.url} again "
            f"({steps}) or correct the pin"
        )
    return None
