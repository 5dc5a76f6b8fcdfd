"""How ``tests/support/paired_turns.py`` reads a process's CPU and sums up paired turns."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from scipy import stats

from tests.support.paired_turns import PairedRatios, Placement, cpu_seconds, median_interval, thread_cpu


@pytest.mark.parametrize("count", [6, 7, 20, 80, 101])
def test_the_medians_interval_is_the_binomial_order_statistics_one(count: int) -> None:
    low, high = median_interval(count)
    j = low + 1  # the 1-based rank of the lower bound
    assert high == count - 1 - low
    assert 2 * stats.binom.cdf(j - 1, count, 0.5) <= 0.05  # covers the median with at least 95%
    assert 2 * stats.binom.cdf(j, count, 0.5) > 0.05  # and is the narrowest such


def test_too_few_pairs_for_the_level_take_the_whole_range() -> None:
    assert median_interval(5) == (0, 4)
    assert median_interval(2) == (0, 1)


def test_paired_ratios_take_each_pairs_ratio_and_the_totals() -> None:
    on = [1.1, 2.4, 3.3, 1.0, 5.5, 6.0]
    off = [1.0, 2.0, 3.0, 1.0, 5.0, 5.0]  # ratios 1.1, 1.2, 1.1, 1.0, 1.1, 1.2
    ratios = PairedRatios.of(on, off)
    assert ratios.median == pytest.approx(1.1)
    assert ratios.interval == pytest.approx((1.0, 1.2))  # 6 pairs: the median's 95% interval is the range
    assert ratios.total == pytest.approx(sum(on) / sum(off))
    assert ratios.halves == pytest.approx((6.8 / 6.0, 12.5 / 11.0))
    assert ratios.pairs == 6


def test_the_verdict_is_met_only_when_the_whole_interval_is_within_the_goal() -> None:
    def ratios(low: float, high: float) -> PairedRatios:
        return PairedRatios(1.0, (low, high), (low, high), 1.0, (1.0, 1.0), 20)

    assert ratios(1.02, 1.09).verdict(1.10) == "met"
    assert ratios(1.02, 1.11).verdict(1.10) == "not shown: the median's interval holds the goal"
    assert ratios(1.11, 1.20).verdict(1.10) == "not met"
    few = PairedRatios(1.0, (1.0, 1.0), (1.0, 1.0), 1.0, (1.0, 1.0), 5)
    assert few.verdict(1.10) == "not shown: 5 pairs, fewer than the 6 a 95% interval of the median needs"


def test_unpaired_or_empty_turns_are_refused() -> None:
    with pytest.raises(ValueError, match="paired turns need two or more of each side, got 3 and 2"):
        PairedRatios.of([1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="a turn of the second server used no CPU"):
        PairedRatios.of([1.0, 1.0], [1.0, 0.0])


def test_thread_cpu_counts_the_work_of_every_thread() -> None:
    def spin() -> None:
        total = 0
        for i in range(300_000):
            total += i

    before = thread_cpu(os.getpid())
    worker = threading.Thread(target=spin)
    worker.start()
    tid = worker.native_id
    worker.join()  # ended: its time is gone from /proc, as the summary says
    spin()
    after = thread_cpu(os.getpid())
    assert tid not in after
    assert os.getpid() in after
    assert after[os.getpid()] > before[os.getpid()]
    assert cpu_seconds(before, after) > 0
    assert cpu_seconds(before, before) == 0


def test_the_servers_run_on_one_core_and_the_client_on_the_others() -> None:
    assert Placement.of({0}) == Placement(None, None)  # one core: nothing is pinned
    placement = Placement.of({0, 1, 3})
    assert placement == Placement(frozenset({3}), frozenset({0, 1}))
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("pinning needs two cores")
    here = Placement.of(cores)
    assert here.servers is not None
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            here.pin_server(child.pid)
            assert os.sched_getaffinity(child.pid) == set(here.servers)
        finally:
            child.kill()
