"""Leases: the versions each running process holds, written beside the registry for prunes to read.

    ARTIFACTS/.leases/<host>-<pid>.json   {"host", "pid", "expires_at", "versions"}

A serving process rewrites its lease (atomically) at every look for new
champions: the versions it has loaded and those its live sessions are pinned to.
A lease holds until it expires, and past that while its process still runs on
this host (one whose polling is off renews it only when it reloads). A prune
keeps every version a holding lease names.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from data.files import write_whole

LEASES_FOLDER = ".leases"


class Leases:
    """The leases under one registry folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = Path(root) / LEASES_FOLDER

    def own_path(self) -> Path:
        return self.folder / f"{socket.gethostname()}-{os.getpid()}.json"

    def write(self, versions: Iterable[str], seconds: float) -> None:
        """This process holds ``versions`` for ``seconds`` (replacing what it held)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lease = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "expires_at": time.time() + seconds,
            "versions": sorted(set(versions)),
        }
        write_whole(self.own_path(), json.dumps(lease))

    def release(self) -> None:
        """This process holds nothing any more (it stops)."""
        self.own_path().unlink(missing_ok=True)

    def held(self) -> set[str]:
        """Every version a holding lease names; leases that no longer hold are deleted."""
        if not self.folder.is_dir():
            return set()
        versions: set[str] = set()
        for path in self.folder.glob("*.json"):
            try:
                lease = json.loads(path.read_text())
                expires_at, host, pid = float(lease["expires_at"]), str(lease["host"]), int(lease["pid"])
                named = [str(v) for v in lease["versions"]]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced, or unreadable: the next prune reads it again
            if expires_at > time.time() or (host == socket.gethostname() and _running(pid)):
                versions.update(named)
            else:
                path.unlink(missing_ok=True)
        return versions


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it runs
    return True
