"""Retrain on drift: a champion's live coverage over its last settled forecasts out of the band starts one retrain."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from data.errors import ConfigError
from service.app import create_app
from service.drift import DriftRule, DriftWatch
from service.live_sums import HorizonSums, LiveSums
from service.scheduler import DRIFT_JOB, build_scheduler, run_drift
from tests.service.conftest import MakeSettings
from tests.service.test_routes_live import WARM, Offline, feed, open_session
from training.jobs import JobReport
from training.registry import Registry


def sums(n: int, inside: int) -> LiveSums:
    live = LiveSums()
    live.rows[("latent-1", "latent", 1)] = HorizonSums((0.1, 0.5, 0.9), [n, 0.0, 0.0, 0.0, inside, 0.0, 0.0], 0.0)
    return live


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Launcher:
    def __init__(self) -> None:
        self.runs = 0

    def run(self) -> JobReport:
        self.runs += 1
        return JobReport(job_id="20260101T000000-abcdef", status="succeeded", seconds=1.0)


CHAMPIONS = {"latent": "latent-1"}


def test_coverage_is_read_over_the_last_window_not_since_the_start() -> None:
    watch = DriftWatch(DriftRule(0.7, 0.9, window=100, cooldown_seconds=10), Clock())
    assert watch.check(sums(50, 40), CHAMPIONS) is None  # fewer than the window settled
    assert watch.check(sums(200, 160), CHAMPIONS) is None  # 0.8 over the first 200
    # 0.8 since the start, but 50 of the last 100 inside
    reason = watch.check(sums(300, 210), CHAMPIONS)
    assert reason == (
        "latent champion latent-1: live coverage 0.500 over its last 100 settled 1-step forecasts, outside 0.7-0.9"
    )


def test_drift_starts_one_retrain_per_cooldown() -> None:
    clock = Clock()
    watch = DriftWatch(DriftRule(0.7, 0.9, window=10, cooldown_seconds=100), clock)
    assert watch.check(sums(20, 20), CHAMPIONS) is not None  # all inside: above the band
    clock.now = 99.0
    assert watch.check(sums(40, 40), CHAMPIONS) is None  # still out, within the cooldown
    clock.now = 100.0
    assert watch.check(sums(60, 60), CHAMPIONS) is not None
    assert watch.check(sums(80, 72), {"ar": "ar-1"}) is None  # another mode's champion has no scores


def test_a_band_that_holds_nothing_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match="LATENTCAST_DRIFT_LOW"):
        DriftRule.of(make_settings(drift_low=0.9, drift_high=0.8))


def test_the_scheduler_reads_the_shared_store_and_starts_exactly_one_retrain_within_its_cooldown(
    make_settings: MakeSettings,
    closes: list[float],
    registry: Registry,
    redis_server: str,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a band no coverage of 40 forecasts can fall in: whatever the tiny model does, it has drifted
    settings = make_settings(
        store="redis", redis_url=redis_server, redis_prefix=redis_prefix, drift_low=0.991, drift_high=0.999
    )
    settings = settings.model_copy(update={"drift_window": 10, "drift_check_seconds": 60.0})
    with TestClient(create_app(settings)) as client:
        offline = Offline(closes)
        feed(client, open_session(client, closes, offline), closes, offline, WARM, WARM + 40)
    launcher = Launcher()
    scheduler = build_scheduler(settings, launcher)  # type: ignore[arg-type]
    job = scheduler.get_job(DRIFT_JOB)
    assert job.max_instances == 1 and job.trigger.interval.total_seconds() == 60
    [watch] = [arg for arg in job.args if hasattr(arg, "check")]
    with caplog.at_level(logging.WARNING, logger="service.scheduler"):
        run_drift(settings, watch, launcher)  # type: ignore[arg-type]
        run_drift(settings, watch, launcher)  # type: ignore[arg-type]
    assert launcher.runs == 1
    [message] = caplog.messages
    version = registry.champion("latent")
    assert message.startswith(f"retrain on drift: latent champion {version}: live coverage ")


def test_no_drift_job_unless_asked(make_settings: MakeSettings) -> None:
    assert build_scheduler(make_settings()).get_job(DRIFT_JOB) is None
