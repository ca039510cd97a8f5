"""The suite's configuration: params files in, one frozen, fully resolved config per run out.

Sources (all strict: unknown or missing keys are errors, see dfkd.schema):
- `params.yaml`: data location, the experiment matrix (dataset -> pairs x methods x seeds and
  its protocol) and the protocols (`paper`, `quick`, `tiny`). Read by Snakemake and by DVC.
- `params/teachers.yaml`: the teacher training recipe per dataset.
- `params/methods/<name>.yaml`: one method variant each: its implementation, its published
  schedule and hyperparameters (every value citing its source) and per-dataset/per-pair
  overrides taken from the reference scripts.
- `params/published.yaml`: the published numbers the reports print beside the reproduced ones.

A protocol may shrink the published schedules (`quick`, `tiny`) and keep their shape:
- fewer epochs move any learning-rate milestones to the same fraction of the schedule;
- `student_steps_per_epoch` repeats each method's own round (its generator and student steps,
  unchanged) as often as that many student steps need, at least once; the published loops of the
  CMI code base run 400 student steps per epoch (`--ep_steps 400`);
- a smaller batch scales the student's SGD learning rate with the batch, by the protocol's
  `learning_rate_scaling` rule: "linear" (Goyal et al. 2017, arXiv 1706.02677) or "sqrt"
  (Krizhevsky 2014, arXiv 1404.5997; Hoffer et al. 2017, arXiv 1705.08741). Keeping lr 0.1 at a
  batch of 32 instead of 256 kills small students: their ReLUs die within an epoch. Adam
  learning rates (generators) are not scaled.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

import dfkd
from dfkd.atomic import atomic_write_text
from dfkd.data import DATASETS
from dfkd.errors import ConfigError
from dfkd.methods import METHODS
from dfkd.models import MODELS
from dfkd.schema import from_dict, non_negative, positive, to_dict

# ---------------------------------------------------------------------------------------------
# Building blocks


@dataclass(frozen=True)
class SGDConfig:
    learning_rate: float = field(metadata=positive)
    momentum: float = field(metadata=non_negative)
    weight_decay: float = field(metadata=non_negative)
    schedule: Literal["cosine", "multistep", "constant"]  # stepped once per epoch
    milestones: tuple[int, ...]  # epochs after which the lr is multiplied by gamma (multistep)
    gamma: float = field(metadata=positive)

    def __post_init__(self) -> None:
        if self.momentum >= 1:
            raise ValueError(f"momentum: got {self.momentum}; expected a number in [0, 1)")
        if list(self.milestones) != sorted(set(self.milestones)) or any(
            m <= 0 for m in self.milestones
        ):
            raise ValueError(f"milestones: got {list(self.milestones)}; expected increasing epochs")
        if self.schedule != "multistep" and self.milestones:
            raise ValueError(
                f"milestones are only used by schedule 'multistep', not '{self.schedule}'"
            )


@dataclass(frozen=True)
class LoopConfig:
    """The distillation schedule (vocabulary in dfkd/methods/base.py)."""

    epochs: int = field(metadata=positive)
    rounds_per_epoch: int = field(metadata=positive)
    generator_steps_per_round: int = field(metadata=positive)
    student_steps_per_round: int = field(metadata=positive)
    batch_size: int = field(metadata=positive)
    student_optimizer: SGDConfig

    def __post_init__(self) -> None:
        _check_milestones(self.student_optimizer, self.epochs, "student_optimizer.milestones")


@dataclass(frozen=True)
class TeacherRecipe:
    epochs: int = field(metadata=positive)
    batch_size: int = field(metadata=positive)
    optimizer: SGDConfig

    def __post_init__(self) -> None:
        _check_milestones(self.optimizer, self.epochs, "optimizer.milestones")


def _check_milestones(optimizer: SGDConfig, epochs: int, key: str) -> None:
    if any(m >= epochs for m in optimizer.milestones):
        raise ValueError(
            f"{key}: got {list(optimizer.milestones)}; each must be < epochs ({epochs})"
        )


@dataclass(frozen=True)
class DataSettings:
    root: str  # relative to the working directory; holds every dataset's folder
    download: bool  # may torchvision download a missing dataset?


@dataclass(frozen=True)
class Protocol:
    description: str
    teacher_epochs: int | None = field(metadata=positive)  # null keeps the published recipe
    distill_epochs: int | None = field(metadata=positive)
    student_steps_per_epoch: int | None = field(metadata=positive)  # rounds repeated to about this
    batch_size: int | None = field(metadata=positive)
    # How a protocol batch moves the student's learning rate; set exactly when batch_size is.
    learning_rate_scaling: Literal["linear", "sqrt"] | None
    stability_start_epoch: int = field(metadata=positive)  # mu/sigma^2 from this epoch on
    deterministic: bool  # deterministic algorithms, no cuDNN benchmarking

    def __post_init__(self) -> None:
        if (self.batch_size is None) != (self.learning_rate_scaling is None):
            raise ValueError(
                "batch_size and learning_rate_scaling: set both (a protocol batch scales the "
                "student learning rate) or neither"
            )


@dataclass(frozen=True)
class Experiment:
    protocol: str
    pairs: tuple[str, ...]  # "<teacher>-<student>"
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    teacher_seed: int
    accuracy_threshold: float = field(metadata=positive)  # percent; t_90 uses 90 on CIFAR-10

    def __post_init__(self) -> None:
        for name, values in (
            ("pairs", self.pairs),
            ("methods", self.methods),
            ("seeds", self.seeds),
        ):
            if not values:
                raise ValueError(f"{name}: must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: got {list(values)}; entries must be unique")
        if self.accuracy_threshold > 100:
            raise ValueError(f"accuracy_threshold: got {self.accuracy_threshold}; a percentage")


@dataclass(frozen=True)
class SuiteParams:
    """params.yaml."""

    data: DataSettings
    experiments: dict[str, Experiment]
    protocols: dict[str, Protocol]


@dataclass(frozen=True)
class MethodParams:
    """params/methods/<name>.yaml."""

    implementation: str
    source: str
    schedule: LoopConfig
    hyperparameters: dict[str, Any]
    overrides: dict[str, Any]  # "<dataset>" or "<dataset>/<teacher>-<student>" -> partial params


@dataclass(frozen=True)
class PublishedResult:
    acc1: float
    agree1: float | None
    lp: float | None
    source: str  # key into the sources table


# ---------------------------------------------------------------------------------------------
# Resolved per-run configs (what a training command receives)


@dataclass(frozen=True)
class StatisticsConfig:
    start_epoch: int = field(metadata=positive)
    accuracy_threshold: float = field(metadata=positive)


@dataclass(frozen=True)
class TeacherRunConfig:
    suite_version: str
    protocol: str
    dataset: str
    architecture: str
    seed: int
    data: DataSettings
    recipe: TeacherRecipe
    deterministic: bool


@dataclass(frozen=True)
class RunConfig:
    suite_version: str
    protocol: str
    dataset: str
    teacher: str
    student: str
    method: str
    implementation: str
    seed: int
    data: DataSettings
    teacher_checkpoint: str
    loop: LoopConfig
    hyperparameters: dict[str, Any]
    statistics: StatisticsConfig
    deterministic: bool


def config_hash(config: Any) -> str:
    """A short content hash of a resolved config; a checkpoint resumes only the same hash."""
    text = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_config(config: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def load_run_config(path: str | Path) -> RunConfig:
    return from_dict(RunConfig, read_yaml(Path(path)), str(path))


def load_teacher_config(path: str | Path) -> TeacherRunConfig:
    return from_dict(TeacherRunConfig, read_yaml(Path(path)), str(path))


# ---------------------------------------------------------------------------------------------
# Loading and validating the params files


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def _merge(base: Any, update: Any) -> Any:
    """Recursive dict merge; `update` wins. Lists and scalars are replaced, not merged."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(update)


