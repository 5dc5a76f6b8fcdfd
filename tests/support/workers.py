"""The processes of a ``latentcast serve --workers N`` and the sockets each holds, read from ``/proc``.

A test of several workers (and ``bench.market``, which meters each) needs to know
when every worker serves and which worker holds which connection: uvicorn says
neither. Linux only (``/proc``), as the process tests are.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from tests.support.processes import POLL_SECONDS, ServiceProcess

PROC = Path("/proc")
_PPID = 1  # in ``stat_fields``
_ESTABLISHED, _LISTENING = "01", "0A"  # /proc/net/tcp's states of a connection and of a listening socket
_SPAWNED_WORKER = "multiprocessing.spawn"  # in the command line of a process multiprocessing spawned
PROBES_PER_WORKER = 4  # connections that ask /readyz while waiting for every worker to serve


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command: state is field 0, ppid 1, utime 11, stime 12."""
    # the command may hold spaces and parentheses: the fields start after its last ")"
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def spawned_workers(pid: int) -> list[int]:
    """The worker processes of a ``latentcast serve --workers N`` whose supervisor is ``pid``, by pid.

    uvicorn's supervisor spawns its workers with multiprocessing; any other child it has
    (multiprocessing's resource tracker) is left out. Empty for a server without workers.
    """
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(stat_fields(int(entry.name))[_PPID]) != pid:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if _SPAWNED_WORKER in command and "resource_tracker" not in command:
            found.append(int(entry.name))
    return sorted(found)


def serving_workers(process: ServiceProcess, count: int) -> list[int]:
    """The pids of the ``count`` worker processes of ``process``, once each has answered a request.

    ``/readyz`` answers as soon as one worker does; another may still be importing torch and
    loading its models, and takes no connection until it is done: a run begun then measures
    fewer workers than it names. Each probe is a connection of its own, held open while the
    connections each worker holds are counted. A probe reset with a worker that has just died
    (the connections queued on its own socket go with it) is tried again.
    """
    if count == 1:
        return [process.pid]  # one worker: uvicorn serves in the process itself
    deadline = time.monotonic() + process.start_seconds
    while time.monotonic() < deadline:
        pids = spawned_workers(process.pid)
        with contextlib.ExitStack() as probes:
            try:
                for _ in range(PROBES_PER_WORKER * count):
                    probes.enter_context(httpx.Client(base_url=process.url)).get("/readyz").raise_for_status()
            except httpx.TransportError:
                # a connection queued on the socket of a worker that has just died is reset with it
                time.sleep(POLL_SECONDS)
                continue
            held = connections_held(process.port, pids)
        if len(pids) == count and all(held.values()):
            return pids
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"the {count} workers on port {process.port} did not all serve in {process.start_seconds} s")


def connection_owners(port: int, pids: Iterable[int]) -> dict[int, int]:
    """Which of ``pids`` holds each established connection to local ``port``: pid by the client's port."""
    return _owners(port, _ESTABLISHED, pids)


def listening_owners(port: int, pids: Iterable[int]) -> list[int]:
    """The pids among ``pids`` of the sockets listening on local ``port``, one for each such socket."""
    return list(_owners(port, _LISTENING, pids, by_inode=True).values())


def _owners(port: int, state: str, pids: Iterable[int], by_inode: bool = False) -> dict[int, int]:
    """The pid among ``pids`` holding each socket in ``state`` on local ``port``, by its peer's port or inode."""
    keys = {}
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        lines = path.read_text().splitlines()[1:] if path.exists() else []
        for line in lines:
            fields = line.split()  # sl local_address rem_address st ... inode (the 10th)
            if fields[3] == state and _port(fields[1]) == port:
                keys[f"socket:[{fields[9]}]"] = int(fields[9]) if by_inode else _port(fields[2])
    owners = {}
    for pid in pids:
        with os.scandir(PROC / str(pid) / "fd") as fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue  # closed meanwhile
                if target in keys:
                    owners[keys[target]] = pid
    return owners


def connections_held(port: int, pids: Iterable[int]) -> dict[int, int]:
    """How many established connections to local ``port`` each of ``pids`` holds open."""
    pids = list(pids)
    owners = list(connection_owners(port, pids).values())
    return {pid: owners.count(pid) for pid in pids}


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)  # /proc/net/tcp's "0100007F:1F90": address and port in hex
