"""Loading and validating the params files: every problem found, one line each."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dfkd.config.settings import (
    Experiment,
    LabelEmbeddingSources,
    MethodParams,
    PublishedResult,
    PublishedSource,
    PublishedStability,
    ReleasedTeachers,
    SuiteParams,
    TeacherRecipe,
    read_yaml,
)
from dfkd.config.studies import TRAINED, StudiesFile, read_studies
from dfkd.config.suite import Suite, merge, resolve_method_settings
from dfkd.data import DATASETS
from dfkd.errors import ConfigError
from dfkd.label_embeddings import STAND_IN, check_label_embeddings
from dfkd.methods import METHODS
from dfkd.models import MODELS
from dfkd.schema import from_dict

# A name that becomes a level of a result's path (a protocol, a method, a study, a cell, a
# teacher variant): what the workflow's wildcards accept.
PATH_LEVEL = "[a-z0-9_]+"


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
    studies_path = params_dir / "studies.yaml"
    studies = attempt(lambda: read_studies(read_yaml(studies_path), str(studies_path)))
    released_path = params_dir / "released_teachers.yaml"
    released = attempt(
        lambda: from_dict(ReleasedTeachers, read_yaml(released_path), str(released_path))
    )
    embeddings_path = params_dir / "label_embeddings.yaml"
    embeddings = attempt(
        lambda: from_dict(LabelEmbeddingSources, read_yaml(embeddings_path), str(embeddings_path))
    )
    if embeddings is not None and STAND_IN in embeddings.sources:
        problems.append(f"{embeddings_path}: sources.{STAND_IN}: the stand-in's name is reserved")

    methods: dict[str, MethodParams] = {}
    method_files = sorted((params_dir / "methods").glob("*.yaml"))
    problems.extend(
        f"{path}: a method's name is a level of its runs' paths: name the file with a-z, 0-9 "
        "and _ only"
        for path in method_files
        if not re.fullmatch(PATH_LEVEL, path.stem)
    )
    for path in method_files:
        loaded = attempt(lambda path=path: _load_method(path))
        if loaded is not None:
            methods[path.stem] = loaded

    if suite_params is not None:
        problems.extend(
            _cross_check(
                suite_params, teachers or {}, methods, {p.stem for p in method_files}, params_dir
            )
        )
        if released is not None:
            problems.extend(_check_released(suite_params, released, released_path))
        if studies is not None:
            problems.extend(
                _check_studies(
                    studies, suite_params, methods, {p.stem for p in method_files}, studies_path
                )
            )
    if problems:
        raise ConfigError("\n".join(problems))
    suite = Suite(
        suite_params, teachers, methods, published, studies, released, params_dir,
        embeddings.sources,
    )  # fmt: skip
    problems.extend(check_label_embeddings(suite))
    if problems:
        raise ConfigError("\n".join(problems))
    return suite


def load_workflow_params(
    config: Mapping[str, Any], params_file: Path, params_dir: str | Path = "params"
) -> Suite:
    """`load_suite` for Snakemake's `config`: params.yaml plus any --config/--configfile values.

    Values that differ from `params_file` came from the command line. Snakemake hands nested
    --config values over as strings (`seeds: [0, 1]` arrives as ['0', '1']), so those strings
    are read again as YAML scalars, as the user typed them; and problems with them name the
    command line, not params.yaml.
    """
    from_file = read_yaml(params_file)
    overridden: list[str] = []
    merged = _reparse_overrides(config, from_file, "", overridden)
    try:
        return load_suite(merged, params_dir)
    except ConfigError as error:
        lines = [_attribute(line, overridden) for line in str(error).splitlines()]
        raise ConfigError("\n".join(lines)) from None


def _reparse_overrides(value: Any, from_file: Any, where: str, overridden: list[str]) -> Any:
    if isinstance(value, Mapping):
        file_part = from_file if isinstance(from_file, Mapping) else {}
        reparsed = {}
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            reparsed[key] = _reparse_overrides(item, file_part.get(key, _ABSENT), path, overridden)
        return reparsed
    if value == from_file:
        return value
    overridden.append(where)
    return _as_yaml_scalars(value)


_ABSENT = object()


def _as_yaml_scalars(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    if isinstance(value, list):
        return [_as_yaml_scalars(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _as_yaml_scalars(item) for key, item in value.items()}
    return value


def _attribute(line: str, overridden: list[str]) -> str:
    """Names the command line as the source of a problem with a value that came from it."""
    source, _, rest = line.partition(": ")
    if source != "params.yaml":
        return line
    key = rest.split(": ", 1)[0]
    if any(key == path or key.startswith((f"{path}.", f"{path}[")) for path in overridden):
        return f"command line (--config or --configfile): {rest}"
    return line


def _method_data(path: Path, chain: tuple[str, ...] = ()) -> Any:
    """A method file's content; a file with `extends: <name>` is the params of
    params/methods/<name>.yaml with its own values merged over them (a variant: NAYER's longer
    schedules, Fast-DFKD's 2 and 5 steps), its own display name or none."""
    data = read_yaml(path)
    if not isinstance(data, Mapping) or "extends" not in data:
        return data
    base = data["extends"]
    base_path = path.parent / f"{base}.yaml"
    if not isinstance(base, str) or not base_path.is_file():
        raise ConfigError(
            f"{path}: extends: got {base!r}; expected the name of a file in {path.parent}"
        )
    if base in (*chain, path.stem):
        raise ConfigError(f"{path}: extends: {' -> '.join((*chain, path.stem, base))} is a cycle")
    inherited = dict(_method_data(base_path, (*chain, path.stem)))
    inherited.pop("display_name", None)
    return merge(inherited, {key: value for key, value in data.items() if key != "extends"})


def _load_method(path: Path) -> MethodParams:
    method = from_dict(MethodParams, _method_data(path), str(path))
    if method.implementation not in METHODS:
        raise ConfigError(
            f"{path}: implementation: unknown method implementation '{method.implementation}'; "
            f"choose one of: {', '.join(METHODS.names())}"
        )
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
        resolve_method_settings(method, path.stem, dataset, pair, path.parent.parent)
    return method


def _is_pair(pair: str) -> bool:
    teacher, _, student = pair.partition("-")
    return teacher in MODELS and student in MODELS


PUBLISHED_KEYS = {"verdict_tolerance", "sources", "teachers", "results", "notes"}
# Optional sections: a paper's stability table, and the teachers a method's own paper distilled
# from where they are not those of `teachers` (MAD trained its own).
PUBLISHED_OPTIONAL = {"stability", "method_teachers"}


def _load_published(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if isinstance(data, Mapping):  # top-level keys starting with x- only hold YAML anchors
        data = {key: value for key, value in data.items() if not str(key).startswith("x-")}
    if not isinstance(data, Mapping) or not PUBLISHED_KEYS <= set(data) <= (
        PUBLISHED_KEYS | PUBLISHED_OPTIONAL
    ):
        raise ConfigError(
            f"{path}: expected the keys {', '.join(sorted(PUBLISHED_KEYS))} and optionally "
            f"{', '.join(sorted(PUBLISHED_OPTIONAL))}"
        )
    where = str(path)
    tolerance = from_dict(float, data["verdict_tolerance"], where, "verdict_tolerance")
    if not tolerance >= 0:
        raise ConfigError(f"{path}: verdict_tolerance: got {tolerance}; expected >= 0 points")
    sources = from_dict(dict[str, PublishedSource], data["sources"], where, "sources")
    notes = from_dict(dict[str, str], data["notes"], where, "notes")
    teachers = from_dict(
        dict[str, dict[str, PublishedResult]], _noted(data["teachers"], 2), where, "teachers"
    )
    results = from_dict(
        dict[str, dict[str, dict[str, PublishedResult]]], _noted(data["results"], 3), where,
        "results",
    )  # fmt: skip
    stability = from_dict(
        dict[str, dict[str, dict[str, PublishedStability]]], data.get("stability") or {}, where,
        "stability",
    )  # fmt: skip
    method_teachers = from_dict(
        dict[str, dict[str, dict[str, PublishedResult]]], _noted(data.get("method_teachers"), 3),
        where, "method_teachers",
    )  # fmt: skip
    cells = [(f"teachers.{d}.{m}", r) for d, models in teachers.items() for m, r in models.items()]
    cells += [
        (f"{section}.{a}.{b}.{c}", r)
        for section, table in (
            ("results", results),
            ("stability", stability),
            ("method_teachers", method_teachers),
        )
        for a, inner in table.items()
        for b, cells_of in inner.items()
        for c, r in cells_of.items()
    ]
    for key, result in cells:
        if result.source not in sources:
            raise ConfigError(
                f"{path}: {key}.source: unknown source '{result.source}'; "
                f"have: {', '.join(sources)}"
            )
    for dataset, pairs in stability.items():
        for pair, methods in pairs.items():
            if dataset not in DATASETS or not _is_pair(pair):
                raise ConfigError(
                    f"{path}: stability.{dataset}.{pair}: expected a known dataset and "
                    "'<teacher>-<student>' of known models"
                )
            for method in methods:
                if not re.fullmatch("[a-z0-9_]+", method):
                    raise ConfigError(
                        f"{path}: stability.{dataset}.{pair}.{method}: use a-z, 0-9, _"
                    )
    for method, datasets in method_teachers.items():
        if method not in METHODS:
            raise ConfigError(
                f"{path}: method_teachers.{method}: unknown method implementation; choose one "
                f"of: {', '.join(METHODS.names())}"
            )
        for dataset, models in datasets.items():
            unknown = [m for m in models if m not in MODELS]
            if dataset not in DATASETS or unknown:
                raise ConfigError(
                    f"{path}: method_teachers.{method}.{dataset}: expected a known dataset and "
                    "known models"
                )
    return {
        "verdict_tolerance": tolerance, "sources": sources, "teachers": teachers,
        "results": results, "notes": notes, "stability": stability,
        "method_teachers": method_teachers,
    }  # fmt: skip


def _noted(cells: Any, depth: int) -> Any:
    """The cells `depth` levels down, each with `note: null` where it has no note (the one key
    a published cell may leave out)."""
    if not isinstance(cells, Mapping):
        return {} if cells is None else cells
    if depth == 0:
        return {"note": None, **cells}
    return {key: _noted(value, depth - 1) for key, value in cells.items()}


def _cross_check(
    params: SuiteParams,
    teachers: Mapping[str, TeacherRecipe],
    methods: Mapping[str, MethodParams],
    method_files: set[str],
    params_dir: Path,
) -> list[str]:
    problems = [
        f"params.yaml: protocols.{name}: a protocol's name is a level of its results' paths: "
        "use a-z, 0-9 and _ only"
        for name in params.protocols
        if not re.fullmatch(PATH_LEVEL, name)
    ]
    root = Path(params.data.root)
    if root.exists() and not root.is_dir():
        problems.append(
            f"params.yaml: data.root: '{root}' is a file; expected the folder that holds (or "
            "will hold) the datasets"
        )
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
            if method not in method_files:
                known = ", ".join(sorted(method_files)) or "none"
                problems.append(
                    f"{where}.methods: unknown method '{method}' (no "
                    f"{params_dir / 'methods' / (method + '.yaml')}); have: {known}"
                )
        problems.extend(_check_statistics_window(params, dataset, experiment, methods, params_dir))
    return problems


def _check_released(params: SuiteParams, released: ReleasedTeachers, path: Path) -> list[str]:
    """An experiment that distils from released teachers needs a file for each of them."""
    problems = []
    for dataset, experiment in params.experiments.items():
        if experiment.teacher_source != "released":
            continue
        for pair in experiment.pairs:
            teacher = pair.partition("-")[0]
            try:
                released.find(dataset, teacher)
            except KeyError:
                problems.append(
                    f"params.yaml: experiments.{dataset}.teacher_source: released, but {path} "
                    f"lists no released {teacher} for {dataset}; add it there or choose "
                    "teacher_source: trained"
                )
    return problems


def _check_statistics_window(
    params: SuiteParams,
    dataset: str,
    experiment: Experiment,
    methods: Mapping[str, MethodParams],
    params_dir: Path,
) -> list[str]:
    """mu and sigma^2 need at least one epoch at or after the protocol's start epoch."""
    protocol = params.protocols.get(experiment.protocol)
    if protocol is None or dataset not in DATASETS:
        return []
    problems = []
    for method in experiment.methods:
        if method not in methods:
            continue  # reported on its own
        for pair in experiment.pairs:
            if not _is_pair(pair):
                continue
            schedule, _ = resolve_method_settings(
                methods[method], method, dataset, pair, params_dir
            )
            epochs = protocol.epochs_for(dataset) or schedule.epochs
            if protocol.stability_start_epoch > epochs:
                problems.append(
                    f"params.yaml: protocols.{experiment.protocol}.stability_start_epoch: "
                    f"{protocol.stability_start_epoch} is after the last epoch ({epochs}) of "
                    f"{method} {pair} in experiment '{dataset}', so mu and sigma^2 would be "
                    "empty; choose an epoch <= the run's epochs"
                )
    return problems


def _check_studies(
    studies: StudiesFile,
    params: SuiteParams,
    methods: Mapping[str, MethodParams],
    method_files: set[str],
    path: Path,
) -> list[str]:
    """Every study's experiment, pair, methods and teachers exist, and every cell resolves."""
    problems = []
    for name, variant in studies.teacher_variants.items():
        if not re.fullmatch(PATH_LEVEL, name):
            problems.append(
                f"{path}: teacher_variants.{name}: a teacher variant's name is a level of its "
                "teachers' paths: use a-z, 0-9 and _ only"
            )
        if variant.dataset not in DATASETS:
            problems.append(
                f"{path}: teacher_variants.{name}.dataset: unknown dataset '{variant.dataset}'"
            )
    for name, study in studies.studies.items():
        where = f"{path}: studies.{name}"
        if not re.fullmatch(PATH_LEVEL, name):
            problems.append(f"{where}: a study name is a path level: use a-z, 0-9 and _")
        if study.experiment not in params.experiments:
            problems.append(
                f"{where}.experiment: no experiment '{study.experiment}' in params.yaml; "
                f"have: {', '.join(params.experiments)}"
            )
            continue
        if not _is_pair(study.pair):
            problems.append(f"{where}.pair: '{study.pair}' is not '<teacher>-<student>' of models")
            continue
        if len(set(study.seeds)) != len(study.seeds):
            problems.append(f"{where}.seeds: got {list(study.seeds)}; entries must be unique")
        for cell_name, cell in study.cells.items():
            at = f"{where}.cells.{cell_name}"
            if not re.fullmatch(PATH_LEVEL, cell_name):
                problems.append(f"{at}: a cell name is a path level: use a-z, 0-9 and _")
            variant = studies.teacher_variants.get(cell.teacher)
            if cell.teacher != TRAINED and (variant is None or variant.dataset != study.experiment):
                problems.append(
                    f"{at}.teacher: '{cell.teacher}' is neither '{TRAINED}' nor a teacher variant "
                    f"for dataset '{study.experiment}'"
                )
            if cell.method not in methods:
                if cell.method not in method_files:  # else its own problem is reported
                    problems.append(f"{at}.method: unknown method '{cell.method}'")
                continue
            changes = {"schedule": cell.schedule, "hyperparameters": cell.hyperparameters}
            try:
                schedule, _ = resolve_method_settings(
                    methods[cell.method], cell.method, study.experiment, study.pair,
                    path.parent, changes,
                )  # fmt: skip
            except ConfigError as error:
                problems.extend(f"{at}: {line}" for line in str(error).splitlines())
                continue
            protocol = params.protocols.get(params.experiments[study.experiment].protocol)
            # Where the protocol sets the epochs, the cell's schedule does not, and a window
            # after them is the protocol's problem, named once by the experiment's check.
            if protocol is None or protocol.epochs_for(study.experiment) is not None:
                continue
            if protocol.stability_start_epoch > schedule.epochs:
                name = params.experiments[study.experiment].protocol
                problems.append(
                    f"{at}: its runs end after epoch {schedule.epochs}, before the statistics "
                    f"window of protocol '{name}' (from epoch {protocol.stability_start_epoch}), "
                    "so mu and sigma^2 would be empty; give the cell more epochs"
                )
    return problems
