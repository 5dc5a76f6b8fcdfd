"""A retrain in two processes: trained as in one, registered and decided once, stopped together."""

from __future__ import annotations

import json

import pytest
import torch

from service.cli import main
from tests.training.retrain_setup import config
from training import distributed
from training.jobs import JobStore, new_job_id
from training.registry import Registry
from training.retrain import run_retrain
from training.retrain_ranks import run_retrain_rank


def versions(registry: Registry, mode: str) -> list[str]:
    return sorted(v.version for v in registry.versions(mode))


@pytest.mark.slow
def test_two_processes_register_once_and_end_with_the_weights_of_one(tmp_path):
    two, one = config(tmp_path / "two", modes=("ar",), refit=True), config(tmp_path / "one", modes=("ar",), refit=True)
    first_id, stale_id = new_job_id(), new_job_id()
    distributed.spawn(2, run_retrain_rank, two, first_id, "cpu")
    job = JobStore(two.artifacts / "jobs").get(first_id)
    assert job.status == "succeeded", job.error
    (outcome,) = job.modes
    registry = Registry(two.artifacts)
    # one challenger and its refit, registered by one process; promoted once
    assert versions(registry, "ar") == sorted([outcome["challenger"], outcome["refit"]["version"]])
    assert outcome["promoted"] and registry.champion("ar") == outcome["refit"]["version"]
    alone = run_retrain(one).modes[0]
    single = Registry(one.artifacts)
    for mine, theirs in (
        (outcome["challenger"], alone["challenger"]),
        (outcome["refit"]["version"], alone["refit"]["version"]),
    ):
        weights, expected = registry.load(mine)["state_dict"], single.load(theirs)["state_dict"]
        for name, value in expected.items():
            torch.testing.assert_close(weights[name], value, rtol=0, atol=1e-5, msg=name)
    assert outcome["challenger_loss"] == pytest.approx(alone["challenger_loss"], abs=1e-6)
    # a second job with nothing new: the main process skips it, and the other stops when told
    distributed.spawn(2, run_retrain_rank, two, stale_id, "cpu")
    stale = JobStore(two.artifacts / "jobs").get(stale_id)
    assert stale.status == "skipped" and "nothing new" in stale.modes[0]["reason"]
    assert versions(registry, "ar") == sorted([outcome["challenger"], outcome["refit"]["version"]])


@pytest.mark.slow
def test_the_retrain_command_runs_in_two_processes(tmp_path, capsys):
    command = ["retrain", "--artifacts", str(tmp_path), "--source", "bundled", "--tickers", "IBM", "MSFT"]
    command += ["--mode", "ar", "--epochs", "1", "--hidden", "4", "--window", "10", "--holdout-days", "60"]
    command += ["--history-years", "3", "--threads", "1", "--no-progress", "--nproc", "2", "--refit"]
    assert main(command) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "succeeded"
    (outcome,) = job["modes"]
    assert Registry(tmp_path).champion("ar") == outcome["refit"]["version"]
    assert len(versions(Registry(tmp_path), "ar")) == 2


@pytest.mark.slow
def test_the_two_process_retrain_ends_cleanly_every_time(tmp_path, capfd):
    """Ten two-process retrains: each process ends with code 0 and nothing aborts at exit.

    A process that trained behind DistributedDataParallel still runs gloo's threads after it
    leaves its group; torn down with the interpreter, they could abort it (SIGABRT, "terminate
    called without an active exception"), which ``spawn`` raises here as a process that died.
    """
    for attempt in range(10):
        job_id = new_job_id()
        distributed.spawn(2, run_retrain_rank, config(tmp_path / str(attempt), modes=("ar",), history_years=3), job_id)
        job = JobStore(tmp_path / str(attempt) / "jobs").get(job_id)
        assert job.status == "succeeded", (attempt, job.error)
        errors = capfd.readouterr().err
        assert "terminate called" not in errors and "Traceback" not in errors, (attempt, errors[-2000:])
