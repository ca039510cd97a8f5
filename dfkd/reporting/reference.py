"""The embedded default against its committed reference, seed by seed.

benchmarks/seed_robustness.py runs the embedded default over five seeds on a fresh clone and
commits every run's final-epoch Acc@1 with the resolved recipe of every method and teacher.
Runs on the CPU are deterministic, so a run of the same recipe and seed must end at exactly the
same accuracy: the report says so per run, or names the seed that differs and by how much (in
points and in test images). A run whose recipe differs from the reference's is not compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dfkd.errors import UserError

# Entries of a resolved config that do not change a run's outcome.
OUTCOME_IRRELEVANT = ("seed", "suite_version", "teacher_checkpoint", "data")

EQUAL, DIFFERS, NO_SEED, OTHER_RECIPE, DIVERGED = (
    "equal", "differs", "no reference", "other recipe", "diverged",
)  # fmt: skip


# Settings of features that are off (by the end of their path in a run's config): a recipe
# without the feature is the same recipe, so a result measured before the feature existed still
# holds for it.
FEATURES_OFF = {
    "label_embeddings": None,
    "loop.warmup_epochs": 0,
    "loop.warmup_syntheses_per_epoch": 0,
    "loop.syntheses_per_round": 1,
    "optimizer.cosine_epochs": None,
    "optimizer.minimum_learning_rate": 0.0,
    "hyperparameters.later_syntheses_student_mode": "eval",
}


def _without_features_off(value: Any, path: str = "") -> Any:
    if not isinstance(value, Mapping):
        return value
    kept = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        # `student_optimizer.cosine_epochs` ends as `optimizer.cosine_epochs` does
        ends = [end for end in FEATURES_OFF if where == end or where.endswith(f"_{end}")]
        ends += [end for end in FEATURES_OFF if where.endswith(f".{end}")]
        if not any(item == FEATURES_OFF[end] for end in ends):
            kept[key] = _without_features_off(item, where)
    return kept


def outcome_relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config less what does not change the outcome (seed, version, paths) and less
    the settings of features that are off."""
    kept = {key: value for key, value in config.items() if key not in OUTCOME_IRRELEVANT}
    return _without_features_off(kept)


@dataclass(frozen=True)
class Reference:
    """A committed seed-robustness result (benchmarks/results/seed_robustness.json)."""

    path: str
    experiment: str
    protocol: str
    commit: str
    environment: str  # "torch 2.14.1+cu130, x86_64", as the result records it
    finals: Mapping[str, Mapping[int, float]]  # "<pair>/<method>" -> seed -> final Acc@1
    teachers: Mapping[str, float]  # architecture -> final Acc@1
    recipes: Mapping[str, Any]  # "<pair>/<method>" or "teacher/<architecture>" -> recipe


def load_reference(path: str) -> Reference:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: reference result not found; run benchmarks/seed_robustness.py")
    try:
        data = json.loads(file.read_text())
        environment = data["environment"]
        return Reference(
            path=path,
            experiment=str(data["experiment"]),
            protocol=str(data["protocol"]),
            commit=str(environment["commit"])[:7],
            environment=f"torch {environment['torch']}, {environment['cpu']}",
            finals={
                key: {int(seed): float(value) for seed, value in row["final_acc1"].items()}
                for key, row in data["methods"].items()
            },
            teachers={name: float(value) for name, value in data["teachers"].items()},
            recipes=data["recipes"],
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path}: not a seed-robustness result ({type(error).__name__}: {error}); "
            "regenerate it with benchmarks/seed_robustness.py"
        ) from None


@dataclass(frozen=True)
class SeedCheck:
    """One run (or the teacher) against the reference."""

    key: str  # "<pair>/<method>" or "teacher/<architecture>"
    seed: int | None  # None for a teacher
    ours: float
    reference: float  # nan where not compared
    status: str  # EQUAL, DIFFERS, NO_SEED, OTHER_RECIPE or DIVERGED

    @property
    def difference(self) -> float:
        return self.ours - self.reference


def applies(reference: Reference | None, dataset: str, protocol: str) -> bool:
    return reference is not None and (reference.experiment, reference.protocol) == (
        dataset,
        protocol,
    )


def check_runs(
    reference: Reference, runs: pd.DataFrame, configs: Mapping[int, Mapping[str, Any]]
) -> list[SeedCheck]:
    """Every run of the table against its reference seed, in the table's order."""
    checks = []
    for index, row in runs.iterrows():
        key = f"{row['pair']}/{row['method']}"
        seed = int(row["seed"])
        ours = float(row["final_acc1"]) if row["status"] == "completed" else math.nan
        expected = reference.finals.get(key, {}).get(seed, math.nan)
        if row["status"] != "completed":
            status = DIVERGED
        elif key not in reference.recipes:
            status = NO_SEED
        elif outcome_relevant(configs[index]) != reference.recipes[key]:
            status, expected = OTHER_RECIPE, math.nan
        elif math.isnan(expected):
            status = NO_SEED
        else:
            status = EQUAL if ours == expected else DIFFERS
        checks.append(SeedCheck(key, seed, ours, expected, status))
    return checks


def check_teachers(
    reference: Reference, acc1: Mapping[str, list[float]], configs: Mapping[str, Mapping[str, Any]]
) -> list[SeedCheck]:
    checks = []
    for architecture, values in acc1.items():
        key = f"teacher/{architecture}"
        expected = reference.teachers.get(architecture, math.nan)
        ours = values[0] if len(values) == 1 else math.nan
        if key not in reference.recipes:
            status = NO_SEED
        elif outcome_relevant(configs.get(architecture, {})) != reference.recipes[key]:
            status, expected = OTHER_RECIPE, math.nan
        elif math.isnan(expected) or math.isnan(ours):
            status = NO_SEED
        else:
            status = EQUAL if ours == expected else DIFFERS
        checks.append(SeedCheck(key, None, ours, expected, status))
    return checks
