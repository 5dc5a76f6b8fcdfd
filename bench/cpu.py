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
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.workers import PROC, stat_fields

TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times
# /proc/<pid>/stat after the command's closing parenthesis (``stat_fields``): utime is field 11, stime 12
_UTIME, _STIME = 11, 12
# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal; all but idle and iowait are busy
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def process_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far, all its threads together."""
    fields = stat_fields(pid)
    return (int(fields[_UTIME]) + int(fields[_STIME])) / TICKS


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores together."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in _BUSY_FIELDS) / TICKS


def reaped_seconds() -> float:
    """User and system CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
