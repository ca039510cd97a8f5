"""The validated params files as one object that resolves run configs (see dfkd.config)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dfkd
from dfkd.config.settings import (
    Experiment,
    ImportTeacherConfig,
    LabelEmbeddingsConfig,
    LabelEmbeddingSource,
    LoopConfig,
    MethodParams,
    OptimizerConfig,
    ReleasedTeachers,
    RunConfig,
    StatisticsConfig,
    SuiteParams,
    TeacherRecipe,
    TeacherRunConfig,
)
from dfkd.config.studies import StudiesFile, Study
from dfkd.errors import ConfigError
from dfkd.label_embeddings import STAND_IN, STAND_IN_SOURCE
from dfkd.methods import METHODS
from dfkd.schema import from_dict, to_dict


def merge(base: Any, update: Any) -> Any:
    """Recursive dict merge; `update` wins. Lists and scalars are replaced, not merged."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(update)


@dataclass(frozen=True)
class Suite:
    """Everything in the params files, validated."""

    params: SuiteParams
    teachers: dict[str, TeacherRecipe]
    methods: dict[str, MethodParams]
    published: dict[str, Any]
    studies: StudiesFile
    released: ReleasedTeachers
    params_dir: Path
    label_embedding_sources: dict[str, LabelEmbeddingSource] = field(default_factory=dict)

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
        if architecture not in self.teachers_of(dataset):
            raise ConfigError(f"no pair of experiment '{dataset}' has teacher '{architecture}'")
        return self._teacher_run(protocol, dataset, architecture, self.teachers[dataset])

    def teacher_source(self, dataset: str) -> str:
        return self.params.experiments[dataset].teacher_source

    def import_teacher_config(
        self, protocol: str, dataset: str, architecture: str
    ) -> ImportTeacherConfig:
        """A released teacher of the experiment (params/released_teachers.yaml)."""
        self._experiment(dataset, protocol)
        try:
            collection, chosen = self.released.find(dataset, architecture)
        except KeyError:
            raise ConfigError(
                f"no released teacher '{architecture}' for dataset '{dataset}'"
            ) from None
        return ImportTeacherConfig(
            suite_version=dfkd.__version__,
            protocol=protocol,
            dataset=dataset,
            architecture=architecture,
            checkpoint=str(Path(collection.directory, chosen.file)),
            sha256=chosen.sha256,
            format=collection.format,
            source=collection.source,
            data=self.params.data,
        )

    def teacher_variant_config(
        self, protocol: str, dataset: str, variant: str, architecture: str
    ) -> TeacherRunConfig:
        """A teacher from a study's teacher variant (params/studies.yaml)."""
        chosen = self.studies.teacher_variants.get(variant)
        if chosen is None or chosen.dataset != dataset:
            raise ConfigError(f"no teacher variant '{variant}' for dataset '{dataset}'")
        return self._teacher_run(protocol, dataset, architecture, chosen.recipe)

    def _teacher_run(
        self, protocol: str, dataset: str, architecture: str, recipe: TeacherRecipe
    ) -> TeacherRunConfig:
        experiment = self._experiment(dataset, protocol)
        chosen = self.params.protocols[protocol]
        if chosen.teacher_epochs is not None:
            recipe = replace(
                recipe,
                epochs=chosen.teacher_epochs,
                optimizer=_scaled(recipe.optimizer, recipe.epochs, chosen.teacher_epochs),
                warmup_epochs=min(recipe.warmup_epochs, chosen.teacher_epochs - 1),
            )
        return TeacherRunConfig(
            suite_version=dfkd.__version__,
            protocol=protocol,
            dataset=dataset,
            architecture=architecture,
            seed=experiment.teacher_seed,
            data=self.params.data,
            recipe=recipe,
            deterministic=chosen.deterministic,
            compute=experiment.compute,
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
        return self._resolve_run(
            protocol, dataset, teacher, student, method, seed, teacher_checkpoint, None
        )

    def study_run_config(
        self, study: str, cell: str, seed: int, teacher_checkpoint: str
    ) -> RunConfig:
        """A run of a study's cell: its method's settings with the cell's changes merged in."""
        chosen = self.study(study)
        if cell not in chosen.cells or seed not in chosen.seeds:
            raise ConfigError(f"study '{study}' has no cell '{cell}' with seed {seed}")
        spec = chosen.cells[cell]
        teacher, student = chosen.pair.split("-")
        changes = {"schedule": spec.schedule, "hyperparameters": spec.hyperparameters}
        return self._resolve_run(
            self.protocol_of(chosen.experiment), chosen.experiment, teacher, student, spec.method,
            seed, teacher_checkpoint, changes,
        )  # fmt: skip

    def study(self, name: str) -> Study:
        if name not in self.studies.studies:
            have = ", ".join(self.studies.studies) or "none"
            where = self.params_dir / "studies.yaml"
            raise ConfigError(f"no study '{name}' in {where}; have: {have}")
        return self.studies.studies[name]

    def study_runs(self, name: str) -> list[dict[str, Any]]:
        """One entry per (cell, seed) of a study, in table order."""
        study = self.study(name)
        protocol = self.protocol_of(study.experiment)
        teacher, student = study.pair.split("-")
        return [
            {
                "protocol": protocol, "dataset": study.experiment, "study": name, "cell": cell,
                "seed": seed, "teacher": teacher, "student": student, "method": spec.method,
                "teacher_variant": spec.teacher,
            }
            for cell, spec in study.cells.items()
            for seed in study.seeds
        ]  # fmt: skip

    def _resolve_run(
        self,
        protocol: str,
        dataset: str,
        teacher: str,
        student: str,
        method: str,
        seed: int,
        teacher_checkpoint: str,
        changes: Mapping[str, Any] | None,
    ) -> RunConfig:
        experiment = self._experiment(dataset, protocol)
        chosen = self.params.protocols[protocol]
        schedule, hyperparameters = resolve_method_settings(
            self.methods[method], method, dataset, f"{teacher}-{student}", self.params_dir, changes
        )
        epochs = chosen.epochs_for(dataset)
        if epochs is not None:
            schedule = rescheduled(schedule, epochs)
        if chosen.student_steps_per_epoch is not None:
            target, per_round = chosen.student_steps_per_epoch, schedule.student_steps_per_round
            schedule = replace(
                schedule,
                rounds_per_epoch=max(1, round(target / per_round)),
                student_steps_per_round=min(per_round, target),  # one long round is cut short
            )
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
        if chosen.student_images is not None:  # a matched budget, the warm-up unchanged
            per_epoch = schedule.student_images // schedule.training_epochs
            schedule = with_training_epochs(
                schedule, max(1, round(chosen.student_images / per_epoch))
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
            compute=experiment.compute,
            label_embeddings=self.label_embeddings(hyperparameters, dataset),
        )

    def label_embeddings(
        self, hyperparameters: Mapping[str, Any], dataset: str
    ) -> LabelEmbeddingsConfig | None:
        """The class embeddings a method's `label_embeddings` names for `dataset`: the stand-in,
        or a file of params/label_embeddings.yaml (None for a method without the field)."""
        name = hyperparameters.get("label_embeddings")
        if name is None:
            return None
        if name == STAND_IN:
            return LabelEmbeddingsConfig(STAND_IN, None, None, STAND_IN_SOURCE)
        where = self.params_dir / "label_embeddings.yaml"
        source = self.label_embedding_sources.get(name)
        if source is None:
            have = ", ".join([STAND_IN, *self.label_embedding_sources])
            raise ConfigError(f"label_embeddings: unknown '{name}' (not in {where}); have: {have}")
        if dataset not in source.files:
            raise ConfigError(
                f"label_embeddings: {where} lists no '{name}' file for {dataset}; add one or "
                f"choose {STAND_IN}"
            )
        chosen = source.files[dataset]
        path = str(Path(source.directory, chosen.file))
        return LabelEmbeddingsConfig(name, path, chosen.sha256, source.source)

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
        return resolve_method_settings(self.methods[method], method, dataset, pair, self.params_dir)


def _scaled(optimizer: OptimizerConfig, old_epochs: int, new_epochs: int) -> OptimizerConfig:
    """Milestones and a cosine's set length moved to the same fraction of a shortened (or
    lengthened) schedule."""
    milestones = sorted({max(1, round(m * new_epochs / old_epochs)) for m in optimizer.milestones})
    length = optimizer.cosine_epochs
    return replace(
        optimizer,
        milestones=tuple(m for m in milestones if m < new_epochs),
        cosine_epochs=None if length is None else max(1, round(length * new_epochs / old_epochs)),
    )


def with_training_epochs(loop: LoopConfig, training_epochs: int) -> LoopConfig:
    """`loop` with this many epochs after its warm-up (the warm-up kept), its lr schedule moved
    to the same fraction of them."""
    optimizer = _scaled(loop.student_optimizer, loop.training_epochs, training_epochs)
    return replace(loop, epochs=loop.warmup_epochs + training_epochs, student_optimizer=optimizer)


def rescheduled(loop: LoopConfig, epochs: int) -> LoopConfig:
    """`loop` over `epochs` in all, its warm-up and lr schedule moved to the same fraction."""
    warmup = round(loop.warmup_epochs * epochs / loop.epochs)
    if loop.warmup_epochs:
        warmup = min(max(warmup, 1), epochs - 1)  # a warm-up stays, and so does training
    optimizer = _scaled(loop.student_optimizer, loop.training_epochs, epochs - warmup)
    return replace(
        loop,
        epochs=epochs,
        warmup_epochs=warmup,
        warmup_syntheses_per_epoch=loop.warmup_syntheses_per_epoch if warmup else 0,
        student_optimizer=optimizer,
    )


def resolve_method_settings(
    method: MethodParams,
    name: str,
    dataset: str,
    pair: str,
    params_dir: Path,
    changes: Mapping[str, Any] | None = None,
) -> tuple[LoopConfig, dict[str, Any]]:
    """A method's settings for dataset/pair: its own, its overrides, then `changes` (a study's)."""
    source = str(params_dir / "methods" / f"{name}.yaml")
    merged: dict[str, Any] = {
        "schedule": to_dict(method.schedule),
        "hyperparameters": method.hyperparameters,
    }
    for key in (dataset, f"{dataset}/{pair}"):
        if key in method.overrides:
            merged = merge(merged, method.overrides[key])
    if changes:
        merged = merge(merged, changes)
    schedule = from_dict(LoopConfig, merged["schedule"], source, "schedule")
    implementation = METHODS.get(method.implementation)
    hyperparameters = to_dict(
        from_dict(implementation.config_class, merged["hyperparameters"], source, "hyperparameters")
    )
    return schedule, hyperparameters
