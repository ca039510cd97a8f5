"""Command line: `dfkd <command>`. Snakemake rules call these; users rarely need to.

    dfkd check [EXPERIMENT ...]                 validate params.yaml and params/
    dfkd prepare-data --dataset NAME --record R  download (if allowed) and verify a dataset
    dfkd train-teacher --config C --out-dir D   train (or resume) one teacher
    dfkd import-teacher --config C --out-dir D  verify and evaluate a released teacher
    dfkd distill --config C --out-dir D         run (or resume) one distillation
    dfkd report ...                             render a dataset's comparison tables
    dfkd study-report --study NAME ...          render a declared study's table
    dfkd history-plots --runs ... --out-dir D   each run's per-epoch history, for DVC's plots
    dfkd record-inputs --record R FILE ...      what a report was rendered from

Bad input ends with one line per problem on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--config", metavar="PATH", help="the resolved config, a YAML file")
    given.add_argument(
        "--settings", metavar="JSON",
        help="the resolved config as JSON text (what the workflow passes)",
    )  # fmt: skip
    parser.add_argument(
        "--out-dir", required=True, metavar="DIR",
        help="the job's folder: its outputs, checkpoints and config.yaml",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="CPU threads for torch (default: torch's choice)",
    )  # fmt: skip


def _add_study_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="a study of params/studies.yaml")
    parser.add_argument(
        "--studies", default="params/studies.yaml", metavar="PATH", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--runs", nargs="+", required=True, metavar="PATH",
        help="the study's metrics.json files, .../studies/<study>/<cell>/seed<k>/metrics.json",
    )  # fmt: skip
    parser.add_argument(
        "--teachers", nargs="*", default=[], metavar="PATH", help="teacher metrics.json files"
    )
    parser.add_argument(
        "--templates", metavar="DIR",
        help="a folder of table.{md,tex,html}.j2 to use instead of the package's",
    )  # fmt: skip
    parser.add_argument(
        "--out", required=True, metavar="PREFIX",
        help="write <PREFIX>.md, .tex, .html and <PREFIX>_runs.csv (e.g. reports/studies/table5)",
    )  # fmt: skip


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, metavar="NAME", help="dataset name, e.g. cifar10"
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        metavar="PATH",
        help="distillation metrics.json files, in experiment order (pairs, methods, seeds)",
    )
    parser.add_argument(
        "--teachers", nargs="*", default=[], metavar="PATH", help="teacher metrics.json files"
    )
    parser.add_argument(
        "--published",
        default="params/published.yaml",
        metavar="PATH",
        help="published numbers printed beside ours (default: %(default)s)",
    )
    parser.add_argument(
        "--methods-dir",
        default="params/methods",
        metavar="DIR",
        help="the methods' params files, for their display names (default: %(default)s)",
    )
    parser.add_argument(
        "--reference",
        metavar="PATH",
        help="a committed seed-robustness result the runs are compared with seed by seed "
        "(benchmarks/results/seed_robustness.json), where its experiment and protocol match",
    )
    parser.add_argument(
        "--templates",
        metavar="DIR",
        help="a folder of table.{md,tex,html}.j2 to use instead of the package's",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="write <PREFIX>_table.md and the rest of the report (e.g. reports/cifar10)",
    )


def _parser() -> argparse.ArgumentParser:
    import dfkd

    parser = argparse.ArgumentParser(prog="dfkd", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"dfkd {dfkd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check", help="validate params.yaml and params/, and that the experiments can run here"
    )
    check.add_argument(
        "experiments", nargs="*", metavar="EXPERIMENT",
        help="experiments whose released teachers must be downloaded and pinned (default: all)",
    )  # fmt: skip
    check.add_argument(
        "--params", default="params.yaml", metavar="PATH",
        help="the experiment matrix and protocols (default: %(default)s)",
    )  # fmt: skip
    check.add_argument(
        "--params-dir", default="params", metavar="DIR",
        help="the folder of the per-method and per-dataset params (default: %(default)s)",
    )  # fmt: skip

    prepare = commands.add_parser("prepare-data", help="download (if allowed) and verify a dataset")
    prepare.add_argument(
        "--dataset", required=True, metavar="NAME", help="dataset name, e.g. cifar10"
    )
    prepare.add_argument("--root", required=True, metavar="DIR", help="folder holding the datasets")
    prepare.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=False,
        help="may torchvision download a missing dataset (default: no)",
    )  # fmt: skip
    prepare.add_argument(
        "--record", required=True, metavar="PATH", help="where to write what was found (JSON)"
    )

    _add_run_arguments(commands.add_parser("train-teacher", help="train one teacher"))
    _add_run_arguments(commands.add_parser("distill", help="run one distillation"))
    _add_run_arguments(
        commands.add_parser("import-teacher", help="verify and evaluate a released teacher")
    )

    _add_report_arguments(commands.add_parser("report", help="render a dataset's tables"))
    _add_study_report_arguments(
        commands.add_parser("study-report", help="render a declared study's table")
    )
    plots = commands.add_parser(
        "history-plots", help="write each run's per-epoch history where DVC's plots read it"
    )
    plots.add_argument(
        "--runs", nargs="+", required=True, metavar="PATH", help="distillation metrics.json files"
    )
    plots.add_argument(
        "--out-dir", required=True, metavar="DIR",
        help="one <pair>/<method>/seed<k>.csv per run is written here (its old files removed)",
    )  # fmt: skip
    record = commands.add_parser(
        "record-inputs", help="record the SHA-256 of the files a report was rendered from"
    )
    record.add_argument(
        "--record", required=True, metavar="PATH", help="where to write the record (JSON)"
    )
    record.add_argument("inputs", nargs="+", metavar="FILE", help="the files the report read")
    return parser


def _check(params_path: str, params_dir: str, experiments: Sequence[str]) -> int:
    from dfkd.config import load_suite, read_yaml
    from dfkd.errors import ConfigError
    from dfkd.workflow import released_teacher_problems

    suite = load_suite(read_yaml(Path(params_path)), params_dir)
    unknown = [name for name in experiments if name not in suite.params.experiments]
    if unknown:
        have = ", ".join(suite.params.experiments)
        raise ConfigError(f"no experiment {', '.join(unknown)} in {params_path}; have: {have}")
    problems = released_teacher_problems(suite, experiments or suite.params.experiments)
    if problems:
        raise ConfigError("\n".join(problems))
    for dataset in suite.params.experiments:
        print(f"{dataset}: protocol {suite.protocol_of(dataset)}, {len(suite.runs(dataset))} runs")
    for name, study in suite.studies.studies.items():
        runs = len(suite.study_runs(name))
        print(f"study {name} ({study.experiment}, not run by default): {runs} runs")
    return 0


def _config(arguments: argparse.Namespace, kind: type) -> object:
    """The job's resolved config: the path of its YAML file, or the config read from --settings."""
    if arguments.config is not None:
        return arguments.config
    import json

    from dfkd.errors import ConfigError
    from dfkd.schema import from_dict

    try:
        data = json.loads(arguments.settings)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--settings: not valid JSON ({error.msg})") from None
    return from_dict(kind, data, "--settings")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    from dfkd.errors import DiskFullError, UserError, print_user_error
    from dfkd.loop import Diverged
    from dfkd.runtime import Interrupted

    try:
        if arguments.command == "check":
            return _check(arguments.params, arguments.params_dir, arguments.experiments)
        if arguments.command == "history-plots":
            from dfkd.reporting.history import write_history_plots

            return write_history_plots(arguments.runs, arguments.out_dir)
        if arguments.command == "record-inputs":
            from dfkd.atomic import atomic_write_json
            from dfkd.workflow import inputs_record

            atomic_write_json(arguments.record, inputs_record(arguments.inputs))
            return 0
        if arguments.command == "report":
            from dfkd.reporting.report import run_report

            return run_report(arguments)
        if arguments.command == "study-report":
            from dfkd.reporting.studies import run_study_report

            return run_study_report(arguments)
        if arguments.command == "prepare-data":
            from dfkd.data import prepare

            return prepare(arguments.dataset, arguments.root, arguments.download, arguments.record)

        if arguments.threads:
            import torch

            torch.set_num_threads(arguments.threads)
        if arguments.command == "import-teacher":
            from dfkd.config import ImportTeacherConfig
            from dfkd.released import import_released_teacher

            config = _config(arguments, ImportTeacherConfig)
            return import_released_teacher(config, arguments.out_dir)
        if arguments.command == "train-teacher":
            from dfkd.config import TeacherRunConfig
            from dfkd.teacher import run_teacher_training

            return run_teacher_training(_config(arguments, TeacherRunConfig), arguments.out_dir)
        from dfkd.config import RunConfig
        from dfkd.distill import run_distillation

        return run_distillation(_config(arguments, RunConfig), arguments.out_dir)
    except UserError as error:
        print_user_error(error)
        return 2
    except DiskFullError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except yaml.YAMLError as error:
        print(f"error: invalid YAML: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    except Diverged as error:
        print(f"error: training diverged: {error}", file=sys.stderr)
        return 1
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
