"""Retrain jobs started by the service: child processes, reports, routes, the schedule."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from latentcast.errors import ConflictError
from service.config import Settings
from service.http.app import create_app
from service.jobs.retraining import LAUNCH_LOCK_FILE, RetrainLauncher, retrain_command, retrain_env
from service.jobs.scheduler import (
    HEARTBEAT_FILE,
    STALE_SECONDS,
    beat,
    build_scheduler,
    describe,
    heartbeat_is_fresh,
    run_job,
)
from tests.factories import tiny_checkpoint
from training.jobs import UNFINISHED, JobReport
from training.lock import JobLock
from training.registry import Registry

ADMIN = "admin-key-0123456789"
CLIENT = "client-key-0123456789"


def retrain_settings(tmp_path, **overrides: Any) -> Settings:
    """A registry of tiny champions (challengers copy them: fast) and a quick bundled retrain."""
    registry = Registry(tmp_path)
    if not registry.versions():
        for mode in ("ar", "latent"):
            champion = tiny_checkpoint(mode)
            champion["data_span"] = {**champion["data_span"], "last": "2012-06-29"}  # the bundled prices are newer
            registry.promote(registry.register(champion).version)
    values: dict[str, Any] = {
        "artifacts": tmp_path,
        "registry_poll_seconds": 0,
        "retrain_source": "bundled",
        "retrain_tickers": "IBM",
        "retrain_epochs": 1,
    }
    values.update(overrides)
    return Settings(**values)


def test_the_child_runs_with_this_services_retrain_settings(tmp_path):
    settings = retrain_settings(tmp_path, retrain_tickers="ibm,msft", retrain_level=0.02, retrain_stale_days=21)
    env = retrain_env(settings)
    assert env["LATENTCAST_ARTIFACTS"] == str(tmp_path)
    assert env["LATENTCAST_RETRAIN_TICKERS"] == "IBM,MSFT"
    assert env["LATENTCAST_RETRAIN_SOURCE"] == "bundled"
    assert env["LATENTCAST_RETRAIN_LEVEL"] == "0.02" and env["LATENTCAST_RETRAIN_STALE_DAYS"] == "21"
    assert env["LATENTCAST_RETRAIN_HOLDOUT_DAYS"] == "126" and env["LATENTCAST_RETRAIN_REFIT"] == "False"
    assert "LATENTCAST_RETRAIN_PATH" not in env
    assert retrain_command("J")[1:] == ["-m", "service.cli", "retrain", "--job-id", "J", "--no-progress"]


@pytest.mark.slow
def test_a_job_runs_in_its_own_process_and_reports(tmp_path):
    launcher = RetrainLauncher(retrain_settings(tmp_path))
    job = launcher.run("live coverage out of its band")
    assert job.status == "succeeded", (job.error, (tmp_path / "jobs" / f"{job.job_id}.log").read_text())
    assert job.reason == "live coverage out of its band"  # kept through the child's own writes of the report
    assert launcher.last_on_drift(5) == job
    assert job.data["source"] == "bundled" and job.data["tickers"] == ["IBM"]
    assert [m["mode"] for m in job.modes] == ["ar", "latent"]
    assert job.pid is not None and job.seconds is not None
    assert (tmp_path / "jobs" / f"{job.job_id}.log").exists()


def test_a_second_job_is_refused_while_one_runs(tmp_path):
    launcher = RetrainLauncher(retrain_settings(tmp_path))
    with JobLock(tmp_path / "retrain.lock", "running-job"), pytest.raises(ConflictError) as err:
        launcher.start()
    assert str(err.value).startswith("another retrain is running: job running-job (pid ")
    assert launcher.jobs.latest() == []


def test_a_job_past_its_timeout_is_killed_and_failed(tmp_path):
    launcher = RetrainLauncher(retrain_settings(tmp_path, retrain_timeout_seconds=0.5, retrain_epochs=500))
    started = launcher.start()
    started.watcher.join(timeout=30)
    failed = launcher.jobs.get(started.job.job_id)
    assert failed.status == "failed"
    assert failed.error == "killed after the 0.5 s retrain timeout"
    assert Registry(tmp_path).champions() == {
        m: v.version for m, v in zip(["ar", "latent"], Registry(tmp_path).versions(), strict=True)
    }


@pytest.fixture
def admin_client(tmp_path):
    settings = retrain_settings(tmp_path, api_keys=CLIENT, admin_key=ADMIN)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.slow
def test_retrain_route_starts_a_job_that_is_followed_to_its_end(admin_client):
    started = admin_client.post("/v1/retrain", headers={"X-API-Key": ADMIN})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.json()["status"] == "queued"
    assert started.headers["location"] == f"/v1/jobs/{job_id}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        report = admin_client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": ADMIN}).json()
        if report["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert report["status"] == "succeeded", report
    assert {m["mode"] for m in report["modes"]} == {"ar", "latent"}
    listed = admin_client.get("/v1/jobs", headers={"X-API-Key": ADMIN}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]


@pytest.mark.slow
def test_a_second_retrain_right_after_the_first_is_409(admin_client, tmp_path):
    # the child takes the job's lock seconds after it starts: the launch must not leave a window
    first = admin_client.post("/v1/retrain", headers={"X-API-Key": ADMIN})
    second = admin_client.post("/v1/retrain", headers={"X-API-Key": ADMIN})
    assert (first.status_code, second.status_code) == (202, 409), second.text
    job_id = first.json()["job_id"]
    assert second.json()["error"]["message"].startswith(f"another retrain is running: job {job_id} (pid ")
    listed = admin_client.get("/v1/jobs", headers={"X-API-Key": ADMIN}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]  # the refused one left no job behind
    deadline = time.monotonic() + 300  # a loaded machine runs the child's tiny training slowly
    job_url = f"/v1/jobs/{job_id}"
    while (status := admin_client.get(job_url, headers={"X-API-Key": ADMIN}).json()["status"]) in UNFINISHED:
        assert time.monotonic() < deadline, f"the retrain job is still {status} after 300 s"
        time.sleep(0.2)
    assert status == "succeeded", status
    # the watcher releases the launch lock once it has concluded the job
    deadline = time.monotonic() + 10
    while True:
        try:
            JobLock(tmp_path / LAUNCH_LOCK_FILE, "after").acquire().release()
            break
        except ConflictError:
            assert time.monotonic() < deadline, "the launch lock outlived its job"
            time.sleep(0.1)


def test_retrain_routes_need_the_admin_key(admin_client):
    for method, path in (("post", "/v1/retrain"), ("get", "/v1/jobs"), ("get", "/v1/jobs/20260101T000000-abcdef")):
        missing = admin_client.request(method, path)
        assert missing.status_code == 401, path
        client = admin_client.request(method, path, headers={"X-API-Key": CLIENT})
        assert client.status_code == 403, path
        assert client.json()["error"]["code"] == "forbidden"


def test_unknown_job_is_404_and_a_running_retrain_409(admin_client, tmp_path):
    unknown = admin_client.get("/v1/jobs/20260101T000000-abcdef", headers={"X-API-Key": ADMIN})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {"code": "not_found", "message": "no job '20260101T000000-abcdef'"}
    with JobLock(tmp_path / "retrain.lock", "busy"):
        busy = admin_client.post("/v1/retrain", headers={"X-API-Key": ADMIN})
    assert busy.status_code == 409
    assert busy.json()["error"]["message"].startswith("another retrain is running: job busy (pid ")


def test_schedule_runs_the_retrain_on_the_cron_without_overlap(tmp_path):
    settings = retrain_settings(tmp_path, retrain_cron="*/15 * * * 1-5", retrain_timezone="America/New_York")
    scheduler = build_scheduler(settings)
    job = scheduler.get_job("retrain")
    assert job.max_instances == 1 and job.coalesce
    assert str(job.trigger) == "cron[month='*', day='*', day_of_week='1-5', hour='*', minute='*/15']"
    assert str(job.trigger.timezone) == "America/New_York"


def test_each_run_logs_its_outcome(tmp_path, caplog):
    class Launcher:
        def run(self, reason: str | None = None) -> JobReport:
            job = JobReport(job_id="20260101T000000-abcdef", status="succeeded", seconds=12.5)
            job.data = {"source": "cache"}
            job.modes = [{"mode": "latent", "challenger": "latent-x", "promoted": False, "reason": "not better"}]
            return job

    with caplog.at_level(logging.INFO, logger="service.jobs.scheduler"):
        run_job(Launcher())  # type: ignore[arg-type]
    assert caplog.messages == [
        "retrain job 20260101T000000-abcdef succeeded in 12.5s on cache data: latent latent-x not promoted (not better)"
    ]


def test_heartbeat_tells_whether_the_scheduler_is_alive(tmp_path):
    settings = retrain_settings(tmp_path)
    fresh, why = heartbeat_is_fresh(settings)
    assert not fresh and why.startswith(f"no readable scheduler heartbeat at {tmp_path / HEARTBEAT_FILE}")
    beat(settings, build_scheduler(settings))
    record = json.loads((tmp_path / HEARTBEAT_FILE).read_text())
    assert record["cron"] == settings.retrain_cron and record["next_retrain"]
    assert heartbeat_is_fresh(settings)[0]
    stale, why = heartbeat_is_fresh(settings, now=record["beat"] + STALE_SECONDS + 1)
    assert not stale and why.endswith(f"stale after {STALE_SECONDS}s")


def test_bad_cron_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="retrain_cron 'every day' is not a 5-field cron expression"):
        Settings(retrain_cron="every day")


def test_a_child_that_dies_before_its_report_is_marked_failed(tmp_path, monkeypatch):
    monkeypatch.setattr("service.jobs.retraining.retrain_command", lambda job_id: [sys.executable, "-c", "exit(3)"])
    job = RetrainLauncher(retrain_settings(tmp_path)).run("a reason")
    assert job.status == "failed" and job.reason == "a reason"
    assert job.error == "the retrain process exited with code 3 before finishing its report"


def test_the_schedulers_line_on_a_job_names_a_skipped_mode_without_a_challenger():
    job = JobReport(job_id="20261129T000000-abcdef", status="skipped", seconds=1.5, data={"source": "bundled"})
    job.modes = [
        {"mode": "latent", "challenger": "latent-1", "promoted": True, "reason": "no champion yet"},
        {"mode": "ar", "skipped": True, "promoted": False, "reason": "nothing new"},
    ]
    assert describe(job) == (
        "retrain job 20261129T000000-abcdef skipped in 1.5s on bundled data: "
        "latent latent-1 promoted (no champion yet); ar not retrained (nothing new)"
    )


def test_the_schedulers_line_counts_a_job_from_queued_to_done_not_only_its_own_work():
    job = JobReport(job_id="20261129T000000-abcdef", created="2026-11-29T00:00:00+00:00", data={"source": "bundled"})
    job.finish("skipped", 0.04, "ar: nothing new")
    job.finished = "2026-11-29T00:00:04+00:00"  # the process's start and its imports took the rest
    job.modes = [{"mode": "ar", "skipped": True, "promoted": False, "reason": "nothing new"}]
    assert describe(job) == (
        "retrain job 20261129T000000-abcdef skipped in 4s on bundled data: ar not retrained (nothing new)"
    )
