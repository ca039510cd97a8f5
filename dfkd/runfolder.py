"""A job's folder, written by one process at a time, and never over a finished result.

Every training command (`dfkd train-teacher`, `import-teacher`, `distill`) claims its folder
before any work: it must be writable (a read-only folder fails here, not after an epoch), no
other process may hold it (a lock file, `.lock`, held with flock while the job runs and removed
when it ends), and a finished result in it (its `metrics.json`) is kept: for the same settings
there is nothing to do, for other settings the command refuses. The workflow deletes a job's
outputs before it runs the job again, so only a folder given by hand can hold one.

While it holds the folder the command removes the temporary files that a write cut short by a
kill left (`.<name>.<random>.tmp`, see dfkd/atomic.py), and, once its input is checked, records
the config it runs as `config.yaml`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from dfkd.atomic import atomic_write_text
from dfkd.config import config_hash, config_text
from dfkd.errors import UserError
from dfkd.records import load_json

LOCK = ".lock"


class RunFolder:
    """`with RunFolder(folder, config) as claim:` holds `folder` for one job of `config`;
    `claim.finished` says that it already holds this job's finished result."""

    def __init__(self, folder: str | Path, config: Any) -> None:
        self.folder = Path(folder)
        self.config = config
        self.finished = False
        self._created = False
        self._lock: int | None = None

    def __enter__(self) -> RunFolder:
        try:
            self._created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = self._acquire()
        except OSError as error:  # read-only, not permitted, a file in the way, ...
            raise UserError(
                f"cannot write to {self.folder}/ ({error.strerror}); make it writable or choose "
                "another --out-dir"
            ) from None
        try:
            self.finished = self._finished()
            if not self.finished:
                for leftover in self.folder.glob(".*.tmp"):
                    leftover.unlink()
        except BaseException:
            self._release()
            raise
        return self

    def record_config(self) -> None:
        """Writes the config the job runs as `config.yaml`, once its input is checked."""
        record = self.folder / "config.yaml"
        text = config_text(self.config)
        if not record.is_file() or record.read_text() != text:
            atomic_write_text(record, text)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _acquire(self) -> int:
        """The lock file's descriptor, exclusively locked; a second writer gets one line."""
        path = self.folder / LOCK
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(descriptor, 32).decode(errors="replace").strip() or "another"
                os.close(descriptor)
                raise UserError(
                    f"{self.folder}/ is being written by process {holder} (its {LOCK} is held); "
                    "wait for it to end, or choose another --out-dir"
                ) from None
            try:
                same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed while this process waited to open it
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
                return descriptor
            os.close(descriptor)

    def _release(self) -> None:
        if self._lock is not None:
            (self.folder / LOCK).unlink(missing_ok=True)  # while held: no one else can lock it
            os.close(self._lock)
            self._lock = None
            if self._created and not any(self.folder.iterdir()):
                self.folder.rmdir()  # bad input leaves nothing behind

    def _finished(self) -> bool:
        """Whether the folder holds this job's finished result; another job's is refused."""
        metrics = self.folder / "metrics.json"
        if not metrics.exists():
            return False
        ours = config_hash(self.config)
        try:
            record = load_json(metrics)
            theirs = record["provenance"]["config_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            theirs = None
        if theirs == ours:
            print(f"{self.folder}/ holds this job's finished result (config {ours}): nothing to do")
            return True
        described = f"config {theirs}" if isinstance(theirs, str) else "an unreadable record"
        raise UserError(
            f"{self.folder}/ holds a finished result of other settings ({described}; these are "
            f"config {ours}); choose another --out-dir, or delete the folder to run it again"
        )
