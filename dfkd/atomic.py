"""Atomic file writes: a reader, or a kill at any instant, sees the old file or the new one.

The data goes to a temporary file in the same directory, is flushed and fsynced, and then
replaces the target with os.replace (atomic on POSIX within one filesystem); the directory is
fsynced so the rename itself survives a crash. The file is created as a plain `open()` would
create it, with the permissions the umask leaves (tempfile.mkstemp would make it private), so
results on a shared cluster are as readable as the logs beside them.

A full disk (or quota) ends the write with a DiskFullError naming the file; the temporary file
is removed and the old file, if any, stays.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

from dfkd.errors import DiskFullError


def _create_temporary(directory: Path, name: str) -> tuple[int, Path]:
    while True:
        temporary = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:  # mode 0o666: the kernel applies the umask, as for open(path, "w")
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"no space left on the device (or quota) while writing {path} "
                f"({len(data) / 2**20:.1f} MiB); free space under {path.parent}/ and run again: "
                "finished work is kept and runs resume from their last checkpoint"
            ) from None
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
