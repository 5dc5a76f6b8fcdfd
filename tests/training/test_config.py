"""``TrainConfig``'s torch threads: the cores free when training starts, unless given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latentcast.errors import ConfigError
from training import config as train_config
from training.config import TrainConfig, busy_cores, cores_allowed, free_cores


def stat_line(user: int, idle: int) -> str:
    return f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_busy_cores_are_the_share_of_the_machine_not_idle_over_the_sample(tmp_path: Path, monkeypatch):
    stat = tmp_path / "stat"
    samples = iter([stat_line(1000, 1000), stat_line(1150, 1050)])  # 150 of 200 jiffies busy

    def sleep(seconds: float) -> None:
        assert seconds == 0.01
        stat.write_text(next(samples))

    monkeypatch.setattr(train_config, "PROC_STAT", stat)
    stat.write_text(next(samples))
    monkeypatch.setattr(train_config.time, "sleep", sleep)
    assert busy_cores(0.01) == pytest.approx(0.75 * (os.cpu_count() or 1))


def test_without_proc_stat_the_load_average_counts_the_busy_cores(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(train_config, "PROC_STAT", tmp_path / "none")
    assert busy_cores(0.0) == pytest.approx(os.getloadavg()[0], abs=1.0)


def test_free_cores_leave_the_busy_ones_and_share_the_rest_never_below_one(monkeypatch):
    assert 1 <= free_cores(seconds=0.05) <= cores_allowed() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(train_config, "cores_allowed", lambda: 8)
    for busy, processes, threads in [(0.2, 1, 8), (2.6, 1, 5), (2.6, 2, 2), (7.9, 1, 1), (30.0, 1, 1)]:
        monkeypatch.setattr(train_config, "busy_cores", lambda seconds, busy=busy: busy)
        assert free_cores(processes) == threads, (busy, processes)


def test_threads_are_free_cores_by_default_or_a_positive_count():
    assert TrainConfig().threads is None and TrainConfig(threads=3).threads == 3
    with pytest.raises(ConfigError, match="threads must be a positive integer, got 0"):
        TrainConfig(threads=0)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
