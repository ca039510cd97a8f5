"""The device kit: one call on a GPU machine without network produces every figure the suite
has never measured on a GPU.

Here, once, in the checkout whose working tree travels (no network needed but for the wheels):

    python benchmarks/gpu/kit.py prepare --reference <zju-vipa/CMI checkout or git dir>

fills the git-ignored `.kit/`: `wheels/` (what the device image lacks: kornia and kornia-rs,
which CMI's local view imports, and termcolor, which the reference code imports; the image has
torch, torchvision, numpy, pandas, scipy, jinja2, matplotlib, tqdm, scikit-learn, pyyaml and
pillow, and the suite imports snakemake and dvc nowhere), `data/cifar10-jpeg.tar.gz` (the
CIFAR-10 JPEG copy), `reference/CMI.tar` (the reference's Python files, never committed) and
`manifest.json`; it prints the kit's size and the working tree's against the 64 MiB that travel.

There, from the repository root, under the image's python3 (not the lock):

    python3 benchmarks/gpu/kit.py run --deadline 390 --out "$OUT"

installs the wheels offline into /tmp/kit/site, checks the versions, then runs the stages in
order of value, each in a child process that writes its JSON to --out as soon as it has a row,
and stops every child before the deadline (seconds from the start), so that the call ends
cleanly with what finished. Expected minutes on one H200 (from the harness's FLOP counts at the
planning rates of 790 TFLOP/s bf16 and 4.3 TB/s; compilation, which no FLOP count gives,
estimated apart, and measured by the harness's warm-up seconds):

    setup  wheels, versions, imports                                  0.3
    a      eager vs fast, first steps of 8-10 methods: about 20 steps of 1.5-6 TFLOP each
           per mode (0.2 s at 790 TFLOP/s, 2 s eager); compiling ResNet-34/18 forward and
           backward once, then each method's variants                 2.0
    b      harness, 8-10 methods x eager/fast, about 70 steps each (0.3 s at 790 TFLOP/s,
           about 3 s eager at the ~80 TFLOP/s float32 reaches); the graphs of a recompiled
           from the on-disk cache                                     1.5
    c      ResNet-34 teacher steps at batch 128 (0.9 TFLOP each; an epoch of 348 TFLOP is
           0.44 s at 790 TFLOP/s), eager and fast, plus one compilation    0.7
    d      the reference's DFQ round against ours, 22 rounds each at batch 256 (16 TFLOP a
           round: 0.02 s at 790 TFLOP/s, about 0.3 s in the reference's float32)  0.7
    e      quick protocol, one method (DFQ): extract and decode 60,000 JPEGs (0.3 min); the
           ResNet-34 teacher, 20 epochs (7 PFLOP: 9 s at 790 TFLOP/s, about 1 min at the 15-25%
           such networks reach, plus compilation); DFQ, 20 epochs of 40 rounds (13 PFLOP:
           16 s at 790 TFLOP/s, 1-1.5 min realistic, plus compilation)    4-5, what is left

Each stage stops starting rows past its share of the time left (benchmarks/gpu/stages.py,
FRACTION), so a slow one cannot starve the next. A 390 s deadline gives a-d their expected
minutes and e what remains; e needs about 5 minutes alone: a second call with `--stages e
--deadline 300` runs it in full.

Results: a_parity.json, b_harness.json, c_teacher.json, d_reference.json, e_quick.json (each
with the device, driver, torch, CUDA, cuDNN and package versions), summary.md (every table,
rewritten after each stage) and kit.log (everything the stages printed): 7 files.
`--cpu-size` shrinks every stage for a CPU rehearsal (benchmarks/gpu/rehearse.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
KIT = REPOSITORY / ".kit"
LIMIT = 64 * 2**20  # what one call takes along: working tree and carried paths together
# Wheels the device image lacks (its python3 is 3.12 on x86-64): kornia at the lock's version
# and its compiled dependency; termcolor for the reference code (zju-vipa/CMI requirements.txt).
WHEELS = ("kornia==0.9.0", "kornia-rs==0.2.0", "termcolor==3.3.0")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# Stage groups, each one child process, in order of value; a-c share compiled code in memory.
GROUPS = (("a", "b", "c"), ("d",), ("e",))
MINIMUM_SECONDS = {"a": 60, "b": 45, "c": 30, "d": 40, "e": 90}  # not worth starting with less
RESERVE = 15  # seconds kept after the last stage for the summary


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default_data() -> Path | None:
    for base in (REPOSITORY.parent, REPOSITORY.parents[1]):
        candidate = base / "shared" / "data" / "cifar10-jpeg.tar.gz"
        if candidate.is_file():
            return candidate
    return None


def _reference_archive(source: Path, target: Path) -> str:
    """zju-vipa/CMI's Python files as a tar, from a git directory or a checkout; its commit."""
    git_dir = source if (source / "HEAD").is_file() else source / ".git"
    if git_dir.exists():
        git = ["git", "--git-dir", str(git_dir)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        subprocess.run([*git, "archive", "--format=tar", "-o", str(target), "HEAD", "--",
                        ":(glob)**/*.py"], check=True)  # fmt: skip
        return commit
    with tarfile.open(target, "w") as tar:
        for path in sorted(source.rglob("*.py")):
            tar.add(path, arcname=str(path.relative_to(source)))
    return "unknown (not a git checkout)"


def _working_tree_bytes() -> int:
    """Tracked files and untracked ones git does not ignore: what travels besides the kit."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                            cwd=REPOSITORY, capture_output=True, check=True).stdout  # fmt: skip
    paths = [REPOSITORY / name for name in listed.decode().split("\0") if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


def prepare(arguments: argparse.Namespace) -> int:
    data = arguments.data or _default_data()
    if data is None or not data.is_file():
        return _fail("the CIFAR-10 JPEG copy was not found; pass --data .../cifar10-jpeg.tar.gz")
    reference = arguments.reference or REPOSITORY / "benchmarks" / "reference" / "CMI"
    if not reference.exists():
        return _fail(f"no zju-vipa/CMI at {reference}; pass --reference <checkout or git dir>")
    for folder in ("wheels", "data", "reference"):
        (KIT / folder).mkdir(parents=True, exist_ok=True)
    missing = [w for w in WHEELS if not list((KIT / "wheels").glob(_wheel_glob(w)))]
    if missing:
        platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                   "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                   *platforms, "-d", str(KIT / "wheels"), *missing]  # fmt: skip
        if subprocess.run(command).returncode != 0:
            return _fail(f"pip could not download {' '.join(missing)}")
    shutil.copyfile(data, KIT / "data" / data.name)
    commit = _reference_archive(reference, KIT / "reference" / "CMI.tar")
    files = sorted(p for p in KIT.rglob("*") if p.is_file() and p.name != "manifest.json")
    kit_bytes = sum(p.stat().st_size for p in files)
    tree_bytes = _working_tree_bytes()
    manifest = {
        "wheels": list(WHEELS), "reference_commit": commit, "data": str(data),
        "files": {str(p.relative_to(KIT)): {"bytes": p.stat().st_size, "sha256": _digest(p)}
                  for p in files},
        "kit_bytes": kit_bytes, "working_tree_bytes": tree_bytes,
    }  # fmt: skip
    (KIT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = kit_bytes + tree_bytes
    mib = 2**20
    print(
        f".kit/: {kit_bytes / mib:.1f} MiB ({len(files)} files); working tree "
        f"{tree_bytes / mib:.1f} MiB; together {total / mib:.1f} of {LIMIT / mib:.0f} MiB"
    )
    if total > LIMIT:
        return _fail(f"the kit and the working tree exceed {LIMIT / 2**20:.0f} MiB together")
    return 0


def _wheel_glob(requirement: str) -> str:
    name, version = requirement.split("==")
    return f"{name.replace('-', '_')}-{version}-*.whl"


class Log:
    """Everything the children print, to kit.log in --out and to this process's stdout."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1)
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.file.write(text)
            sys.stdout.write(text)
            sys.stdout.flush()

    def pump(self, stream) -> threading.Thread:
        thread = threading.Thread(target=lambda: [self.write(line) for line in stream])
        thread.start()
        return thread


def _child(command: list[str], env: dict, log: Log, stop_at: float) -> int | str:
    """Runs `command`, SIGTERM at `stop_at`, SIGKILL 20 s later; its exit status."""
    process = subprocess.Popen(
        command, env=env, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    reader = log.pump(process.stdout)
    try:
        status: int | str = process.wait(timeout=max(stop_at - time.time(), 1))
    except subprocess.TimeoutExpired:
        log.write(f"kit: deadline: stopping {' '.join(command[2:4])}\n")
        os.killpg(process.pid, signal.SIGTERM)
        try:
            status = f"stopped at the deadline ({process.wait(timeout=20)})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            status = f"killed at the deadline ({process.wait()})"
    reader.join(timeout=5)
    return status


def run(arguments: argparse.Namespace) -> int:
    started = time.time()
    deadline = started + arguments.deadline
    out = arguments.out
    if out is None:
        return _fail("--out is not set and neither is OUT")
    wheels = sorted((KIT / "wheels").glob("*.whl"))
    if not wheels or not (KIT / "data").is_dir():
        return _fail(f"no kit at {KIT}: run `python benchmarks/gpu/kit.py prepare` first")
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(arguments.scratch)
    site = scratch / "site"
    log = Log(out / "kit.log")
    log.write(f"kit: deadline {arguments.deadline} s, python {sys.version.split()[0]}\n")
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
               "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
               *map(str, wheels)]  # fmt: skip
    if subprocess.run(install).returncode != 0:
        return _fail("the wheels did not install")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPOSITORY)]),
           "PYTHONUNBUFFERED": "1", "KIT_SCRATCH": str(scratch),
           "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor")}  # fmt: skip
    if arguments.cpu_size:  # the CUDA recipe on the CPU (dfkd/compute.py)
        env.update({"DFKD_DEVICE": "cpu", "DFKD_FAST_RECIPE": "cuda"})
    check = subprocess.run([sys.executable, "-c", VERSIONS], env=env, capture_output=True,
                           text=True, cwd=REPOSITORY)  # fmt: skip
    log.write(check.stdout + check.stderr)
    if check.returncode != 0:
        return _fail("the suite does not import under this python; see kit.log")
    versions = json.loads(check.stdout.strip().splitlines()[-1])
    statuses = {"setup": f"{time.time() - started:.0f} s"}
    for group in GROUPS:
        stages = [s for s in group if s in arguments.stages]
        if not stages:
            continue
        left = deadline - RESERVE - time.time()
        if left < MINIMUM_SECONDS[stages[0]]:
            statuses.update(dict.fromkeys(stages, f"skipped: {left:.0f} s left"))
            continue
        command = [sys.executable, "-m", "benchmarks.gpu.stages", *stages, "--out", str(out),
                   "--until", str(deadline - RESERVE - 5),
                   "--quick-method", arguments.quick_method]  # fmt: skip
        if arguments.cpu_size:
            command.append("--cpu-size")
        began = time.time()
        status = _child(command, env, log, deadline - RESERVE)
        statuses.update(dict.fromkeys(stages, f"exit {status} after {time.time() - began:.0f} s"))
        _summary(out, versions, statuses, arguments, started)
    _summary(out, versions, statuses, arguments, started)
    log.write(f"kit: done in {time.time() - started:.0f} s of {arguments.deadline}\n")
    return 0


