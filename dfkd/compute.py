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

The tests run both modes on the CPU only; the CUDA side of `fast` is checked by
benchmarks/gpu/check.sh on a GPU, which also shows what the BN-statistics hooks (dfkd/hooks.py)
cost a compiled teacher.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch

from dfkd.runtime import memory_format

ComputeMode = Literal["eager", "fast"]


@dataclass(frozen=True)
class Compute:
    mode: ComputeMode
    device: torch.device

    @property
    def mixed_precision(self) -> bool:
        return self.mode == "fast" and self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast in `fast` on CUDA; nothing otherwise."""
        if self.mixed_precision:
            return torch.autocast("cuda", dtype=torch.bfloat16)
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
        return {"fused": True} if self.device.type == "cuda" else {"foreach": True}

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network as this mode runs it: compiled in place in `fast` on CUDA (its
        state_dict keys stay those of the module)."""
        if self.mixed_precision:
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
        }
