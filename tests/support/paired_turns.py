"""Two servers' CPU compared in paired turns: each thread's CPU to the nanosecond, and the ratios' summary.

``bench/live_scores.py`` feeds two servers the same work in short alternating
turns and reads each one's CPU around its own turn: a pair of turns, one of
each, meets the same load on a shared machine. ``/proc/<pid>/stat`` counts CPU
in clock ticks (10 ms), as coarse as a whole turn's difference between the
two; the scheduler's own count, ``/proc/<pid>/task/<tid>/schedstat``, is in
nanoseconds. ``PairedRatios`` summarises the pairs by the median of their
ratios, which one turn disturbed by another process moves little, with the
quartiles and a distribution-free 95% interval of that median.

``Placement`` keeps the servers off the client's core: where each process of a
pair runs moves its CPU per request by a few percent, the same way in every
turn of that pair, which alternating turns cannot cancel.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.workers import PROC

MIN_PAIRS = 6  # the fewest whose extreme ratios bound the median with 95% confidence (1 - 2 / 2**6)


def thread_cpu(pid: int) -> dict[int, int]:
    """CPU nanoseconds of each live thread of process ``pid`` so far (the first field of its schedstat)."""
    out = {}
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread ended while the folder was read
            continue
    return out


@dataclass(frozen=True)
class Placement:
    """The cores the servers run on and those the client runs on: the last core this process may use for the
    servers (one at a time is fed), the others for the client; None for both with fewer than two cores."""

    servers: frozenset[int] | None
    client: frozenset[int] | None

    @classmethod
    def of(cls, cores: set[int]) -> Placement:
        if len(cores) < 2:
            return cls(None, None)
        last = max(cores)
        return cls(frozenset({last}), frozenset(cores - {last}))

    def pin_server(self, pid: int) -> None:
        """Every thread of process ``pid`` on the servers' cores (threads it starts later inherit them)."""
        if self.servers is not None:
            for tid in thread_cpu(pid):
                os.sched_setaffinity(tid, self.servers)

    def pin_client(self) -> None:
        """This process (the client) on the client's cores."""
        if self.client is not None:
            os.sched_setaffinity(0, self.client)


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the threads used between two ``thread_cpu`` readings: a thread started meanwhile counts
    from zero, one that ended meanwhile is not counted (its last reading is gone)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def median_interval(count: int, level: float = 0.95) -> tuple[int, int]:
    """The 0-based ranks (low, high) of the sorted values that bound the median with at least ``level``
    confidence whatever the distribution: the binomial order-statistic interval; (0, count - 1) when
    ``count`` is too small for ``level``."""
    tail = (1 - level) / 2
    # the 1-based ranks [j, count + 1 - j] hold the median with probability 1 - 2 P(Binomial(count, 1/2) < j):
    # the largest j with P(B < j) <= tail
    j, below = 0, 0.0
    while j < count // 2:
        below += math.comb(count, j) / 2**count  # now P(B < j + 1)
        if below > tail:
            break
        j += 1
    low = max(j - 1, 0)
    return low, count - 1 - low


@dataclass(frozen=True)
class PairedRatios:
    """Ratios ``on / off`` of CPU seconds of paired turns: their median, quartiles and the median's 95%
    interval; and the ratio of the totals, over all turns and over each half of them."""

    median: float
    quartiles: tuple[float, float]
    interval: tuple[float, float]
    total: float
    halves: tuple[float, float]
    pairs: int

    @classmethod
    def of(cls, on: Sequence[float], off: Sequence[float]) -> PairedRatios:
        if len(on) != len(off) or len(on) < 2:
            raise ValueError(f"paired turns need two or more of each side, got {len(on)} and {len(off)}")
        if min(off) <= 0:
            raise ValueError("a turn of the second server used no CPU: longer turns")
        ratios = sorted(a / b for a, b in zip(on, off, strict=True))
        low, high = median_interval(len(ratios))
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        half = len(on) // 2
        halves = (sum(on[:half]) / sum(off[:half]), sum(on[half:]) / sum(off[half:]))
        total = sum(on) / sum(off)
        return cls(statistics.median(ratios), (q1, q3), (ratios[low], ratios[high]), total, halves, len(on))

    def verdict(self, goal: float) -> str:
        """Whether the median ratio is shown at most ``goal``: met when its whole interval is, not met when
        none of it is, otherwise not shown either way; nor with fewer pairs than a 95% interval needs."""
        if self.pairs < MIN_PAIRS:
            return f"not shown: {self.pairs} pairs, fewer than the {MIN_PAIRS} a 95% interval of the median needs"
        if self.interval[1] <= goal:
            return "met"
        if self.interval[0] > goal:
            return "not met"
        return "not shown: the median's interval holds the goal"
