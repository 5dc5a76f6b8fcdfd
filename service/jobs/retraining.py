"""Retrain jobs started by the service: each one is ``latentcast retrain`` in its own process.

Training never runs in the API's event loop or its request threads: a job is
a child process, reaped by a watcher thread that kills it past the configured
timeout. Its settings are this service's (passed as ``LATENTCAST_*``
variables), its report is the job file the child writes (``training.jobs``),
and its output goes to ``ARTIFACTS/jobs/<id>.log``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from training.jobs import UNFINISHED, JobReport, JobStore, new_job_id
from training.lock import JobLock
from training.retrain import LOCK_FILE

log = logging.getLogger(__name__)

# Held by the launcher from the start of a job to the end of its process: the job's own lock
# (``LOCK_FILE``) is taken by the child a few seconds after it starts, and without this one a
# second request in those seconds would start a second child, to be skipped.
LAUNCH_LOCK_FILE = "retrain.launch.lock"

# the settings a retrain reads, passed to the child so that it runs exactly as this service is configured
RETRAIN_SETTINGS = (
    "artifacts",
    "retrain_source",
    "retrain_path",
    "retrain_tickers",
    "retrain_level",
    "retrain_stale_days",
    "retrain_epochs",
    "retrain_holdout_days",
    "retrain_history_years",
    "retrain_refit",
)


def retrain_command(job_id: str) -> list[str]:
    """The command a job runs (the scheduler and the API run the same one)."""
    return [sys.executable, "-m", "service.cli", "retrain", "--job-id", job_id, "--no-progress"]


def retrain_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the retrain settings of ``settings`` on top."""
    env = dict(os.environ)
    for name in RETRAIN_SETTINGS:
        value = getattr(settings, name)
        key = f"LATENTCAST_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


@dataclass(frozen=True)
class StartedJob:
    """A job's queued report, its process, and the thread that watches it to the end."""

    job: JobReport
    process: subprocess.Popen[bytes]
    watcher: threading.Thread


class RetrainLauncher:
    """Starts retrain jobs as child processes and reads their reports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs = JobStore(settings.artifacts / "jobs")
        self._lock_path = settings.artifacts / LOCK_FILE
        self._launch_path = settings.artifacts / LAUNCH_LOCK_FILE

    def start(self, reason: str | None = None) -> StartedJob:
        """Queue a job (saying why, ``reason``, if not by hand or on the cron) and start its process;
        ``ConflictError`` if a retrain is running.

        A retrain is running if a launcher (of any worker on these artifacts) holds
        the launch lock, or if a retrain started elsewhere (the CLI) holds the job lock.
        """
        job = JobReport(job_id=new_job_id(), reason=reason)
        launch = JobLock(self._launch_path, job.job_id).acquire()
        try:
            JobLock(self._lock_path, "probe").acquire().release()  # fail fast: the job would only be skipped
            self.jobs.save(job)
            log_path = self.jobs.directory / f"{job.job_id}.log"
            with open(log_path, "ab") as output:
                process = subprocess.Popen(
                    retrain_command(job.job_id),
                    env=retrain_env(self.settings),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=Path.cwd(),
                )
        except BaseException:
            launch.release()
            raise
        watcher = threading.Thread(
            target=self._watch, args=(job.job_id, process, launch), name=f"retrain-{job.job_id}", daemon=True
        )
        watcher.start()
        log.info("retrain job %s started (pid %d)", job.job_id, process.pid)
        return StartedJob(job, process, watcher)

    def run(self, reason: str | None = None) -> JobReport:
        """Start a job and wait for it to end (the scheduler's way)."""
        started = self.start(reason)
        started.watcher.join()  # the watcher alone concludes the report, timeout included
        return self.jobs.get(started.job.job_id)

    def _watch(self, job_id: str, process: subprocess.Popen[bytes], launch: JobLock) -> None:
        try:
            self._conclude(job_id, process)
        finally:
            launch.release()

    def _conclude(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        try:
            code = process.wait(timeout=self.settings.retrain_timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self._fail(job_id, f"killed after the {self.settings.retrain_timeout_seconds:g} s retrain timeout")
            return
        job = self.jobs.get(job_id)
        if job.status in (*UNFINISHED, "crashed"):  # the child never finished its own report
            job = self._fail(job_id, f"the retrain process exited with code {code} before finishing its report")
        log.info("retrain job %s ended: %s", job_id, job.status)

    def last_on_drift(self, count: int) -> JobReport | None:
        """The newest of the last ``count`` jobs that the drift check started (``service/jobs/drift.py``)."""
        return next((job for job in self.jobs.latest(count) if job.reason is not None), None)

    def _fail(self, job_id: str, error: str) -> JobReport:
        job = self.jobs.get(job_id)
        job.status, job.stage, job.error = "failed", "done", error
        self.jobs.save(job)
        return job
