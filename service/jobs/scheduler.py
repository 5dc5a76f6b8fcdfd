"""``latentcast schedule``: the retrain job on a cron expression, one run at a time.

Each run is the same child process as ``POST /v1/retrain`` starts
(``service.jobs.retraining``), so a crash in training cannot take the scheduler
down. Runs never overlap: APScheduler keeps one instance of the job, and the
job's own lock refuses a second retrain from anywhere else (the API, another
scheduler). A heartbeat file lets a container health check see that the
scheduler is alive (``latentcast schedule --check``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from data.files import write_whole
from service.config import Settings
from service.jobs.drift import DriftRule, DriftWatch, check_drift
from service.jobs.retraining import RetrainLauncher
from training.jobs import JobReport

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "scheduler.json"
HEARTBEAT_SECONDS = 30
# three missed beats: a busy machine may delay one, not three
STALE_SECONDS = 3 * HEARTBEAT_SECONDS
RETRAIN_JOB = "retrain"
DRIFT_JOB = "drift"


def describe(job: JobReport) -> str:
    """One log line on a finished job: how long from queued to done (the process's start included), and per mode
    what its challenger did, or why none was trained."""
    outcomes = "; ".join(_outcome(m) for m in job.modes)
    source = job.data.get("source", "?")
    return f"retrain job {job.job_id} {job.status} in {_wall_seconds(job):g}s on {source} data" + (
        f": {outcomes}" if outcomes else f": {job.error}"
    )


def _outcome(mode: dict[str, Any]) -> str:
    if "challenger" not in mode:
        return f"{mode['mode']} not retrained ({mode.get('reason')})"
    verb = "promoted" if mode.get("promoted") else "not promoted"
    return f"{mode['mode']} {mode['challenger']} {verb} ({mode.get('reason')})"


def _wall_seconds(job: JobReport) -> float:
    """Seconds from the job's creation to its end; its own count (the work after the process started) when the
    times are missing."""
    if job.finished is not None:
        wall = (datetime.fromisoformat(job.finished) - datetime.fromisoformat(job.created)).total_seconds()
        return max(wall, job.seconds or 0.0)
    return job.seconds or 0.0


def run_job(launcher: RetrainLauncher, reason: str | None = None) -> None:
    """One scheduled run (``reason``: why, if not the cron); never raises, so that the schedule goes on."""
    try:
        job = launcher.run(reason)
    except Exception:
        log.exception("the scheduled retrain could not run")
        return
    level = logging.INFO if job.status in ("succeeded", "skipped") else logging.ERROR
    log.log(level, "%s", describe(job))


def run_drift(settings: Settings, watch: DriftWatch, launcher: RetrainLauncher) -> None:
    """One drift check (``service/jobs/drift.py``); a retrain when it finds a reason. Never raises."""
    try:
        reason = check_drift(settings, watch)
    except Exception:
        log.exception("the live scores could not be read")
        return
    if reason is not None:
        log.warning("retrain on drift: %s", reason)
        run_job(launcher, reason)  # the job's report keeps the reason, for the page (GET /v1/models/live)


def beat(settings: Settings, scheduler: BlockingScheduler) -> None:
    """Write the heartbeat: who, when, and the next retrain."""
    job = scheduler.get_job(RETRAIN_JOB)
    next_run = job.trigger.get_next_fire_time(None, datetime.now(UTC)) if job is not None else None
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "beat": time.time(),
        "cron": settings.retrain_cron,
        "next_retrain": next_run.isoformat() if next_run else None,
    }
    path = settings.artifacts / HEARTBEAT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, json.dumps(record))


def heartbeat_is_fresh(settings: Settings, now: float | None = None) -> tuple[bool, str]:
    """Whether a scheduler wrote its heartbeat in the last ``STALE_SECONDS``, and why not."""
    path = settings.artifacts / HEARTBEAT_FILE
    try:
        record = json.loads(path.read_text())
        age = (now or time.time()) - float(record["beat"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no readable scheduler heartbeat at {path} ({exc})"
    if age > STALE_SECONDS:
        return False, f"scheduler heartbeat is {age:.0f}s old (pid {record.get('pid')}); stale after {STALE_SECONDS}s"
    return True, f"scheduler pid {record.get('pid')} alive, next retrain {record.get('next_retrain')}"


def build_scheduler(settings: Settings, launcher: RetrainLauncher | None = None) -> BlockingScheduler:
    """The scheduler with the retrain on ``settings.retrain_cron`` and the heartbeat."""
    launcher = launcher or RetrainLauncher(settings)
    scheduler = BlockingScheduler(timezone=settings.retrain_timezone)
    trigger = CronTrigger.from_crontab(settings.retrain_cron, timezone=settings.retrain_timezone)
    scheduler.add_job(
        run_job,
        trigger,
        args=[launcher],
        id=RETRAIN_JOB,
        max_instances=1,  # a run still going when the next is due is not doubled
        coalesce=True,  # runs missed while one went on collapse into one
        misfire_grace_time=None,
    )
    if settings.drift_check_seconds > 0:
        watch = DriftWatch(DriftRule.of(settings))
        scheduler.add_job(
            run_drift,
            "interval",
            seconds=settings.drift_check_seconds,
            args=[settings, watch, launcher],
            id=DRIFT_JOB,
            max_instances=1,
            coalesce=True,
        )
    scheduler.add_job(
        beat, "interval", seconds=HEARTBEAT_SECONDS, args=[settings, scheduler], next_run_time=datetime.now(UTC)
    )
    return scheduler


def run_scheduler(settings: Settings) -> None:
    """Run until stopped (SIGINT or SIGTERM)."""
    scheduler = build_scheduler(settings)
    log.info(
        "retraining on cron %r (%s), artifacts in %s",
        settings.retrain_cron,
        settings.retrain_timezone,
        settings.artifacts,
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler stopped")
