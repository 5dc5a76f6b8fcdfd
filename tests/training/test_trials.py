from __future__ import annotations

import numpy as np
import pytest

from data import sources
from latentcast.errors import ConfigError
from tests.factories import tiny_config
from training.config import TrainConfig
from training.fanout import run_trials
from training.trials import Trial, failures, run_trial

FAST = TrainConfig(epochs=1, streams=4, bptt=25, batch_size=64, threads=1, progress=False, epoch_steps=3)


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["IBM"], start="2010-06-01")


def trial(prices, method: str, seed: int, window: int = 10) -> Trial:
    days = np.unique(prices["date"].to_numpy())
    config = tiny_config(method, horizon=2, window=window)
    return Trial(0, method, seed, days[-80], days[-40], None, config, FAST)


def test_a_failed_trial_is_reported_and_the_others_run_on_two_processes(prices):
    trials = [trial(prices, "latent", 0), trial(prices, "ar", 0, window=5000), trial(prices, "ar", 1)]
    results = run_trials(prices, ("returns",), trials, jobs=2)
    assert [r.trial for r in results] == trials
    assert results[0].error is None and results[2].error is None
    assert results[0].spans is not None and len(results[0].spans[0]) == 40
    assert results[0].training is not None and results[0].training["steps"] == 3
    assert results[1].spans is None and results[1].error is not None and results[1].error.startswith("DataError: ")
    assert failures(results) == [{"fold": 0, "method": "ar", "seed": 0, "error": results[1].error}]
    # a process of its own gives what this one gives
    here = run_trial(prices, ("returns",), trials[2])
    assert results[2].spans is not None and here.spans is not None
    np.testing.assert_array_equal(results[2].spans[0].quantiles, here.spans[0].quantiles)


def test_jobs_must_be_positive(prices):
    with pytest.raises(ConfigError) as err:
        run_trials(prices, ("returns",), [], jobs=0)
    assert str(err.value) == "jobs must be at least 1, got 0"
