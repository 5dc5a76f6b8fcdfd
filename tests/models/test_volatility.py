"""The EWMA variance that knows how much it has seen: a shrunk running mean first, RiskMetrics' EWMA later."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelConfig
from models.volatility import INITIAL_VARIANCE, ewma_variances, initial_volatility, steady_weight


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
