"""Our round against the reference code's own round: same device, shapes, batch and threads.

    python benchmarks/reference_round.py --reference benchmarks/reference/CMI
    python benchmarks/reference_round.py --reference benchmarks/reference/CMI --batch 256

`--reference` is a checkout of zju-vipa/CMI (9e79fa9), e.g. `git clone
https://github.com/zju-vipa/CMI benchmarks/reference/CMI` (the folder is git-ignored: the suite
never ships or copies it), importable with its own requirements (termcolor, kornia, tqdm,
einops; `pip install --target <dir>` and put the dir on PYTHONPATH keeps them out of the suite's
environment). The round timed is DFQ's as `datafree_kd.py --method dfq` runs it, with the
scripts' values (g_steps 1, kd_steps 10, adv 1, bn 1, oh 1, balance 20, KL at T=1):

- the reference: its GenerativeSynthesizer.synthesize() (one generator step of its
  LargeGenerator through its DeepInversionHook BN loss), then its `train()` over kd_steps
  batches drawn by `synthesizer.sample()`, with its registry's ResNets and SGD;
- ours: one round of dfkd.loop.distill with the suite's DFQ (params/methods/dfq.yaml) and the
  same networks, in the chosen compute mode.

Both start from random weights (a round's cost does not depend on them). After `--warmup` rounds
of each, the rounds alternate (ours, theirs, ...) so that drifts in the machine's speed hit both
alike; the result is the median seconds per round of each and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.harness import SilentProgress
from dfkd.compute import Compute
from dfkd.config import load_suite, read_yaml
from dfkd.data import dataset_info
from dfkd.loop import LoopState, distill
from dfkd.methods import METHODS
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.provenance import device_name
from dfkd.runtime import StopRequest, TrainingClock, choose_device, synchronize
from dfkd.schema import from_dict

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"


def our_round(pair: str, batch: int, compute: Compute):
    """A callable running one DFQ round of the suite's loop on CIFAR-10 shapes."""
    suite = load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")
    schedule, hyperparameters = suite.method_settings("dfq", "cifar10", pair)
    info = dataset_info("cifar10")
    device, layout = compute.device, compute.memory_format
    teacher_name, student_name = pair.split("-")
    teacher = build_model(teacher_name, info.num_classes).to(device, memory_format=layout)
    teacher = compute.prepare(teacher.eval().requires_grad_(False))
    student = compute.prepare(
        build_model(student_name, info.num_classes).to(device, memory_format=layout)
    )
    config = from_dict(METHODS.get("dfq").config_class, hyperparameters, "dfq")
    context = method_context(info, teacher, student, batch, schedule.epochs, device, layout,
                             compute.optimizer_options)  # fmt: skip
    method = METHODS.get("dfq")(config, context)
    loop = replace(schedule, epochs=1, rounds_per_epoch=1, batch_size=batch)
    optimizer, scheduler = build_optimizer(student.parameters(), schedule.student_optimizer,
                                     schedule.epochs, compute.optimizer_options)  # fmt: skip

    def run() -> None:
        distill(method, student, optimizer, scheduler, loop, LoopState(), TrainingClock(device),
                dict, lambda state: None, SilentProgress("ours", 1, 1, "round"), StopRequest(),
                compute.autocast)  # fmt: skip

    return run, (loop.generator_steps_per_round, loop.student_steps_per_round)


