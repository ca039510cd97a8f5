"""Compute modes: how a run spends its device, never what it computes.

`eager` is the baseline: float32 everywhere, no compilation, PyTorch's default optimizer kernels;
every recipe is checked against it. `fast` keeps every recipe's semantics (hyperparameters, steps,
augmentation, the pools' uint8 quantisation) and removes waste:

- on CUDA, bfloat16 autocast around the forward passes of generator steps and student losses
  (the BN-statistics loss, KL/cross-entropy reductions and every metric stay in float32:
  dfkd/hooks.py computes BN statistics in float32, autocast runs softmax and log-softmax in
  float32, evaluation runs outside autocast); channels_last images and weights; the teacher and
  the student compiled with torch.compile; fused SGD and Adam;
- on the CPU, where bfloat16 is slower than float32 on most processors and torch.compile's C++
  build would cost more than a run of the embedded default, the foreach (multi-tensor) SGD and
  Adam kernels only.

Both modes already skip what no step needs (the loop's contract): the teacher never has weight
gradients, the student has none during generator steps, samples for student steps are drawn
without an autograd graph, and nothing synchronises with the host inside an epoch.

The CUDA recipe on the CPU, on request: with DFKD_FAST_RECIPE=cuda in the environment (or
`Compute(..., cuda_recipe=True)`), `fast` on the CPU runs exactly what it runs on CUDA (bfloat16
CPU autocast, channels_last, both networks compiled, fused optimizers where the device has them,
foreach elsewhere), so that the CUDA path's numerics and torch.compile's graph breaks are checked
before a GPU is at hand (benchmarks/fast_on_cpu.py). It is slower there than either mode.

The tests run both modes on the CPU; benchmarks/fast_on_cpu.py runs every method of the embedded
default in the CUDA recipe against eager; benchmarks/gpu/kit.py checks the CUDA side on a GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from dfkd.errors import UserError
from dfkd.runtime import memory_format

ComputeMode = Literal["eager", "fast"]
RECIPE_VARIABLE = "DFKD_FAST_RECIPE"


@dataclass(frozen=True)
class Compute:
    mode: ComputeMode
    device: torch.device
    cuda_recipe: bool = False  # `fast` as on CUDA whatever the device (see the module docstring)

    @classmethod
    def for_run(cls, mode: ComputeMode, device: torch.device) -> Compute:
        """The mode of a run on `device`, with DFKD_FAST_RECIPE ("cuda" or "device", the
        default) from the environment."""
        recipe = os.environ.get(RECIPE_VARIABLE, "device")
        if recipe not in ("cuda", "device"):
            raise UserError(f"{RECIPE_VARIABLE}={recipe!r}: expected 'cuda' or 'device'")
        return cls(mode, device, cuda_recipe=recipe == "cuda")

    @property
    def mixed_precision(self) -> bool:
        """bfloat16 autocast, channels_last and compilation: `fast` on CUDA, or on request."""
        return self.mode == "fast" and (self.device.type == "cuda" or self.cuda_recipe)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast in `fast` on CUDA (or in the CUDA recipe); nothing otherwise."""
        if self.mixed_precision:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last with mixed precision, where the tensor-core kernels want it; else the
        device's default layout (dfkd.runtime.memory_format: channels_last on the CPU)."""
        return torch.channels_last if self.mixed_precision else memory_format(self.device)

    @property
    def optimizer_options(self) -> dict[str, bool]:
        """Keyword arguments for torch.optim.SGD and Adam."""
        if self.mode == "eager":
            return {}
        fused = self.device.type == "cuda" or (
            self.cuda_recipe and self.device.type in _get_fused_kernels_supported_devices()
        )
        return {"fused": True} if fused else {"foreach": True}

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network as this mode runs it: compiled in place in `fast` on CUDA (or in the CUDA
        recipe; its state_dict keys stay those of the module)."""
        if self.mixed_precision:
            # torch._dynamo by default does not guard on a module's hooks, so a compiled graph
            # traced without the BN-statistics hooks (dfkd/hooks.py) would serve a teacher that
            # has them whenever a hook-free network of the same shapes ran first: with teacher
            # and student of one architecture, the generator step then records no statistics.
            torch._dynamo.config.skip_nnmodule_hook_guards = False
            model.compile()
        return model

    def describe(self) -> dict[str, Any]:
        """What the mode did on this device, for the provenance and the reports."""
        return {
            "mode": self.mode,
            "autocast": "bfloat16" if self.mixed_precision else None,
            "compiled": self.mixed_precision,
            "memory_format": str(self.memory_format).removeprefix("torch."),
            "optimizers": next(iter(self.optimizer_options), "default"),
            "cuda_recipe": self.cuda_recipe and self.device.type != "cuda",
        }
