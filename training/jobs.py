"""Retrain job reports, one JSON file per job, rewritten atomically at every stage.

A job is ``queued`` (asked for, process not started yet), ``running``, then
``succeeded``, ``failed`` or ``skipped`` (another job held the lock). A job
whose process died without finishing (SIGKILL, OOM, power cut) is reported as
``crashed`` when read, if its process is gone from this host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.files import write_whole
from latentcast.errors import NotFoundError

JOB_PATTERN = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}$")
UNFINISHED = ("queued", "running")


def new_job_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class JobReport:
    """What a retrain job did: data, per-mode decisions, timing, outcome."""

    job_id: str
    status: str = "queued"
    stage: str = ""
    created: str = field(default_factory=_now)
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    pid: int | None = None
    host: str = field(default_factory=socket.gethostname)
    data: dict[str, Any] = field(default_factory=dict)
    modes: list[dict[str, Any]] = field(default_factory=list)
    recovered_lock: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None  # why it was started, besides by hand or on the cron: the drift check's reason

    def start(self, pid: int) -> None:
        self.status, self.stage, self.started, self.pid = "running", "starting", _now(), pid
        self.host = socket.gethostname()

    def finish(self, status: str, seconds: float, error: str | None = None) -> None:
        self.status, self.stage, self.finished = status, "done", _now()
        self.seconds, self.error = round(seconds, 2), error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """Job reports in a folder."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, job_id: str) -> Path:
        if not JOB_PATTERN.match(job_id):
            raise NotFoundError(f"no job {job_id!r} (job ids look like 20260101T000000-a1b2c3)")
        return self.directory / f"{job_id}.json"

    def exists(self, job_id: str) -> bool:
        return self.path(job_id).is_file()

    def save(self, job: JobReport) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_whole(self.path(job.job_id), json.dumps(job.to_dict(), indent=2))

    def get(self, job_id: str) -> JobReport:
        """The job's report; an unfinished job whose process is gone reads as ``crashed``."""
        path = self.path(job_id)
        try:
            job = JobReport(**json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise NotFoundError(f"no job {job_id!r}") from exc
        if job.status == "running" and job.pid and job.host == socket.gethostname() and not _alive(job.pid):
            job.status = "crashed"
            job.error = f"the job's process (pid {job.pid}) ended without finishing, at stage {job.stage!r}"
        return job

    def latest(self, count: int = 20) -> list[JobReport]:
        if not self.directory.is_dir():
            return []
        names = sorted(p.stem for p in self.directory.glob("*.json") if JOB_PATTERN.match(p.stem))
        return [self.get(name) for name in reversed(names[-count:])]


def promotions(jobs: list[JobReport]) -> list[dict[str, Any]]:
    """Every promotion in ``jobs`` (newest first, as given): when, which version replaced which, the rule
    that fired and its test's statistic and p-values (null for a first champion, which had nothing to beat)."""
    out = []
    for job in jobs:
        for outcome in job.modes:
            if not outcome.get("promoted"):
                continue
            test = outcome.get("test") or {}
            out.append(
                {
                    "job_id": job.job_id,
                    "finished": job.finished,
                    "mode": outcome["mode"],
                    "version": outcome.get("champion_after"),
                    "replaced": outcome.get("champion_before"),
                    "rule": test.get("rule", "first" if outcome.get("champion_before") is None else "unscored"),
                    "statistic": test.get("statistic"),
                    "p_better": test.get("p_better"),
                    "p_worse": test.get("p_worse"),
                    "days": test.get("days"),
                    "reason": outcome.get("reason"),
                }
            )
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
