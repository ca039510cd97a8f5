"""How much the embedded default's outcome depends on the seed: every method over N seeds.

    python benchmarks/seed_robustness.py                 # N = 5, writes benchmarks/results/
    python benchmarks/seed_robustness.py --seeds 3 --name trial
    python benchmarks/seed_robustness.py --methods nayer fast10   # these rows only

Runs the README's main command on a fresh clone of the committed code, with the digits
experiment's seeds replaced by 0..N-1 (`snakemake --config`), so every run goes through the real
DAG: one teacher, then each method x seed. From the tidy runs table it reports, per method, the
min / median / max / mean final-epoch Acc@1 and the time per run, and derives the per-run floor
that tests/test_pipeline.py holds every embedded-default run to:

    floor = max(6 x chance, min - (max - min))

a run may fall below the worst of these N seeds by at most their own spread, and never below
six times chance. The result also records the resolved recipe of every method (and of the
teacher), so the test can tell when the floors were measured for another recipe.

Writes `benchmarks/results/<name>.json` and `.md`; the environment (torch, the lock digest and
any package that differs from the lock, CPU) is in both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfkd.config import Suite

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"
BIN = Path(sys.executable).parent
EXPERIMENT = "digits"


def recipes(suite: Suite) -> dict[str, Any]:
    """The resolved config of the teacher and of seed 0 of every method of the experiment, less
    what does not change a run's outcome (seed, suite version, file paths)."""
    from dfkd.reporting.reference import outcome_relevant
    from dfkd.schema import to_dict

    protocol = suite.protocol_of(EXPERIMENT)
    result: dict[str, Any] = {}
    for architecture in suite.teachers_of(EXPERIMENT):
        config = to_dict(suite.teacher_config(protocol, EXPERIMENT, architecture))
        result[f"teacher/{architecture}"] = outcome_relevant(config)
    for run in suite.runs(EXPERIMENT):
        key = f"{run['teacher']}-{run['student']}/{run['method']}"
        if key not in result and run["seed"] == suite.params.experiments[EXPERIMENT].seeds[0]:
            config = suite.run_config(**{**run, "teacher_checkpoint": "teacher.pt"})
            result[key] = outcome_relevant(to_dict(config))
    return result


def floor(finals: list[float], chance: float) -> float:
    worst, best = min(finals), max(finals)
    return max(6 * chance, worst - (best - worst))


def _run(command: list[str], cwd: Path) -> float:
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(cwd),  # the clone's code, not an editable install's
    }
    began = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - began


def measure(seeds: int, clone: Path, methods: list[str] | None = None) -> dict[str, Any]:
    subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(clone)], check=True)
    sys.path.insert(0, str(clone))
    import pandas as pd

    from dfkd.config import load_suite, read_yaml
    from dfkd.data import dataset_info

    # A config file rather than --config, which hands nested values over as strings.
    overlay = clone / "seeds.yaml"
    only = f", methods: [{', '.join(methods)}]" if methods else ""
    overlay.write_text(f"experiments: {{{EXPERIMENT}: {{seeds: {list(range(seeds))}{only}}}}}\n")
    command = ["snakemake", "--cores", "all", f"reports/{EXPERIMENT}_table.md"]
    seconds = _run([*command, "--configfile", overlay.name], clone)
    runs = pd.read_csv(clone / "reports" / f"{EXPERIMENT}_runs.csv")
    teachers = json.loads((clone / "reports" / "metrics" / f"{EXPERIMENT}.json").read_text())[
        "teacher"
    ]
    first = json.loads(Path(clone / runs["metrics_path"].iloc[0]).read_text())["provenance"]

    chance = 100.0 / dataset_info(EXPERIMENT).num_classes
    methods = {}
    for (pair, method), group in runs.groupby(["pair", "method"], sort=False):
        completed = group[group["status"] == "completed"]
        finals = [float(v) for v in completed["final_acc1"]]
        methods[f"{pair}/{method}"] = {
            "n": len(group),
            "diverged": int((group["status"] == "diverged").sum()),
            "final_acc1": dict(zip(map(int, completed["seed"]), finals, strict=True)),
            "min": min(finals),
            "median": float(pd.Series(finals).median()),
            "max": max(finals),
            "mean": sum(finals) / len(finals),
            "floor": floor(finals, chance),
            "train_seconds_per_run": 3600 * float(completed["train_hours"].mean()),
            "total_seconds_per_run": 3600 * float(completed["total_hours"].mean()),
        }
    suite = load_suite(read_yaml(clone / "params.yaml"), clone / "params")
    return {
        # What `dfkd report --reference` compares a run with: same experiment and protocol.
        "experiment": EXPERIMENT,
        "protocol": suite.protocol_of(EXPERIMENT),
        "command": " ".join([*command, "--configfile", overlay.name]),
        "overlay": overlay.read_text().strip(),
        "seeds": seeds,
        "wall_seconds": seconds,
        "chance": chance,
        "teachers": teachers,
        "methods": methods,
        "recipes": recipes(suite),
        "environment": {
            "commit": first["git_commit"],
            "python": first["python"],
            "torch": first["torch"],
            "lock_sha256": first["lock_sha256"],
            "lock_mismatches": first["lock_mismatches"],
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            # Other work on the machine slows every job: the times are only as quiet as this.
            "load_average_15min": os.getloadavg()[2],
        },
    }