@dataclass(frozen=True)
class Suite:
    """Everything in the params files, validated."""

    params: SuiteParams
    teachers: dict[str, TeacherRecipe]
    methods: dict[str, MethodParams]
    published: dict[str, Any]
    params_dir: Path

    # -- the experiment matrix ----------------------------------------------------------------

    def protocol_of(self, dataset: str) -> str:
        return self.params.experiments[dataset].protocol

    def runs(self, dataset: str) -> list[dict[str, Any]]:
        """One entry per (pair, method, seed) of the dataset's experiment, in table order."""
        experiment = self.params.experiments[dataset]
        return [
            {
                "protocol": experiment.protocol,
                "dataset": dataset,
                "teacher": pair.split("-")[0],
                "student": pair.split("-")[1],
                "method": method,
                "seed": seed,
            }
            for pair in experiment.pairs
            for method in experiment.methods
            for seed in experiment.seeds
        ]

    def teachers_of(self, dataset: str) -> list[str]:
        pairs = self.params.experiments[dataset].pairs
        return sorted({pair.split("-")[0] for pair in pairs})

    # -- resolution ---------------------------------------------------------------------------

    def teacher_config(self, protocol: str, dataset: str, architecture: str) -> TeacherRunConfig:
        experiment = self._experiment(dataset, protocol)
        chosen = self.params.protocols[protocol]
        recipe = self.teachers[dataset]
        if chosen.teacher_epochs is not None:
            recipe = replace(
                recipe,
                epochs=chosen.teacher_epochs,
                optimizer=_scaled(recipe.optimizer, recipe.epochs, chosen.teacher_epochs),
            )
        if architecture not in self.teachers_of(dataset):
            raise ConfigError(f"no pair of experiment '{dataset}' has teacher '{architecture}'")
        return TeacherRunConfig(
            suite_version=dfkd.__version__,
            protocol=protocol,
            dataset=dataset,
            architecture=architecture,
            seed=experiment.teacher_seed,
            data=self.params.data,
            recipe=recipe,
            deterministic=chosen.deterministic,
        )

    def run_config(
        self,
        protocol: str,
        dataset: str,
        teacher: str,
        student: str,
        method: str,
        seed: int,
        teacher_checkpoint: str,
    ) -> RunConfig:
        experiment = self._experiment(dataset, protocol)
        if f"{teacher}-{student}" not in experiment.pairs:
            raise ConfigError(f"pair '{teacher}-{student}' is not in experiment '{dataset}'")
        if method not in experiment.methods or seed not in experiment.seeds:
            raise ConfigError(f"method '{method}' seed {seed} is not in experiment '{dataset}'")
        chosen = self.params.protocols[protocol]
        schedule, hyperparameters = self.method_settings(method, dataset, f"{teacher}-{student}")
        if chosen.distill_epochs is not None:
            schedule = replace(
                schedule,
                epochs=chosen.distill_epochs,
                student_optimizer=_scaled(
                    schedule.student_optimizer, schedule.epochs, chosen.distill_epochs
                ),
            )
        if chosen.student_steps_per_epoch is not None:
            rounds = chosen.student_steps_per_epoch / schedule.student_steps_per_round
            schedule = replace(schedule, rounds_per_epoch=max(1, round(rounds)))
        if chosen.batch_size is not None:
            ratio = chosen.batch_size / schedule.batch_size
            factor = ratio if chosen.learning_rate_scaling == "linear" else math.sqrt(ratio)
            optimizer = schedule.student_optimizer
            schedule = replace(
                schedule,
                batch_size=chosen.batch_size,
                student_optimizer=replace(
                    optimizer, learning_rate=optimizer.learning_rate * factor
                ),
            )
        return RunConfig(
            suite_version=dfkd.__version__,
            protocol=protocol,
            dataset=dataset,
            teacher=teacher,
            student=student,
            method=method,
            implementation=self.methods[method].implementation,
            seed=seed,
            data=self.params.data,
            teacher_checkpoint=teacher_checkpoint,
            loop=schedule,
            hyperparameters=hyperparameters,
            statistics=StatisticsConfig(
                start_epoch=chosen.stability_start_epoch,
                accuracy_threshold=experiment.accuracy_threshold,
            ),
            deterministic=chosen.deterministic,
        )

    def _experiment(self, dataset: str, protocol: str) -> Experiment:
        if dataset not in self.params.experiments:
            choices = ", ".join(self.params.experiments)
            raise ConfigError(
                f"no experiment for dataset '{dataset}' in params.yaml; have: {choices}"
            )
        if protocol not in self.params.protocols:
            raise ConfigError(
                f"unknown protocol '{protocol}'; have: {', '.join(self.params.protocols)}"
            )
        return self.params.experiments[dataset]

    def method_settings(self, method: str, dataset: str, pair: str) -> tuple[LoopConfig, dict]:
        """A method's published schedule and hyperparameters with its overrides for dataset/pair."""
        return _method_settings(self.methods[method], method, dataset, pair, self.params_dir)


