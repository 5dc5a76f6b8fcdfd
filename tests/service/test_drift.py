"""Retrain on drift: a champion's live coverage over its last settled forecasts out of the band starts one retrain."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentcast.errors import ConfigError
from service.http.app import create_app
from service.jobs.drift import DriftRule, DriftWatch
from service.jobs.scheduler import DRIFT_JOB, build_scheduler, run_drift
from service.live.pairs import PairedLosses
from service.live.sums import HorizonSums, LiveSums
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from tests.service.test_routes_live import WARM, Offline, feed, open_session
from training.jobs import JobReport, JobStore
from training.registry import Registry
from training.significance import diebold_mariano


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
        self.reasons: list[str | None] = []

    def run(self, reason: str | None = None) -> JobReport:
        self.runs += 1
        self.reasons.append(reason)
        return JobReport(job_id="20260101T000000-abcdef", status="succeeded", seconds=1.0, reason=reason)


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


def paired(differences: list[float], model: str = "latent-1", horizon: int = 1) -> PairedLosses:
    """The kept differences of ``model``'s pinball loss less its shadow's (ar-1)."""
    kept = PairedLosses()
    kept.add(model, "ar-1", {horizon: differences}, keep=1000)
    return kept


# the champion's loss higher by 1e-3 on average, with noise: its shadow beats it live at any usual level
WORSE = [1e-3 + 5e-4 * (-1) ** i + 1e-4 * (i % 3) for i in range(60)]
INSIDE = sums(600, 480)  # coverage 0.8, inside the band: only the shadow can give a reason


def test_a_shadow_that_beats_the_champion_live_starts_a_retrain_within_the_coverage_cooldown() -> None:
    clock = Clock()
    watch = DriftWatch(DriftRule(0.7, 0.9, window=100, cooldown_seconds=100, level=0.05), clock)
    assert watch.check(INSIDE, CHAMPIONS, paired([-x for x in WORSE])) is None  # the champion is the better
    assert watch.check(INSIDE, CHAMPIONS, paired(WORSE, horizon=2)) is None  # 1-step forecasts are read
    assert watch.check(INSIDE, CHAMPIONS, paired(WORSE, model="latent-0")) is None  # not the champion
    assert watch.check(INSIDE, CHAMPIONS, paired(WORSE[:2])) is None  # too few to test
    reason = watch.check(INSIDE, CHAMPIONS, paired(WORSE))
    assert reason is not None
    assert reason.startswith("latent champion latent-1: its shadow ar-1 had a lower pinball loss on the 1-step ")
    assert "over 60 forecasts, p " in reason and reason.endswith("< 0.05)")
    clock.now = 99.0
    assert watch.check(sums(700, 700), CHAMPIONS, paired(WORSE)) is None  # one cooldown for both reasons
    clock.now = 100.0
    assert watch.check(INSIDE, CHAMPIONS, paired(WORSE)) is not None


def test_the_shadows_level_is_one_sided_and_the_retrain_level(make_settings: MakeSettings) -> None:
    assert DriftRule.of(make_settings(retrain_level=0.2)).level == 0.2
    # a mean difference of 1e-4 against noise of 1e-3: p(shadow lower) near 0.2, one-sided
    noisy = [1e-4 + 1e-3 * (-1) ** i * (1 + (i % 5) / 10) for i in range(200)]
    test = diebold_mariano(np.array(noisy), np.zeros(len(noisy)), 1)
    assert 0.01 < test.p_higher < 0.5 and test.p_value == pytest.approx(2 * test.p_higher)
    above = DriftWatch(DriftRule(0.7, 0.9, window=100, level=test.p_higher * 0.99), Clock())
    below = DriftWatch(DriftRule(0.7, 0.9, window=100, level=test.p_higher * 1.01), Clock())
    assert above.check(INSIDE, CHAMPIONS, paired(noisy)) is None
    assert below.check(INSIDE, CHAMPIONS, paired(noisy)) is not None


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
    with caplog.at_level(logging.WARNING, logger="service.jobs.scheduler"):
        run_drift(settings, watch, launcher)  # type: ignore[arg-type]
        run_drift(settings, watch, launcher)  # type: ignore[arg-type]
    assert launcher.runs == 1
    [message] = caplog.messages
    version = registry.champion("latent")
    assert message.startswith(f"retrain on drift: latent champion {version}: live coverage ")
    assert launcher.reasons == [message.removeprefix("retrain on drift: ")]  # the job keeps why it started


@pytest.fixture
def overconfident(tmp_path: Path) -> Registry:
    """A latent champion whose quantiles all sit far above any return, and a sane ar champion (tiny models)."""
    registry = Registry(tmp_path / "artifacts")
    wrong = tiny_checkpoint("latent", seed=1)
    wrong["state_dict"]["head.bias"] = wrong["state_dict"]["head.bias"] + 20.0
    registry.promote(registry.register(wrong).version)
    registry.promote(registry.register(tiny_checkpoint("ar", seed=1)).version)
    return registry


def test_a_shadow_beating_its_champion_live_starts_exactly_one_retrain_through_the_scheduler(
    make_settings: MakeSettings,
    closes: list[float],
    overconfident: Registry,
    redis_server: str,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # fewer settled forecasts than the coverage's window (500): only the shadow can give a reason
    settings = make_settings(
        artifacts=overconfident.root,
        store="redis",
        redis_url=redis_server,
        redis_prefix=redis_prefix,
        shadow=1.0,
        drift_check_seconds=60.0,
    )
    with TestClient(create_app(settings)) as client:
        offline = Offline(closes)
        feed(client, open_session(client, closes, offline), closes, offline, WARM, WARM + 40)
    launcher = Launcher()
    scheduler = build_scheduler(settings, launcher)  # type: ignore[arg-type]
    [watch] = [arg for arg in scheduler.get_job(DRIFT_JOB).args if hasattr(arg, "check")]
    with caplog.at_level(logging.WARNING, logger="service.jobs.scheduler"):
        for _ in range(3):  # within the cooldown (a day): one retrain, whatever the checks find
            run_drift(settings, watch, launcher)  # type: ignore[arg-type]
    assert launcher.runs == 1
    [message] = caplog.messages
    champion, shadow = overconfident.champion("latent"), overconfident.champion("ar")
    assert message.startswith(
        f"retrain on drift: latent champion {champion}: its shadow {shadow} had a lower pinball loss on the 1-step "
    )
    assert launcher.reasons == [message.removeprefix("retrain on drift: ")]


def test_no_drift_job_unless_asked(make_settings: MakeSettings) -> None:
    assert build_scheduler(make_settings()).get_job(DRIFT_JOB) is None


def test_the_live_route_names_the_last_retrain_started_on_drift_and_why(
    make_settings: MakeSettings, registry: Registry, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(registry.root, artifacts)
    with TestClient(create_app(make_settings(artifacts=artifacts))) as client:
        assert client.get("/v1/models/live").json()["drift_retrain"] is None
        jobs = JobStore(artifacts / "jobs")
        for job_id, reason in (
            ("20261201T000000-aaaaaa", "latent champion latent-0: live coverage 0.500"),
            ("20261202T000000-bbbbbb", "latent champion latent-1: its shadow ar-1 had a lower pinball loss"),
            ("20261203T000000-cccccc", None),  # the cron's, newer
        ):
            jobs.save(
                JobReport(job_id=job_id, status="succeeded", created=f"{job_id[:8]}T00:00:00+00:00", reason=reason)
            )
        shown = client.get("/v1/models/live").json()["drift_retrain"]
    assert shown == {
        "job_id": "20261202T000000-bbbbbb",
        "created": "20261202T00:00:00+00:00",
        "status": "succeeded",
        "reason": "latent champion latent-1: its shadow ar-1 had a lower pinball loss",
    }
