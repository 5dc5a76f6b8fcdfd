"""One retrain at a time: an exclusive lock that a crashed holder cannot leave stuck.

The lock is ``flock`` on a file in the artifacts folder. The kernel releases
it when its holder dies, however it dies (SIGKILL included), so a lock is
never stuck. The file also records who holds it (pid, host, job, time): when
the next job finds a record whose holder no longer holds the lock, it reports
that it recovered a stale lock from that holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from latentcast.errors import ConflictError


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    job: str
    since: str


class JobLock:
    """Exclusive, non-blocking, crash-safe lock on ``path``.

    ``acquire`` raises ``ConflictError`` naming the holder when another live
    process holds it. ``recovered`` is the stale holder found on acquiring, if
    any.
    """

    def __init__(self, path: str | os.PathLike[str], job: str) -> None:
        self.path = Path(path)
        self.job = job
        self.recovered: Holder | None = None
        self._fd: int | None = None

    def acquire(self) -> JobLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f"job {holder.job} (pid {holder.pid} on {holder.host}, since {holder.since})" if holder else "?"
            raise ConflictError(
                f"another retrain is running: {who}", holder=holder.__dict__ if holder else None
            ) from None
        self.recovered = _read_holder(fd)
        me = Holder(os.getpid(), socket.gethostname(), self.job, datetime.now(UTC).isoformat(timespec="seconds"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # a clean exit leaves no holder record behind
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    raw = os.pread(fd, 4096, 0)
    if not raw:
        return None
    try:
        value: dict[str, Any] = json.loads(raw)
        return Holder(int(value["pid"]), str(value["host"]), str(value["job"]), str(value["since"]))
    except (ValueError, KeyError, TypeError):
        return Holder(-1, "?", "unreadable lock record", "?")