def markdown(result: dict[str, Any]) -> str:
    environment = result["environment"]
    differs = ", ".join(environment["lock_mismatches"] or []) or "none"
    lines = [
        f"# Seed robustness of the embedded default ({result['seeds']} seeds)",
        "",
        f"`{result['command']}` (`{result['overlay']}`) on a fresh clone: "
        f"{result['wall_seconds']:.0f} s on "
        f"{environment['cores']} CPU cores ({environment['cpu']})"
        + (
            f", load average {environment['load_average_15min']:.1f} at the end."
            if "load_average_15min" in environment
            else "."
        ),
        f"Commit {str(environment['commit'])[:7]}, Python {environment['python']}, torch "
        f"{environment['torch']}, uv.lock {str(environment['lock_sha256'])[:12]} "
        f"(packages that differ from it: {differs}).",
        "Teachers: "
        + ", ".join(f"{name} {acc:.2f}%" for name, acc in result["teachers"].items())
        + ".",
        "",
        "| Pair / method | n | diverged | min | median | max | mean | per-run floor "
        "| train (s/run) | total (s/run) |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in result["methods"].items():
        lines.append(
            f"| {key} | {row['n']} | {row['diverged']} | {row['min']:.2f} | {row['median']:.2f} "
            f"| {row['max']:.2f} | {row['mean']:.2f} | {row['floor']:.2f} "
            f"| {row['train_seconds_per_run']:.1f} | {row['total_seconds_per_run']:.1f} |"
        )
    seeds = sorted({int(seed) for row in result["methods"].values() for seed in row["final_acc1"]})
    lines += [
        "",
        "| Pair / method | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
        "|:---|" + "---:|" * len(seeds),
    ]
    for key, row in result["methods"].items():
        finals = {int(seed): value for seed, value in row["final_acc1"].items()}
        cells = [f"{finals[s]:.2f}" if s in finals else "–" for s in seeds]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Final-epoch test Acc@1 (%) over the seeds. Per-run floor: max(6 x chance, min - (max -"
        " min)), which tests/test_pipeline.py applies to every run of the embedded default; "
        "`dfkd report` compares each run of the embedded default with its seed here. "
        "Total time per run includes data loading, evaluation and checkpoints, not the process "
        "start-up.",
        "",
    ]
    for runs in result.get("remeasured", []):
        lines[4:4] = [
            f"Measured again: {', '.join(runs['methods'])}, by `{runs['command']}` "
            f"(`{runs['overlay']}`), {runs['wall_seconds']:.0f} s, commit {runs['commit'][:7]}."
        ]
    return "\n".join(lines)


def merged(previous: dict[str, Any], result: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """`previous` with the rows of `methods` measured anew in `result`; refused where a method
    not measured again now runs another recipe than the one `previous` measured."""
    if previous["seeds"] != result["seeds"]:
        sys.exit(
            f"--methods: the previous result has {previous['seeds']} seeds, not {result['seeds']}"
        )
    measured = {key for key in result["methods"]}
    stale = sorted(
        key
        for key, recipe in result["recipes"].items()
        if key not in measured and previous["recipes"].get(key) != recipe
    )
    if stale:
        sys.exit(f"--methods: {', '.join(stale)} now run other recipes; measure them too")
    rows = {**previous["methods"], **result["methods"]}
    order = [key for key in result["recipes"] if key in rows]
    runs = {key: result[key] for key in ("command", "overlay", "wall_seconds")}
    runs |= {"methods": sorted(measured), "commit": result["environment"]["commit"]}
    return {
        **previous,
        "methods": {key: rows[key] for key in order},
        "recipes": result["recipes"],
        "remeasured": [*previous.get("remeasured", []), runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    parser.add_argument("--name", default="seed_robustness", help="file name under results/")
    parser.add_argument(
        "--methods", nargs="+", help="measure only these methods, keeping the other rows"
    )
    arguments = parser.parse_args()
    if arguments.seeds < 2:
        sys.exit("--seeds: need at least 2 seeds for a spread")
    previous_path = RESULTS / f"{arguments.name}.json"
    if arguments.methods and not previous_path.exists():
        sys.exit(f"--methods: no {previous_path} to keep the other rows of; run without it")
    with tempfile.TemporaryDirectory() as scratch:
        result = measure(arguments.seeds, Path(scratch) / "clone", arguments.methods)
    if arguments.methods:
        result = merged(json.loads(previous_path.read_text()), result, arguments.methods)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{arguments.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / f"{arguments.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