def _scaled(optimizer: SGDConfig, old_epochs: int, new_epochs: int) -> SGDConfig:
    """Milestones moved to the same fraction of a shortened (or lengthened) schedule."""
    milestones = sorted({max(1, round(m * new_epochs / old_epochs)) for m in optimizer.milestones})
    return replace(optimizer, milestones=tuple(m for m in milestones if m < new_epochs))


def _method_settings(
    method: MethodParams, name: str, dataset: str, pair: str, params_dir: Path
) -> tuple[LoopConfig, dict[str, Any]]:
    source = str(params_dir / "methods" / f"{name}.yaml")
    merged: dict[str, Any] = {
        "schedule": to_dict(method.schedule),
        "hyperparameters": method.hyperparameters,
    }
    for key in (dataset, f"{dataset}/{pair}"):
        if key in method.overrides:
            merged = _merge(merged, method.overrides[key])
    schedule = from_dict(LoopConfig, merged["schedule"], source, "schedule")
    implementation = METHODS.get(method.implementation)
    hyperparameters = to_dict(
        from_dict(implementation.config_class, merged["hyperparameters"], source, "hyperparameters")
    )
    return schedule, hyperparameters


def load_suite(params: Mapping[str, Any], params_dir: str | Path = "params") -> Suite:
    """Validates params.yaml's content (as Snakemake's `config`) and the files under params/.

    Raises ConfigError listing every problem found, one line each.
    """
    params_dir = Path(params_dir)
    problems: list[str] = []

    def attempt(build):  # collect problems across files instead of stopping at the first
        try:
            return build()
        except ConfigError as error:
            problems.extend(str(error).splitlines())
            return None

    suite_params: SuiteParams | None = attempt(
        lambda: from_dict(SuiteParams, params, "params.yaml")
    )
    teachers_path = params_dir / "teachers.yaml"
    teachers = attempt(
        lambda: from_dict(dict[str, TeacherRecipe], read_yaml(teachers_path), str(teachers_path))
    )
    published_path = params_dir / "published.yaml"
    published = attempt(lambda: _load_published(published_path))

    methods: dict[str, MethodParams] = {}
    for path in sorted((params_dir / "methods").glob("*.yaml")):
        loaded = attempt(lambda path=path: _load_method(path))
        if loaded is not None:
            methods[path.stem] = loaded

    if suite_params is not None:
        problems.extend(_cross_check(suite_params, teachers or {}, methods, params_dir))
    if problems:
        raise ConfigError("\n".join(problems))
    return Suite(suite_params, teachers, methods, published, params_dir)


