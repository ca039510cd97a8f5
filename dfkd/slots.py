"""GPU slots: one device per concurrent job on a machine with several GPUs.

Snakemake bounds how many jobs hold its `gpu` resource at once (profiles/gpus) but does not say
which device each should use (snakemake issue 281). With DFKD_GPU_SLOTS=N in the environment, a
job takes the first of N slot locks that no other job holds (an exclusive flock on
`<DFKD_GPU_SLOT_DIR, default .snakemake/gpu_slots>/<k>.lock`, which the operating system releases
when the process ends, however it ends) and runs on cuda:k. The slot is in its provenance.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from dfkd.errors import UserError

_held: tuple[int, IO[bytes]] | None = None  # (slot, its open lock file) for this process


def gpu_slot() -> int | None:
    """This process's slot: taken on the first call when DFKD_GPU_SLOTS is set, else None."""
    global _held
    if _held is not None:
        return _held[0]
    count = os.environ.get("DFKD_GPU_SLOTS")
    if not count:
        return None
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"DFKD_GPU_SLOTS={count!r}: expected the number of GPUs, e.g. 4")
    directory = Path(os.environ.get("DFKD_GPU_SLOT_DIR", ".snakemake/gpu_slots"))
    directory.mkdir(parents=True, exist_ok=True)
    for slot in range(int(count)):
        handle = open(directory / f"{slot}.lock", "ab")  # noqa: SIM115 - held for the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held = (slot, handle)
        return slot
    raise UserError(
        f"all {count} GPU slots in {directory} are taken; run Snakemake with --resources "
        f"gpu={count} (profiles/gpus) so that no more jobs than GPUs run at once"
    )
