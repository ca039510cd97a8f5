"""The suite's configuration objects: frozen dataclasses from the params files, and the fully
resolved configs a training command receives (one YAML file per run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dfkd.atomic import atomic_write_text
from dfkd.errors import ConfigError
from dfkd.schema import from_dict, non_negative, positive, to_dict

# ---------------------------------------------------------------------------------------------
# Building blocks


@dataclass(frozen=True)
class OptimizerConfig:
    # "sgd": SGD with momentum (every teacher recipe, every CIFAR-scale student); "adam": Adam
    # with PyTorch's betas (MAD Table 5's ImageNet-scale students), for which momentum must be 0.
    algorithm: Literal["sgd", "adam"]
    learning_rate: float = field(metadata=positive)
    momentum: float = field(metadata=non_negative)
    weight_decay: float = field(metadata=non_negative)  # L2, added to the gradient by both
    schedule: Literal["cosine", "multistep", "constant"]  # stepped once per epoch
    milestones: tuple[int, ...]  # epochs after which the lr is multiplied by gamma (multistep)
    gamma: float = field(metadata=positive)
    # Cosine only: the lr it anneals to ("eta_min"; 2e-4 in NAYER's and Fast-DFKD's scripts) and
    # its length in epochs ("T_max"); null: the epochs the lr is stepped in, those after the
    # loop's warm-up. Past its length a cosine rises again, as torch's CosineAnnealingLR does.
    minimum_learning_rate: float = field(default=0.0, metadata=non_negative)
    cosine_epochs: int | None = field(default=None, metadata=positive)

    def __post_init__(self) -> None:
        if self.momentum >= 1:
            raise ValueError(f"momentum: got {self.momentum}; expected a number in [0, 1)")
        if self.algorithm == "adam" and self.momentum:
            raise ValueError(
                f"momentum: got {self.momentum} with algorithm 'adam', whose betas are PyTorch's "
                f"(0.9, 0.999); set momentum: 0"
            )
        if list(self.milestones) != sorted(set(self.milestones)) or any(
            m <= 0 for m in self.milestones
        ):
            raise ValueError(f"milestones: got {list(self.milestones)}; expected increasing epochs")
        if self.schedule != "multistep" and self.milestones:
            raise ValueError(
                f"milestones are only used by schedule 'multistep', not '{self.schedule}'"
            )
        if self.schedule != "cosine" and (self.minimum_learning_rate or self.cosine_epochs):
            raise ValueError(
                f"minimum_learning_rate and cosine_epochs are only used by schedule 'cosine', not "
                f"'{self.schedule}'"
            )
        if self.minimum_learning_rate > self.learning_rate:
            raise ValueError(
                f"minimum_learning_rate: got {self.minimum_learning_rate}; expected at most the "
                f"learning_rate ({self.learning_rate})"
            )


@dataclass(frozen=True)
class LoopConfig:
    """The distillation schedule (vocabulary in dfkd/methods/base.py).

    A round is `syntheses_per_round` syntheses, each `generator_steps_per_round` generator steps
    ended by the method's `finish_synthesis`, then `student_steps_per_round` student steps. The
    first `warmup_epochs` epochs (of `epochs`) synthesise only: `warmup_syntheses_per_epoch`
    syntheses each, no student step and no step of the student's lr schedule (NAYER's and
    Fast-DFKD's `--warmup`; unrelated to a teacher recipe's lr warm-up).
    """

    epochs: int = field(metadata=positive)
    rounds_per_epoch: int = field(metadata=positive)
    generator_steps_per_round: int = field(metadata=positive)  # of each synthesis
    student_steps_per_round: int = field(metadata=positive)
    batch_size: int = field(metadata=positive)
    student_optimizer: OptimizerConfig
    syntheses_per_round: int = field(default=1, metadata=positive)
    warmup_epochs: int = field(default=0, metadata=non_negative)
    warmup_syntheses_per_epoch: int = field(default=0, metadata=non_negative)

    @property
    def training_epochs(self) -> int:
        """The epochs with student steps, those after the warm-up."""
        return self.epochs - self.warmup_epochs

    @property
    def student_images(self) -> int:
        """Student images over the run: its training epochs x rounds x student steps x batch."""
        per_epoch = self.rounds_per_epoch * self.student_steps_per_round * self.batch_size
        return self.training_epochs * per_epoch

    def __post_init__(self) -> None:
        _check_milestones(self.student_optimizer, self.epochs, "student_optimizer.milestones")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs: got {self.warmup_epochs}; expected fewer than epochs "
                f"({self.epochs}), so that the student trains"
            )
        if bool(self.warmup_epochs) != bool(self.warmup_syntheses_per_epoch):
            raise ValueError(
                "warmup_epochs and warmup_syntheses_per_epoch: set both (> 0) for a warm-up, or "
                "neither"
            )


@dataclass(frozen=True)
class TeacherRecipe:
    epochs: int = field(metadata=positive)
    batch_size: int = field(metadata=positive)
    optimizer: OptimizerConfig
    # The lr rises linearly over these first epochs, to the full lr in the last of them.
    warmup_epochs: int = field(metadata=non_negative)

    def __post_init__(self) -> None:
        _check_milestones(self.optimizer, self.epochs, "optimizer.milestones")
        if self.warmup_epochs and self.optimizer.schedule == "cosine":
            raise ValueError("warmup_epochs: a warm-up is for the multistep and constant schedules")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs: got {self.warmup_epochs}; expected < epochs")


def _check_milestones(optimizer: OptimizerConfig, epochs: int, key: str) -> None:
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
    # Per dataset, in place of distill_epochs (a paper's budget that differs by dataset).
    distill_epochs_by_dataset: dict[str, int]
    student_steps_per_epoch: int | None = field(metadata=positive)  # rounds repeated to about this
    batch_size: int | None = field(metadata=positive)
    # How a protocol batch moves the student's learning rate; set exactly when batch_size is.
    learning_rate_scaling: Literal["linear", "sqrt"] | None
    stability_start_epoch: int = field(metadata=positive)  # mu/sigma^2 from this epoch on
    deterministic: bool  # deterministic algorithms, no cuDNN benchmarking
    # A matched budget: each method's epochs after its warm-up set so that its student trains on
    # about this many images (rounds x student steps x batch per epoch unchanged).
    student_images: int | None = field(default=None, metadata=positive)

    def epochs_for(self, dataset: str) -> int | None:
        """The distillation epochs this protocol sets for `dataset`; None keeps the method's."""
        return self.distill_epochs_by_dataset.get(dataset, self.distill_epochs)

    def __post_init__(self) -> None:
        for dataset, epochs in self.distill_epochs_by_dataset.items():
            if epochs <= 0:
                raise ValueError(
                    f"distill_epochs_by_dataset.{dataset}: got {epochs}; expected a number > 0"
                )
        if self.student_images is not None and (
            self.distill_epochs is not None or self.distill_epochs_by_dataset
        ):
            raise ValueError(
                "student_images sets every run's epochs: leave distill_epochs null and "
                "distill_epochs_by_dataset empty"
            )
        if (self.batch_size is None) != (self.learning_rate_scaling is None):
            raise ValueError(
                "batch_size and learning_rate_scaling: set both (a protocol batch scales the "
                "student learning rate) or neither"
            )


