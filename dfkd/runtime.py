"""Where and how a run executes: device, determinism, training clock, memory, stop signals."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from dfkd.errors import UserError
from dfkd.slots import gpu_slot


def choose_device() -> torch.device:
    """CUDA when available, else CPU; DFKD_DEVICE (e.g. "cpu", "cuda:1") overrides; with
    DFKD_GPU_SLOTS, the GPU of the job's slot (dfkd/slots.py)."""
    requested = os.environ.get("DFKD_DEVICE")
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise UserError(
                f"DFKD_DEVICE={requested} is not a device; use cpu, cuda or cuda:<index>"
            ) from None
        if device.type == "cuda" and (
            not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
        ):
            found = torch.cuda.device_count() if torch.cuda.is_available() else "no"
            raise UserError(
                f"DFKD_DEVICE={requested}, but this machine has {found} CUDA device(s); unset it "
                "or choose one that exists"
            )
        return device
    slot = gpu_slot()
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda" if slot is None else f"cuda:{slot}")


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic mode for regression tests; the fast default lets cuDNN pick algorithms.

    On the CPU the ops the suite uses are deterministic for a fixed thread count already, so only
    CUDA is switched (which also spares CPU jobs the seconds torch needs to set the switch up).
    Some CUDA kernels (e.g. the backward of nearest upsampling in the generators) have no
    deterministic version; they warn instead of failing.
    """
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout of images and convolution weights on `device`.

    channels_last on the CPU: oneDNN runs the suite's conv nets faster in it (measured on the
    embedded default: a DFQ run's training 19 s instead of 25 s, max-pooling 12x faster). On
    CUDA the default layout in float32, since channels_last pays off there with mixed precision
    (the `fast` compute mode, dfkd/compute.py). Only strides change: every value is computed by
    the same operations.
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainingClock:
    """Accumulated wall-clock of training only (evaluation and I/O excluded), device-synchronised.

    The accumulated total is part of the run state, so t_90 survives a resume.
    """

    def __init__(self, device: torch.device, elapsed_seconds: float = 0.0) -> None:
        self.device = device
        self.elapsed_seconds = elapsed_seconds
        self._started: float | None = None

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> None:
        if self._started is None:
            return
        synchronize(self.device)
        self.elapsed_seconds += time.perf_counter() - self._started
        self._started = None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """Peak device memory allocated by tensors (CUDA) and the process's peak resident memory."""
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    device_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"peak_device_memory_bytes": device_bytes, "peak_host_memory_bytes": host}


class StopRequest:
    """Turns SIGTERM/SIGINT (SLURM's pre-emption warning, Ctrl-C) into a flag the loops poll.

    The loops then write a checkpoint at the next safe point and exit with status 143 (SIGTERM)
    or 130 (SIGINT), so a scheduler sees the job as interrupted, and the next start resumes.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def __bool__(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_status(self) -> int:
        return 128 + (self.signal_number or 0)

    def _handle(self, signal_number: int, frame: object) -> None:
        del frame
        if self.signal_number is not None:  # a second signal: stop now, at the last checkpoint
            sys.exit(128 + signal_number)
        self.signal_number = signal_number
        print(
            f"received {signal.Signals(signal_number).name}; checkpointing at the next safe point",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


class Interrupted(Exception):
    """Raised by a loop after it checkpointed in response to a stop request."""

    def __init__(self, exit_status: int) -> None:
        super().__init__(f"interrupted; state saved (exit status {exit_status})")
        self.exit_status = exit_status