def their_round(reference: Path, pair: str, batch: int, device: torch.device, steps: tuple):
    """A callable running one round of the reference's DFQ (datafree_kd.py's pieces)."""
    sys.path.insert(0, str(reference))
    # The reference imports torchvision.models.utils, which torchvision 0.13 removed; the one
    # name it takes from there lives in torch.hub.
    shim = types.ModuleType("torchvision.models.utils")
    shim.load_state_dict_from_url = torch.hub.load_state_dict_from_url
    sys.modules.setdefault("torchvision.models.utils", shim)
    datafree = importlib.import_module("datafree")
    registry = importlib.import_module("registry")
    script = importlib.import_module("datafree_kd")  # its argument parser is built, not run
    teacher_name, student_name = pair.split("-")
    teacher = registry.get_model(teacher_name, num_classes=10).to(device).eval()
    student = registry.get_model(student_name, num_classes=10).to(device)
    normalizer = datafree.utils.Normalizer(**registry.NORMALIZE_DICT["cifar10"])
    generator = datafree.models.generator.LargeGenerator(nz=256, ngf=64, img_size=32, nc=3)
    synthesizer = datafree.synthesis.GenerativeSynthesizer(
        teacher=teacher, student=student, generator=generator, nz=256, img_size=(3, 32, 32),
        iterations=steps[0], lr_g=1e-3, synthesis_batch_size=batch, sample_batch_size=batch,
        adv=1.0, bn=1.0, oh=1.0, act=0.0, balance=20.0, criterion=datafree.criterions.KLDiv(),
        normalizer=normalizer, device=device,
    )  # fmt: skip
    criterion = datafree.criterions.KLDiv(T=1.0)  # datafree_kd.py: KLDiv() for dfq
    optimizer = torch.optim.SGD(student.parameters(), 0.1, weight_decay=1e-4, momentum=0.9)
    gpu = None if device.type == "cpu" else device.index or 0
    args = SimpleNamespace(kd_steps=steps[1], gpu=gpu, autocast=contextlib.nullcontext,
                           fp16=False, print_freq=0, current_epoch=0)  # fmt: skip

    def run() -> None:
        synthesizer.synthesize()
        script.train(synthesizer, [student, teacher], criterion, optimizer, args)

    return run


def _seconds(run, device: torch.device) -> float:
    synchronize(device)
    began = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - began


def measure(
    reference: Path, pair: str, batch: int, mode: str, threads: int, warmup: int, rounds: int,
    cuda_recipe: bool = False, until: float | None = None,
) -> dict:  # fmt: skip
    """Median seconds per round of ours and of the reference, alternating after `warmup` rounds
    of each; fewer timed rounds if time.time() reaches `until`."""
    torch.set_num_threads(threads)
    device = choose_device()
    ours, steps = our_round(pair, batch, Compute(mode, device, cuda_recipe=cuda_recipe))
    theirs = their_round(reference, pair, batch, device, steps)
    warmup_seconds = {"ours": 0.0, "reference": 0.0}
    for _ in range(warmup):  # the first of ours compiles, in `fast`
        warmup_seconds["ours"] += _seconds(ours, device)
        warmup_seconds["reference"] += _seconds(theirs, device)
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(rounds):
        times["ours"].append(_seconds(ours, device))
        times["reference"].append(_seconds(theirs, device))
        if until is not None and time.time() > until - 2 * sum(t[-1] for t in times.values()):
            break
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "device": device_name(device), "torch": torch.__version__, "threads": threads,
        "pair": pair, "batch": batch, "compute": mode, "cuda_recipe": cuda_recipe,
        "round": {"generator_steps": steps[0], "student_steps": steps[1]},
        "warmup_seconds": warmup_seconds, "seconds_per_round": times, "median_seconds": medians,
        "reference_over_ours": medians["reference"] / medians["ours"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="a zju-vipa/CMI checkout")
    parser.add_argument("--pair", default="resnet34-resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compute", default="eager", choices=["eager", "fast"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each")
    parser.add_argument("--name", help="results file name (default: no file)")
    arguments = parser.parse_args(argv)
    result = measure(arguments.reference, arguments.pair, arguments.batch, arguments.compute,
                     arguments.threads, arguments.warmup, arguments.rounds)  # fmt: skip
    medians, steps = result["median_seconds"], result["round"]
    print(
        f"DFQ round ({steps['generator_steps']} generator + {steps['student_steps']} student "
        f"steps), {arguments.pair}, batch {arguments.batch}, {arguments.threads} thread(s) on "
        f"{result['device']}: ours {medians['ours']:.3f} s ({arguments.compute}), the reference "
        f"{medians['reference']:.3f} s: ours is {result['reference_over_ours']:.2f}x as fast"
    )
    if arguments.name:
        (RESULTS / f"{arguments.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
