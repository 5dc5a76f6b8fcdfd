"""Where a run's CPU went: each process's user and system time, and the machine's, from ``/proc``.

``bench/market.py`` prints these beside the workers ratio: on two cores shared
with wrk, redis-server and whatever else the machine runs, a ratio alone cannot
tell a worker that cost more per request from one that got less of the cores.
Linux only (``/proc``), as the benchmarks are.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times
# /proc/<pid>/stat after the command's closing parenthesis: state is field 0, ppid 1, utime 11, stime 12
_PPID, _UTIME, _STIME = 1, 11, 12
# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal; all but idle and iowait are busy
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
_ESTABLISHED, _LISTENING = "01", "0A"  # /proc/net/tcp's states of a connection and of a listening socket
_SPAWNED_WORKER = "multiprocessing.spawn"  # in the command line of a process multiprocessing spawned


def _stat_fields(pid: int) -> list[str]:
    # the command may hold spaces and parentheses: the fields start after its last ")"
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def process_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far, all its threads together."""
    fields = _stat_fields(pid)
    return (int(fields[_UTIME]) + int(fields[_STIME])) / TICKS


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores together."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in _BUSY_FIELDS) / TICKS


def reaped_seconds() -> float:
    """User and system CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
            if int(_stat_fields(int(entry.name))[_PPID]) != pid:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if _SPAWNED_WORKER in command and "resource_tracker" not in command:
            found.append(int(entry.name))
    return sorted(found)


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


@dataclass(frozen=True)
class CpuShares:
    """Cores each named process used during a run (CPU seconds per second), and the whole machine's."""

    processes: dict[str, float]
    machine: float

    @property
    def others(self) -> float:
        """Cores that processes not named here used meanwhile: the rest of the machine's load."""
        return max(self.machine - sum(self.processes.values()), 0.0)


class CpuMeter:
    """CPU of named processes, of children reaped meanwhile (as ``reaped_as``), and of the machine.

    ``start()`` then ``stop()`` around a run; ``stop`` returns the cores each used over it.
    """

    def __init__(self, processes: Mapping[str, int], reaped_as: str) -> None:
        self.processes = dict(processes)
        self.reaped_as = reaped_as
        self._before: dict[str, float] = {}
        self._started = 0.0

    def _now(self) -> dict[str, float]:
        now = {name: process_seconds(pid) for name, pid in self.processes.items()}
        return now | {self.reaped_as: reaped_seconds(), "": machine_seconds()}

    def start(self) -> None:
        self._before = self._now()
        self._started = time.monotonic()

    def stop(self) -> CpuShares:
        after = self._now()
        wall = time.monotonic() - self._started
        used = {name: (after[name] - self._before[name]) / wall for name in after}
        machine = used.pop("")
        return CpuShares(used, machine)


def load_text(loads: tuple[float, ...]) -> str:
    """A load average (``os.getloadavg()``) as printed beside the figures measured under it."""
    return ", ".join(f"{value:.1f}" for value in loads)