SEED_LIMIT = 2**32  # NumPy seeds (and so the suite's) are in [0, 2^32)


def check_seeds(key: str, seeds: tuple[int, ...]) -> None:
    wrong = [seed for seed in seeds if not 0 <= seed < SEED_LIMIT]
    if wrong:
        raise ValueError(f"{key}: got {wrong[0]}; a seed is an integer in [0, 2^32)")


@dataclass(frozen=True)
class Experiment:
    protocol: str
    pairs: tuple[str, ...]  # "<teacher>-<student>"
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    teacher_seed: int
    # `trained` by the suite (params/teachers.yaml) or `released` (params/released_teachers.yaml)
    teacher_source: Literal["trained", "released"]
    # `eager` (float32, no compilation: the baseline) or `fast` (dfkd/compute.py)
    compute: Literal["eager", "fast"]
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
        check_seeds("seeds", self.seeds)
        check_seeds("teacher_seed", (self.teacher_seed,))
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
    display_name: str  # how the reports name the method ("CuDFKD"): the only place they look
    source: str
    schedule: LoopConfig
    hyperparameters: dict[str, Any]
    overrides: dict[str, Any]  # "<dataset>" or "<dataset>/<teacher>-<student>" -> partial params


@dataclass(frozen=True)
class ReleasedFile:
    file: str  # under the released teachers' directory
    sha256: str | None  # pinned by the user after the download; None until then

    def __post_init__(self) -> None:
        digest = self.sha256
        if digest is not None and not (
            len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        ):
            raise ValueError(
                f"sha256 of {self.file}: got {digest!r}; expected 64 lowercase hex digits "
                "(`sha256sum <file>`), or null"
            )


# How a collection's files store their weights (dfkd/released.py).
ReleasedFormat = Literal["cmi", "torchvision"]


@dataclass(frozen=True)
class ReleasedCollection:
    """One publisher's teacher checkpoints, which a user downloads once."""

    format: ReleasedFormat
    source: str  # where they come from, as the reports' provenance states it
    url: str
    directory: str  # relative to the working directory
    teachers: dict[str, dict[str, ReleasedFile]]  # dataset -> architecture -> file


