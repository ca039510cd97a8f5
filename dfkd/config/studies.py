"""Declared studies (params/studies.yaml): ablations and sensitivity analyses, each a grid of
cells that change a method's settings, its teacher or the method itself, with the published
values beside each cell. None runs by default; each is a Snakemake target of its own
(reports/studies/<name>.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dfkd.config.settings import TeacherRecipe, check_seeds
from dfkd.schema import from_dict, non_negative

TRAINED = "trained"  # a cell's teacher: the experiment's own teacher recipe (params/teachers.yaml)


@dataclass(frozen=True)
class TeacherVariant:
    """Another recipe for a dataset's teachers, e.g. CuDFKD §5.4's noisy ResNet-34."""

    dataset: str
    source: str
    # The accuracy the paper reports for its own teacher of this recipe, printed beside ours.
    published_acc1: float | None = field(metadata=non_negative)
    recipe: TeacherRecipe


@dataclass(frozen=True)
class StudyValues:
    """A cell's published values; null where the paper shows none (a figure, a missing column)."""

    acc1: float | None
    agree1: float | None
    lp: float | None
    t90_hours: float | None = field(metadata=non_negative)


@dataclass(frozen=True)
class StudyCell:
    labels: tuple[str, ...]  # one per column of the study
    method: str  # a params/methods/<name>.yaml
    teacher: str  # "trained" or a teacher variant
    # Partial params merged over the method's own for the study's dataset and pair.
    schedule: dict[str, Any]
    hyperparameters: dict[str, Any]
    published: StudyValues | None


@dataclass(frozen=True)
class Study:
    title: str
    source: str  # where in the paper
    selection: str  # how the published values were selected
    experiment: str  # whose dataset, protocol, teacher seed and accuracy threshold it uses
    pair: str
    seeds: tuple[int, ...]
    columns: tuple[str, ...]
    cells: dict[str, StudyCell]  # path-safe id -> cell, in table order

    def __post_init__(self) -> None:
        if not self.cells or not self.seeds or not self.columns:
            raise ValueError("cells, seeds and columns: each must not be empty")
        check_seeds("seeds", self.seeds)
        for name, cell in self.cells.items():
            if len(cell.labels) != len(self.columns):
                raise ValueError(
                    f"cells.{name}.labels: got {len(cell.labels)} labels for "
                    f"{len(self.columns)} columns {list(self.columns)}"
                )
        labels = [cell.labels for cell in self.cells.values()]
        if len(set(labels)) != len(labels):
            raise ValueError("cells: two cells have the same labels")


@dataclass(frozen=True)
class StudiesFile:
    """params/studies.yaml."""

    teacher_variants: dict[str, TeacherVariant]
    studies: dict[str, Study]


def read_studies(data: Any, source: str) -> StudiesFile:
    """params/studies.yaml's content; top-level keys starting with `x-` hold YAML anchors only."""
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if not str(key).startswith("x-")}
    return from_dict(StudiesFile, data, source)
