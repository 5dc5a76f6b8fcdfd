from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from latentcast.errors import ConflictError
from training.lock import JobLock


def test_second_holder_is_refused_with_the_first_named(tmp_path):
    path = tmp_path / "retrain.lock"
    with JobLock(path, "job-a"):
        with pytest.raises(ConflictError) as err:
            JobLock(path, "job-b").acquire()
        assert str(err.value).startswith(f"another retrain is running: job job-a (pid {os.getpid()} on ")
        assert err.value.details["holder"]["job"] == "job-a"
    with JobLock(path, "job-c") as lock:
        assert lock.recovered is None  # a clean release leaves no record
    assert path.read_text() == ""


def test_lock_of_a_killed_process_is_recovered(tmp_path):
    path = tmp_path / "retrain.lock"
    script = textwrap.dedent(
        f"""
        import os, signal
        from training.lock import JobLock
        JobLock({str(path)!r}, "doomed").acquire()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), check=False)
    assert done.returncode == -9
    assert json.loads(path.read_text())["job"] == "doomed"
    with JobLock(path, "next") as lock:
        assert lock.recovered is not None and lock.recovered.job == "doomed"
        assert json.loads(path.read_text())["job"] == "next"