@dataclass(frozen=True)
class ReleasedTeachers:
    """params/released_teachers.yaml: the collections of published teacher checkpoints."""

    collections: dict[str, ReleasedCollection]

    def find(self, dataset: str, architecture: str) -> tuple[ReleasedCollection, ReleasedFile]:
        """The collection and file of a released teacher; KeyError where none is listed."""
        for collection in self.collections.values():
            if architecture in collection.teachers.get(dataset, {}):
                return collection, collection.teachers[dataset][architecture]
        raise KeyError((dataset, architecture))

    def __post_init__(self) -> None:
        listed = [
            (dataset, architecture)
            for collection in self.collections.values()
            for dataset, files in collection.teachers.items()
            for architecture in files
        ]
        twice = sorted({entry for entry in listed if listed.count(entry) > 1})
        if twice:
            names = ", ".join(f"{d}/{a}" for d, a in twice)
            raise ValueError(f"{names}: listed by two collections; keep one")


@dataclass(frozen=True)
class LabelEmbeddingSource:
    """Per-class label-text embeddings, one file per dataset, which a user downloads once
    (params/label_embeddings.yaml)."""

    source: str  # what they are and where they come from, as reports state it
    url: str
    directory: str  # relative to the working directory
    files: dict[str, ReleasedFile]  # dataset -> its file, pinned by SHA-256


@dataclass(frozen=True)
class LabelEmbeddingSources:
    """params/label_embeddings.yaml."""

    sources: dict[str, LabelEmbeddingSource]


@dataclass(frozen=True)
class LabelEmbeddingsConfig:
    """The class embeddings a run's method receives: the named stand-in, or a pinned file."""

    name: str  # `random_orthogonal` (dfkd/label_embeddings.py) or a source of the params file
    file: str | None  # null for the stand-in, which needs none
    sha256: str | None
    source: str


@dataclass(frozen=True)
class PublishedSource:
    citation: str  # where the numbers are printed, and under what budget
    selection: str  # how its numbers were selected (best epoch, best over trials, ...)
    # Which of our numbers compares with them (dfkd/reporting/analysis.py RULE_COLUMNS).
    rule: Literal["best_epoch", "final_epoch"]
    short: str  # a few words for a table note


@dataclass(frozen=True)
class PublishedResult:
    acc1: float
    agree1: float | None
    lp: float | None
    source: str  # key into the sources table
    # What a reader must know about this one cell (optional in the file; null when absent).
    note: str | None


@dataclass(frozen=True)
class PublishedStability:
    """One row of a published stability table (CuDFKD Table 4)."""

    mu: float = field(metadata=non_negative)  # mean of the per-epoch test Acc@1 (%)
    sigma2: float = field(metadata=non_negative)  # its variance
    best: float = field(metadata=non_negative)  # the best epoch's Acc@1 (%)
    memory_gb: float | None = field(metadata=positive)  # device memory of a run
    hours: float | None = field(metadata=positive)  # a whole run's time
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
    compute: Literal["eager", "fast"]


@dataclass(frozen=True)
class ImportTeacherConfig:
    """A released teacher to verify, convert and evaluate (dfkd/released.py)."""

    suite_version: str
    protocol: str
    dataset: str
    architecture: str
    checkpoint: str
    sha256: str | None
    format: ReleasedFormat
    source: str
    data: DataSettings


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
    compute: Literal["eager", "fast"]
    # For a method whose config has a `label_embeddings` field (dfkd/methods/base.py).
    label_embeddings: LabelEmbeddingsConfig | None = None


# Where the datasets live, and whether they may be downloaded, does not change what a job
# computes: pointing `data.root` at a machine's copy, or `data.download: false` where the data is
# present, keeps every finished result and resumes every checkpoint.
LOCATION_KEYS = ("data",)


def config_hash(config: Any) -> str:
    """A short digest of what a resolved config computes (its `data` location left out): a
    finished job is current while its recorded digest equals its settings' (dfkd/freshness.py),
    and a checkpoint resumes only the same digest."""
    computed = {k: v for k, v in to_dict(config).items() if k not in LOCATION_KEYS}
    text = json.dumps(computed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_text(config: Any) -> str:
    """A resolved config as the YAML a run reads (its config.yaml, its settings file)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | Path) -> None:
    atomic_write_text(path, config_text(config))


def load_run_config(path: str | Path) -> RunConfig:
    return from_dict(RunConfig, read_yaml(Path(path)), str(path))


def load_teacher_config(path: str | Path) -> TeacherRunConfig:
    return from_dict(TeacherRunConfig, read_yaml(Path(path)), str(path))


def load_import_config(path: str | Path) -> ImportTeacherConfig:
    return from_dict(ImportTeacherConfig, read_yaml(Path(path)), str(path))


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently). Merge keys (`<<: *anchor`) may still be overridden by the mapping's own keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key '{key}' is given twice (first on line {first[key] + 1}); keep one",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: the base class names it
                break
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ConfigError(f"{path}: cannot be read ({reason})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
