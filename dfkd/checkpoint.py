"""Resumable run state: checksummed, atomically written checkpoints, and RNG capture.

A run directory keeps `checkpoint.pt` and the one before it, `checkpoint.prev.pt`. Each file is
a short header (format tag and the SHA-256 of the payload) followed by a `torch.save` payload, so
a torn or truncated file is detected before unpickling. Loading falls back to the previous
checkpoint when the latest is damaged (and removes the damaged one, so that the next save keeps
the good one as its fallback), and ignores checkpoints written for another config.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfkd.atomic import atomic_write_bytes
from dfkd.errors import CheckpointError

_TAG = b"dfkd-checkpoint-v1\n"
LATEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return _TAG + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(data: bytes, name: str) -> dict[str, Any]:
    header = len(_TAG) + 65
    if not data.startswith(_TAG) or len(data) < header:
        raise CheckpointError(f"{name} is not a dfkd checkpoint or is truncated")
    digest, payload = data[len(_TAG) : header - 1].decode(), data[header:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{name} is corrupt or truncated (checksum mismatch)")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def save_run_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Writes `state` as the latest checkpoint, keeping the previous one as a fallback."""
    directory = Path(directory)
    data = encode(state)
    latest = directory / LATEST
    if latest.exists():
        os.replace(latest, directory / PREVIOUS)
    atomic_write_bytes(latest, data)


def load_run_state(directory: str | Path, config_hash: str) -> dict[str, Any] | None:
    """The newest intact checkpoint written for `config_hash`, or None to start afresh.

    Damaged files and checkpoints of another config are skipped with a note on stderr; only when
    every existing checkpoint is damaged does it raise, since silently restarting would discard
    hours of work the user may want to recover.
    """
    directory = Path(directory)
    for leftover in directory.glob(f".{LATEST}.*.tmp"):  # a write cut short by a kill
        leftover.unlink()
    damaged = []
    for name in (LATEST, PREVIOUS):
        path = directory / name
        if not path.exists():
            continue
        try:
            state = decode(path.read_bytes(), str(path))
        except CheckpointError as error:
            print(f"warning: {error}; trying the previous checkpoint", file=sys.stderr)
            damaged.append(str(path))
            continue
        if state.get("config_hash") != config_hash:
            print(
                f"note: {path} was written for another config; starting the run afresh",
                file=sys.stderr,
            )
            return None
        if damaged:
            # The next save would otherwise rotate the damaged file over this good one, and a
            # kill during that save would leave no intact checkpoint at all.
            (directory / LATEST).unlink()
        return state
    if damaged:
        raise CheckpointError(
            f"every checkpoint in {directory} is damaged ({', '.join(damaged)}); delete them to "
            "restart the run from scratch"
        )
    return None


def remove_run_state(directory: str | Path) -> None:
    """Drops the resume checkpoints once a run's final outputs are written.

    The older one goes first: a kill in between leaves the final state, which resumes to the same
    outputs at once.
    """
    for name in (PREVIOUS, LATEST):
        (Path(directory) / name).unlink(missing_ok=True)


def capture_rng() -> dict[str, Any]:
    """Every random-number generator the suite draws from (Python, NumPy, torch CPU and CUDA)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


MODEL_FORMAT = "dfkd-model-v1"


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    architecture: str,
    dataset: str,
    extra: dict[str, Any],
) -> None:
    """A trained teacher or student: weights plus what they are, loadable with `load_model`."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format": MODEL_FORMAT,
            "architecture": architecture,
            "dataset": dataset,
            "num_classes": model.num_classes,
            "state_dict": model.state_dict(),
            **extra,
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_model(
    path: str | Path, architecture: str, dataset: str, num_classes: int
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model in `path`, checked to be `architecture` for `num_classes` classes of `dataset`."""
    from dfkd.models import build_model  # models import the registry, not the other way round

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged zip archives
        raise CheckpointError(f"{path} is corrupt or truncated ({type(error).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a dfkd model file (format {MODEL_FORMAT})")
    found = (record["architecture"], record["num_classes"], record["dataset"])
    if found != (architecture, num_classes, dataset):
        raise CheckpointError(
            f"{path} holds a {found[0]} for {found[1]} classes of {found[2]}, but this run needs a "
            f"{architecture} for {num_classes} classes of {dataset}"
        )
    model = build_model(architecture, num_classes)
    model.load_state_dict(record["state_dict"])
    return model, {k: v for k, v in record.items() if k != "state_dict"}
