"""Command line: `dfkd <command>`. Snakemake rules call these; users rarely need to.

    dfkd check                                  validate params.yaml and params/
    dfkd prepare-data --dataset NAME --record R  download (if allowed) and verify a dataset
    dfkd train-teacher --config C --out-dir D   train (or resume) one teacher
    dfkd distill --config C --out-dir D         run (or resume) one distillation
    dfkd report ...                             render a dataset's comparison tables
    dfkd study-report --study NAME ...          render a declared study's table

Bad input ends with one line per problem on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="resolved run config (YAML)")
    parser.add_argument("--out-dir", required=True, help="the run's directory")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )


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
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. cifar10")
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
    parser = argparse.ArgumentParser(prog="dfkd", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate params.yaml and the files under params/")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--params-dir", default="params")

    prepare = commands.add_parser("prepare-data", help="download (if allowed) and verify a dataset")
    prepare.add_argument("--dataset", required=True)
    prepare.add_argument("--root", required=True, help="folder holding the datasets")
    prepare.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=False,
        help="may torchvision download a missing dataset (default: no)",
    )  # fmt: skip
    prepare.add_argument("--record", required=True, help="where to write what was found (JSON)")

    _add_run_arguments(commands.add_parser("train-teacher", help="train one teacher"))
    _add_run_arguments(commands.add_parser("distill", help="run one distillation"))
    _add_run_arguments(
        commands.add_parser("import-teacher", help="verify and evaluate a released teacher")
    )

    _add_report_arguments(commands.add_parser("report", help="render a dataset's tables"))
    _add_study_report_arguments(
        commands.add_parser("study-report", help="render a declared study's table")
    )
    return parser


def _check(params_path: str, params_dir: str) -> int:
    from dfkd.config import load_suite, read_yaml

    suite = load_suite(read_yaml(Path(params_path)), params_dir)
    for dataset in suite.params.experiments:
        print(f"{dataset}: protocol {suite.protocol_of(dataset)}, {len(suite.runs(dataset))} runs")
    for name, study in suite.studies.studies.items():
        runs = len(suite.study_runs(name))
        print(f"study {name} ({study.experiment}, not run by default): {runs} runs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    from dfkd.errors import DiskFullError, UserError, print_user_error
    from dfkd.loop import Diverged
    from dfkd.runtime import Interrupted

    try:
        if arguments.command == "check":
            return _check(arguments.params, arguments.params_dir)
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
            from dfkd.released import import_released_teacher

            return import_released_teacher(arguments.config, arguments.out_dir)
        if arguments.command == "train-teacher":
            from dfkd.teacher import run_teacher_training

            return run_teacher_training(arguments.config, arguments.out_dir)
        from dfkd.distill import run_distillation

        return run_distillation(arguments.config, arguments.out_dir)
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
