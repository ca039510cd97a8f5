"""Where a result came from: code version and commit, libraries, hardware, settings."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib.metadata import version
from typing import Any

import numpy as np
import torch

import dfkd


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def collect(device: torch.device, deterministic: bool, config_hash: str) -> dict[str, Any]:
    """Provenance of a run, written to its metrics and quoted in the report captions."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "suite_version": dfkd.__version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "config_hash": config_hash,
        "device": device.type,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if device.type == "cuda" else None,
        "host": socket.gethostname(),
        "cpu_threads": torch.get_num_threads(),
        "deterministic": deterministic,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
