"""A retrain killed mid-training, or whose disk fills or turns read-only, leaves the registry as it was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.training.retrain_setup import OLDER, ROOT, config, until
from training.jobs import JobStore
from training.registry import Registry
from training.retrain import run_retrain


@pytest.mark.slow
def test_sigkill_mid_training_leaves_the_champion_and_the_next_run_succeeds(tmp_path):
    first = run_retrain(until(tmp_path, OLDER, modes=("latent",), refit=True))
    champion = first.modes[0]["champion_after"]
    job_id = "20260101T000000-dead00"
    slow = [
        sys.executable,
        "-m",
        "service.cli",
        "retrain",
        "--source",
        "bundled",
        "--tickers",
        "IBM",
        "MSFT",
        "--mode",
        "latent",
        "--epochs",
        "500",
        "--hidden",
        "32",
        "--no-progress",
        "--artifacts",
        str(tmp_path),
        "--job-id",
        job_id,
    ]
    process = subprocess.Popen(slow, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = tmp_path / "jobs" / f"{job_id}.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if report.exists() and json.loads(report.read_text())["stage"] == "training latent":
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the retrain never reached its training stage")
    time.sleep(0.5)  # well inside the training loop
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    registry = Registry(tmp_path)
    assert registry.champion("latent") == champion
    assert sorted(v.version for v in registry.versions("latent")) == sorted([first.modes[0]["challenger"], champion])
    crashed = JobStore(tmp_path / "jobs").get(job_id)
    assert crashed.status == "crashed"
    job = run_retrain(config(tmp_path, modes=("latent",)))
    assert job.status == "succeeded"
    assert job.recovered_lock is not None and job.recovered_lock["job"] == job_id


def assert_failed_cleanly(job, artifacts: Path, champion: str, versions: list[str], error: str) -> None:
    """Failed with ``error``, the champion and the versions as before, no half-written version left."""
    assert job.status == "failed" and job.error is not None and job.error.startswith(error), job.error
    registry = Registry(artifacts)
    assert registry.champion("latent") == champion
    assert sorted(v.version for v in registry.versions()) == sorted(versions)
    assert list((artifacts / "latent").glob(".tmp-*")) == [] and list((artifacts / "latent").glob(".*.tmp")) == []


@pytest.mark.slow
def test_a_disk_that_fills_while_the_weights_are_written_fails_the_job_cleanly(tmp_path, monkeypatch):
    first = run_retrain(until(tmp_path, OLDER, modes=("latent",), refit=True))
    champion = first.modes[0]["champion_after"]
    versions = [first.modes[0]["challenger"], champion]

    def disk_full(checkpoint, handle, *args, **kwargs):
        handle.write(b"\0" * 4096)  # part of the file, then no space left
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    job = run_retrain(config(tmp_path, modes=("latent",)))
    assert_failed_cleanly(job, tmp_path, champion, versions, "OSError: [Errno 28] No space left on device")
    assert JobStore(tmp_path / "jobs").get(job.job_id).status == "failed"  # the report itself could be written


@contextlib.contextmanager
def tmpfs(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` on ``folder``: a real file system that can be filled or made read-only."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the ENOSPC test above stands in")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_or_read_only_artifacts_folder_fails_the_job_cleanly_on_a_real_file_system(tmp_path):
    with tmpfs(tmp_path / "artifacts", megabytes=4) as artifacts:
        first = run_retrain(until(artifacts, OLDER, modes=("latent",), refit=True))
        champion = first.modes[0]["champion_after"]
        versions = [first.modes[0]["challenger"], champion]
        with open(artifacts / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        job = run_retrain(config(artifacts, modes=("latent",)))
        assert_failed_cleanly(job, artifacts, champion, versions, "OSError: [Errno 28] No space left on device")
        (artifacts / "filler").unlink()

        subprocess.run(["mount", "-o", "remount,ro", str(artifacts)], check=True)
        job = run_retrain(config(artifacts, modes=("latent",)))
        assert_failed_cleanly(job, artifacts, champion, versions, "OSError: [Errno 30] Read-only file system")
