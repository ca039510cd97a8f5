"""Where a result came from: code version and commit, libraries, hardware, settings."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import socket
import subprocess
import tomllib
from importlib.metadata import distributions, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dfkd
from dfkd.slots import gpu_slot


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


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, as uv.lock writes names


def environment_lock(lock: Path) -> dict[str, Any]:
    """The lock file's SHA-256 and every installed package whose version it does not pin.

    An empty `lock_mismatches` means the running environment is the locked one (for the packages
    this platform installs); a run under another torch, say, lists it as "torch 2.15.0 (locked
    2.14.1)". Without a lock file (an installed library, not a checkout) both are None.
    """
    if not lock.is_file():
        return {"lock_sha256": None, "lock_mismatches": None}
    data = lock.read_bytes()
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads(data.decode()).get("package", []):
        if "version" in package:  # the project itself is locked without a version
            locked.setdefault(package["name"], set()).add(package["version"])
    mismatches = sorted(
        f"{name} {installed.version} (locked {', '.join(sorted(locked[name]))})"
        for installed in distributions()
        if (name := _normalized(installed.metadata["Name"] or "")) in locked
        and installed.version not in locked[name]
    )
    return {"lock_sha256": hashlib.sha256(data).hexdigest(), "lock_mismatches": mismatches}


def collect(device: torch.device, deterministic: bool, config_hash: str) -> dict[str, Any]:
    """Provenance of a run, written to its metrics and quoted in the reports' provenance blocks."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    top = _git("rev-parse", "--show-toplevel")
    return {
        "suite_version": dfkd.__version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        **environment_lock(Path(top or ".") / "uv.lock"),
        "config_hash": config_hash,
        "device": device.type,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if device.type == "cuda" else None,
        "gpu_slot": gpu_slot(),
        "host": socket.gethostname(),
        # The SLURM job that wrote it: one Snakemake submits again has a new id (a job SLURM
        # itself requeues keeps its id).
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cpu_threads": torch.get_num_threads(),
        "deterministic": deterministic,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
