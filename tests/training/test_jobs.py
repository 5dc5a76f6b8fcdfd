from __future__ import annotations

import subprocess
import sys

import pytest

from latentcast.errors import NotFoundError
from training.jobs import JobReport, JobStore, new_job_id


def test_reports_round_trip_and_list_newest_first(tmp_path):
    store = JobStore(tmp_path)
    first = JobReport(job_id="20260101T000000-aaaaaa")
    second = JobReport(job_id="20260102T000000-bbbbbb", status="succeeded", modes=[{"mode": "ar"}])
    store.save(first)
    store.save(second)
    assert store.get(second.job_id) == second
    assert [j.job_id for j in store.latest()] == [second.job_id, first.job_id]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_running_job_whose_process_is_gone_reads_as_crashed(tmp_path):
    store = JobStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = JobReport(job_id=new_job_id())
    job.start(int(dead.stdout))
    job.stage = "training latent"
    store.save(job)
    read = store.get(job.job_id)
    assert read.status == "crashed"
    assert read.error == f"the job's process (pid {job.pid}) ended without finishing, at stage 'training latent'"


def test_unknown_and_malformed_job_ids(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(NotFoundError) as err:
        store.get("20260101T000000-abcdef")
    assert str(err.value) == "no job '20260101T000000-abcdef'"
    with pytest.raises(NotFoundError) as err:
        store.get("../etc")
    assert str(err.value) == "no job '../etc' (job ids look like 20260101T000000-a1b2c3)"
