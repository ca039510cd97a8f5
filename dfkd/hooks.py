"""Forward hooks that record layer inputs: BatchNorm input statistics (for the BN-statistics
loss) and the per-channel means of CMI's contrastive features."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn


@dataclass
class BatchNormStatistics:
    """Batch statistics of each BatchNorm2d input seen during one recording, in layer order."""

    means: list[Tensor] = field(default_factory=list)  # each (C_l,)
    variances: list[Tensor] = field(default_factory=list)  # each (C_l,), biased
    running_means: list[Tensor] = field(default_factory=list)
    running_variances: list[Tensor] = field(default_factory=list)


Record = TypeVar("Record")


class _Recorder(Generic[Record]):
    """Forward pre-hooks on `modules` that fill a fresh record while `recording()` is open."""

    def __init__(self, modules: list[nn.Module], new_record: Callable[[], Record]) -> None:
        self._new_record = new_record
        self._current: Record | None = None
        self._handles = [module.register_forward_pre_hook(self._record) for module in modules]

    def _record(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        raise NotImplementedError

    @contextmanager
    def recording(self) -> Iterator[Record]:
        self._current = self._new_record()
        try:
            yield self._current
        finally:
            self._current = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class BatchNormInputs(_Recorder[BatchNormStatistics]):
    """Records the mean and variance of every BatchNorm2d input of `model` while recording.

    Hooks are registered once and stay cheap when idle. The statistics are computed in float32
    (float64 inputs stay float64) with one fused var_mean over (N, H, W) on the input's own
    layout (no transposed copy), so a bf16 forward pass still yields full-precision statistics.
    """

    def __init__(self, model: nn.Module) -> None:
        modules = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
        super().__init__(modules, BatchNormStatistics)
        if not self._handles:
            raise ValueError("the model has no BatchNorm2d layer to match statistics against")

    def _record(self, module: nn.BatchNorm2d, inputs: tuple[Tensor, ...]) -> None:
        if self._current is None:
            return
        x = inputs[0] if inputs[0].dtype == torch.float64 else inputs[0].float()
        variance, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        self._current.means.append(mean)
        self._current.variances.append(variance)
        self._current.running_means.append(module.running_mean)
        self._current.running_variances.append(module.running_var)


class LayerInputMeans(_Recorder[list[Tensor]]):
    """Records the spatial mean (N, C) of each input of `modules` while recording.

    CMI's contrastive features: the per-sample, per-channel mean of the *inputs* of the hooked
    layers, in layer order (InstanceMeanHook in the CMI code); `recording()` yields the list,
    to be concatenated along dim 1. Unlike BN statistics
    they keep their graph, since the contrastive loss trains the generator through them.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        if not modules:
            raise ValueError("no layer to take contrastive features from")
        super().__init__(modules, list)

    def _record(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if self._current is not None:
            self._current.append(inputs[0].mean(dim=(2, 3)))  # (N, C_l)