def _summary(out: Path, versions: dict, statuses: dict, arguments, started: float) -> None:
    from benchmarks.gpu.report import summary

    seconds = time.time() - started
    (out / "summary.md").write_text(summary(out, versions, statuses, arguments, seconds))


# Run by the kit in a child, with the wheels on the path: every version the results depend on,
# and the imports of each command the stages run (the harness, dfkd distill/train-teacher).
VERSIONS = """
import json, importlib, importlib.metadata as m, platform
import torch
for module in ("dfkd.distill", "dfkd.teacher", "dfkd.synthesis.views", "benchmarks.harness",
               "benchmarks.reference_round", "benchmarks.gpu.stages", "kornia"):
    importlib.import_module(module)
names = ("torch", "torchvision", "numpy", "pandas", "scipy", "jinja2", "matplotlib", "tqdm",
         "scikit-learn", "pyyaml", "pillow", "kornia", "kornia-rs", "termcolor", "triton")
found = {}
for name in names:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        found[name] = None
cuda = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "packages": found,
                  "cuda": torch.version.cuda, "cuda_available": cuda,
                  "device": torch.cuda.get_device_name(0) if cuda else platform.machine()}))
"""


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPOSITORY))  # run as a script: benchmarks.gpu.report importable
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("prepare", help="fill .kit/ here")
    make.add_argument("--reference", type=Path, help="zju-vipa/CMI: a checkout or a git dir")
    make.add_argument("--data", type=Path, help="cifar10-jpeg.tar.gz (default: ../shared/data)")
    go = commands.add_parser("run", help="run the stages (on the device)")
    go.add_argument("--deadline", type=float, required=True, help="seconds from the start")
    go.add_argument("--out", type=Path, default=os.environ.get("OUT"))
    go.add_argument("--stages", default="abcde", help="a subset of abcde (default: all)")
    go.add_argument("--quick-method", default="dfq", help="the method of stage e")
    go.add_argument("--scratch", default="/tmp/kit", help="wheels' site, data, caches")
    go.add_argument("--cpu-size", action="store_true", help="shrink every stage (rehearsal)")
    arguments = parser.parse_args(argv)
    return prepare(arguments) if arguments.command == "prepare" else run(arguments)


if __name__ == "__main__":
    raise SystemExit(main())
