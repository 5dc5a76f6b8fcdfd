"""The EWMA variance that knows how much it has seen: a shrunk running mean first, RiskMetrics' EWMA later."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelConfig
from models.volatility import INITIAL_VARIANCE, PARKINSON, ewma_variances, initial_volatility, steady_weight


def _run(returns: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    start = initial_volatility(1, config)
    return ewma_variances(returns[None].astype(np.float32), start[:, 0], start[:, 1], config)


@pytest.mark.parametrize("prior", [0.5, 1.0, 4.0])
def test_the_variance_is_the_discounted_mean_of_the_prior_and_every_squared_return(prior):
    config = ModelConfig(scaling="volatility", variance_prior=prior)
    returns = np.random.default_rng(0).normal(0, 3, 40)
    variances, weights = _run(returns, config)
    d = config.ewma_decay
    for n in range(1, 41):
        ages = d ** np.arange(n - 1, -1, -1)  # return i weighs d^(n - 1 - i)
        mass = prior * d**n + ages.sum()
        expected = (prior * d**n * INITIAL_VARIANCE + (ages * returns[:n] ** 2).sum()) / mass
        assert variances[0, n] == pytest.approx(expected, rel=1e-5)
        assert weights[0, n] == pytest.approx(mass, rel=1e-5)


def test_a_few_returns_of_a_wild_stock_move_the_variance_most_of_the_way():
    config = ModelConfig(scaling="volatility", variance_prior=1.0)
    variances, _ = _run(np.array([3.0, -3.0, 3.0, -3.0]), config)  # four returns of variance 9
    assert 7.0 < variances[0, -1] < 9.0
    quiet, _ = _run(np.array([0.3, -0.3, 0.3, -0.3]), config)  # and of variance 0.09
    assert 0.09 < quiet[0, -1] < 0.35


def test_once_the_weight_is_steady_a_step_is_riskmetrics_ewma():
    config = ModelConfig(scaling="volatility")
    v = np.array([2.0], np.float32)
    w = np.array([steady_weight(config)], np.float32)
    variances, weights = ewma_variances(np.array([[1.5]], np.float32), v, w, config)
    d = config.ewma_decay
    assert variances[0, 1] == pytest.approx(d * 2.0 + (1 - d) * 1.5**2, rel=1e-6)
    assert weights[0, 1] == pytest.approx(steady_weight(config), rel=1e-6)


def test_the_floor_holds():
    config = ModelConfig(scaling="volatility", variance_floor=1e-3)
    variances, _ = _run(np.zeros(200), config)
    assert variances.min() == pytest.approx(1e-3)


def test_a_parkinson_variance_reads_the_range_in_place_of_the_squared_return():
    config = ModelConfig(n_features=2, scaling="volatility", variance_source="parkinson")
    v = np.array([2.0], np.float32)
    w = np.array([steady_weight(config)], np.float32)
    ranges = np.array([[0.8]], np.float32)
    variances, _ = ewma_variances(np.array([[1.5]], np.float32), v, w, config, ranges)
    d = config.ewma_decay
    assert pytest.approx(1 / (4 * np.log(2))) == PARKINSON
    assert variances[0, 1] == pytest.approx(d * 2.0 + (1 - d) * 0.8**2 / (4 * np.log(2)), rel=1e-6)
    # the return does not enter: another return, the same variance
    again, _ = ewma_variances(np.array([[-7.0]], np.float32), v, w, config, ranges)
    assert again[0, 1] == variances[0, 1]


def test_for_a_random_walk_the_parkinson_variance_is_unbiased_and_steadier():
    # Brownian paths of 400 steps a day: the day's log range squared over 4 ln 2 has the variance's mean
    rng = np.random.default_rng(3)
    paths = np.cumsum(rng.normal(0, 1 / np.sqrt(400), size=(4000, 400)), axis=1)
    log_range = paths.max(axis=1).clip(0) - paths.min(axis=1).clip(max=0)
    parkinson = log_range**2 * PARKINSON
    squares = paths[:, -1] ** 2
    assert 0.88 < parkinson.mean() < 1.04  # 400 samples a day read the range a little low
    assert parkinson.var() < squares.var() / 3