def _load_method(path: Path) -> MethodParams:
    method = from_dict(MethodParams, read_yaml(path), str(path))
    METHODS.get(method.implementation)
    for key, override in method.overrides.items():
        if not isinstance(override, Mapping) or set(override) - {"schedule", "hyperparameters"}:
            raise ConfigError(
                f"{path}: overrides.{key}: expected a mapping with 'schedule' and/or "
                "'hyperparameters'"
            )
        dataset, _, pair = key.partition("/")
        if dataset not in DATASETS or (pair and not _is_pair(pair)):
            raise ConfigError(
                f"{path}: overrides.{key}: expected '<dataset>' or '<dataset>/<teacher>-<student>' "
                f"with a known dataset ({', '.join(sorted(DATASETS))}) and models"
            )
    for key in ["", *method.overrides]:  # every override must yield a valid config on its own
        dataset, _, pair = key.partition("/")
        _method_settings(method, path.stem, dataset, pair, path.parent.parent)
    return method


def _is_pair(pair: str) -> bool:
    teacher, _, student = pair.partition("-")
    return teacher in MODELS and student in MODELS


def _load_published(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if not isinstance(data, Mapping) or set(data) != {"sources", "teachers", "results"}:
        raise ConfigError(f"{path}: expected exactly the keys 'sources', 'teachers' and 'results'")
    sources = from_dict(dict[str, str], data["sources"], str(path), "sources")
    teachers = from_dict(
        dict[str, dict[str, PublishedResult]], data["teachers"], str(path), "teachers"
    )
    results = from_dict(
        dict[str, dict[str, dict[str, PublishedResult]]], data["results"], str(path), "results"
    )
    cells = [(f"teachers.{d}.{m}", r) for d, models in teachers.items() for m, r in models.items()]
    cells += [
        (f"results.{d}.{p}.{m}", r)
        for d, pairs in results.items()
        for p, methods in pairs.items()
        for m, r in methods.items()
    ]
    for key, result in cells:
        if result.source not in sources:
            raise ConfigError(
                f"{path}: {key}.source: unknown source '{result.source}'; "
                f"have: {', '.join(sources)}"
            )
    return {"sources": sources, "teachers": teachers, "results": results}


def _cross_check(
    params: SuiteParams,
    teachers: Mapping[str, TeacherRecipe],
    methods: Mapping[str, MethodParams],
    params_dir: Path,
) -> list[str]:
    problems = []
    for dataset, experiment in params.experiments.items():
        where = f"params.yaml: experiments.{dataset}"
        if dataset not in DATASETS:
            problems.append(
                f"{where}: unknown dataset; choose one of: {', '.join(sorted(DATASETS))}"
            )
        elif dataset not in teachers:
            problems.append(f"{where}: no teacher recipe for it in {params_dir / 'teachers.yaml'}")
        if experiment.protocol not in params.protocols:
            problems.append(
                f"{where}.protocol: unknown protocol '{experiment.protocol}'; "
                f"choose one of: {', '.join(params.protocols)}"
            )
        for pair in experiment.pairs:
            teacher, dash, student = pair.partition("-")
            for role, model in (("teacher", teacher), ("student", student)):
                if not dash or model not in MODELS:
                    problems.append(
                        f"{where}.pairs: '{pair}' has an unknown {role} model '{model}'; expected "
                        f"'<teacher>-<student>' from: {', '.join(MODELS.names())}"
                    )
                    break
        for method in experiment.methods:
            if method not in methods:
                known = ", ".join(sorted(methods)) or "none"
                problems.append(
                    f"{where}.methods: unknown method '{method}' (no "
                    f"{params_dir / 'methods' / (method + '.yaml')}); have: {known}"
                )
    return problems
