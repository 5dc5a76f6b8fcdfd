"""Trials as tasks on a Ray cluster: the option's way to them, the error without Ray, and (slow) a real
local cluster of two CPUs giving what this host's processes give."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from data import sources
from service.cli import main
from service.cli.parser import build_parser
from tests.factories import tiny_config
from training.config import TrainConfig
from training.fanout import run_trials
from training.ray_trials import _result, ray_session, trial_cpus
from training.trials import Trial

TINY = ["--tickers", "IBM", "--start", "2006-01-01", "--end", "2009-01-01", "--epochs", "1", "--hidden", "8"]
BACKTEST = [
    "backtest",
    *TINY,
    *("--window", "10", "--horizon", "2", "--no-progress", "--threads", "1", "--epoch-steps", "3"),
    *("--folds", "1", "--test-days", "30", "--validation-days", "30", "--seeds", "0", "1"),
    *("--search-trials", "1", "--jobs", "1"),
]
FAST = TrainConfig(epochs=1, streams=4, bptt=25, batch_size=64, threads=1, progress=False, epoch_steps=3)
# a local cluster of two CPUs, its address printed, torn down when its stdin closes
CLUSTER = (
    "import sys, ray\n"
    "context = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1])\n"
    "print(context.address_info['gcs_address'], flush=True)\n"
    "sys.stdin.read()\n"
    "ray.shutdown()\n"
)


def test_the_address_reaches_the_backtest_and_a_trial_asks_for_its_threads():
    parser = build_parser()
    assert parser.parse_args(BACKTEST).ray_address is None
    assert parser.parse_args([*BACKTEST, "--ray-address", "10.0.0.5:6379"]).ray_address == "10.0.0.5:6379"
    days = np.arange("2008-01-01", "2008-03-01", dtype="datetime64[D]")
    trial = Trial(0, "latent", 0, days[0], days[20], None, tiny_config("latent"), FAST)
    assert trial_cpus(trial) == 1
    assert trial_cpus(replace(trial, train_config=replace(FAST, threads=3))) == 3
    assert trial_cpus(replace(trial, train_config=replace(FAST, threads=None))) == 1


def test_an_address_without_ray_installed_is_one_line_saying_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    assert main([*BACKTEST, "--ray-address", "127.0.0.1:6379", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "latentcast backtest: error: --ray-address needs Ray, which is not installed: "
        "pip install -c constraints.txt -e '.[ray]' in the checkout, or make setup\n"
    )
    assert not any(tmp_path.iterdir())


@pytest.fixture
def cluster(monkeypatch) -> Iterator[str]:
    """The address of a local Ray cluster of two CPUs, shut down (every process of it) after the test.

    Its token is this test's own (given to the cluster and to this process in the environment, never
    written to ~/.ray), and its logs and sockets go to a folder of its own, removed after.
    """
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 characters
    process = subprocess.Popen(
        [sys.executable, "-c", CLUSTER, folder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_backtest_on_a_ray_cluster_equals_the_local_one_and_a_failed_trial_is_reported(cluster, tmp_path, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    assert main([*BACKTEST, "--out", str(here)]) == 0
    assert main([*BACKTEST, "--ray-address", cluster, "--out", str(there)]) == 0
    capsys.readouterr()
    local, remote = (json.loads((p / "backtest.json").read_text()) for p in (here, there))
    assert remote["config"]["ray_address"] == cluster and local["config"]["ray_address"] is None
    assert remote["failures"] == local["failures"] == []
    for method in ("ar", "latent"):
        assert [t["seed"] for t in remote["trainings"][method]] == [0, 1]
        key = [(t["seed"], t["steps"], t["val_loss"]) for t in remote["trainings"][method]]
        assert key == [(t["seed"], t["steps"], t["val_loss"]) for t in local["trainings"][method]]
    assert remote["search"]["trials"] == local["search"]["trials"]  # the search's trainings ran there too
    for part in ("search", "pooled", "diebold_mariano", "confidence_sets", "coverage_tests"):
        assert remote[part] == local[part], part
    assert f"(tasks on the Ray cluster at {cluster})" in (there / "backtest.md").read_text()
    # a trial that fails there is reported as here, and the other still trains
    prices = sources.load("bundled", tickers=["IBM"], start="2010-06-01")
    days = np.unique(prices["date"].to_numpy())
    trials = [
        Trial(0, "ar", 0, days[-80], days[-40], None, tiny_config("ar", horizon=2, window=w), FAST) for w in (10, 5000)
    ]
    on_cluster = run_trials(prices, ("returns",), trials, ray_address=cluster)
    on_host = run_trials(prices, ("returns",), trials[1:])
    assert on_cluster[0].error is None and on_cluster[0].spans is not None
    assert on_host[0].error is not None and on_host[0].error.startswith("DataError: ")
    assert on_cluster[1].error == on_host[0].error and on_cluster[1].spans is None
    # a task whose worker dies comes back as a failed trial naming why, as a dead local process does
    ray = pytest.importorskip("ray")
    with ray_session(cluster):
        died = ray.remote(max_retries=0)(lambda: os._exit(1)).remote()
        lost = _result(ray, died, trials[0])
    assert lost.trial == trials[0] and lost.spans is None and lost.training is None
    assert lost.error is not None and lost.error.startswith("WorkerCrashedError: ")
