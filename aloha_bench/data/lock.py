"""One writer per episode store: an exclusive lock file beside the store, holding the writer's PID.

``<store>.lock`` (e.g. ``demo.zarr.lock``) is locked with ``flock`` for as long as a writer has
the store open. The kernel drops the lock when its process dies, however it dies, so a lock left
by a killed run is stale by construction: the next writer takes it over (and logs whose it
was). The file names the holder (PID, host, command, start time) so a refused second writer can
say who to wait for. The lock sits beside the store, not inside it, because it must be taken
before the store exists (two runs creating the same store would otherwise race).

POSIX only (``fcntl``), like the rest of the project's tooling; a filesystem without ``flock``
support (some network mounts) reports an error instead of silently allowing two writers.

The study (``aloha_bench.study.cell_lock``) uses the same lock for whole cells, with
``wait=True`` (a second study waits for the cell, then finds it done) and ``required=False``
(where flock is refused the cell runs unlocked, as it would without the lock).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class StoreLockedError(ValueError):
    """Another process is writing to the store."""


def lock_path(store_path: str | Path) -> Path:
    """The lock file of a store: ``<store>.lock`` beside it."""
    path = Path(store_path)
    return path.with_name(path.name + ".lock")


def _holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return "an unknown process"
    command = holder.get("command", "")
    return (
        f"PID {holder['pid']} on {holder.get('host', '?')} since {holder.get('started', '?')}"
        + (f" ({command})" if command else "")
    )


class WriterLock:
    """The exclusive writer lock of one store; :meth:`release` (or process exit) frees it.

    Args:
        store_path: the store (or study cell) the lock protects; named in messages.
        lock_file: the lock file; default ``<store>.lock`` beside the store (:func:`lock_path`).
        wait: when another live process holds the lock, wait for it to release the lock
            (``waited`` is then True) instead of raising.
        required: when False, a filesystem that refuses ``flock`` leaves the lock unheld (``held``
            is False) with a warning instead of raising.
        on_wait: called once with a description of the holder before waiting (``wait=True``),
            so a caller can say whom it waits for; default a log message.

    Raises:
        StoreLockedError: another live process holds the lock and ``wait`` is False (the message
            names its PID), or ``required`` and the filesystem refuses ``flock``.
    """

    def __init__(
        self,
        store_path: str | Path,
        *,
        lock_file: str | Path | None = None,
        wait: bool = False,
        required: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.path = Path(lock_file) if lock_file is not None else lock_path(store_path)
        # The holder whose stale lock this one took over (a killed run), or None.
        self.took_over: dict[str, Any] | None = None
        # Whether another process held the lock and this one waited for it.
        self.waited = False
        self._fd: int | None = None
        self._fd = self._acquire(wait, required, on_wait)

    def _acquire(
        self, wait: bool, required: bool, on_wait: Callable[[str], None] | None
    ) -> int | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    os.close(fd)
                    raise StoreLockedError(
                        f"{self.store_path} is being written by {_describe(holder)}; two writers "
                        "would overwrite each other's episodes. Wait for that run to finish (or "
                        "stop it), or write to another path"
                    ) from None
                if not self.waited:
                    self.waited = True
                    message = f"{self.store_path.name}: waiting for {_describe(holder)}"
                    (on_wait or logger.warning)(message)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            except OSError as exc:
                os.close(fd)
                if not required:
                    logger.warning("cannot lock %s (%s): running without the lock", self.path, exc)
                    return None
                raise StoreLockedError(
                    f"cannot lock {self.path} ({exc}); this filesystem may not support flock: "
                    "write the store to a local disk"
                ) from exc
            # A releasing writer unlinks the file after we opened it: lock the current file.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            self.took_over = previous
            logger.warning(
                "%s: took over a stale writer lock of %s, which no longer holds it (a killed "
                "run); what it finished (episodes, checkpoints) is intact",
                self.store_path,
                _describe(previous),
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:500],
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        return fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and free the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: a waiting writer then re-opens a new file
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        # An abandoned writer must not block others; process exit would free it anyway.
        self.release()
