from __future__ import annotations

import numpy as np
import pytest
from arch import arch_model
from scipy.stats import kurtosis

from data.features import RAW_RETURN_BOUND
from latentcast.errors import ConfigError
from training.synthetic import PARAMETERS, PROCESSES, garch_t, intraday_extremes, synthetic_returns, synthetic_series


def _autocorrelation(x: np.ndarray, lag: int) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    return (x[:, lag:] * x[:, :-lag]).sum(axis=1) / (x * x).sum(axis=1)


def test_the_same_seed_gives_the_same_paths_and_another_seed_others():
    first = synthetic_series(6, 300, ("returns", "range"), 3, seed=7)
    again = synthetic_series(6, 300, ("returns", "range"), 3, seed=7)
    other = synthetic_series(6, 300, ("returns", "range"), 3, seed=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(first[0].features, other[0].features)
    assert [s.ticker for s in first] == [f"synthetic-{i}" for i in range(6)]


def test_garch_paths_have_the_persistence_and_fat_tails_of_daily_equity_returns():
    returns, variances = garch_t(np.random.default_rng(0), 60, 3000)
    squared = returns**2
    # volatility clusters: squared returns correlate over a day and still over two weeks
    assert 0.05 < np.median(_autocorrelation(squared, 1)) < 0.4
    assert 0.02 < np.median(_autocorrelation(squared, 10)) < np.median(_autocorrelation(squared, 1))
    # fat tails: excess kurtosis well above a normal's 0, below what a few crashes give
    assert 1.5 < np.median(kurtosis(returns, axis=1)) < 12
    yearly = np.median(returns.std(axis=1)) * np.sqrt(252)
    assert PARAMETERS["annual_vol"][0] < yearly < PARAMETERS["annual_vol"][1]
    # GARCH(1,1)-t fit to a path finds the persistence its parameters were drawn in
    for path in returns[:3]:
        fit = arch_model(path * 100, vol="GARCH", p=1, q=1, dist="t", mean="Zero").fit(disp="off")
        persistence = fit.params["alpha[1]"] + fit.params["beta[1]"]
        assert 0.9 < persistence < 1.0
    assert (variances > 0).all()


@pytest.mark.parametrize("jumps", [True, False])
def test_every_process_gives_finite_returns_of_the_drawn_scale(jumps):
    returns, variances = synthetic_returns(9, 2000, seed=1, jumps=jumps)
    assert returns.shape == variances.shape == (9, 2000) and np.isfinite(returns).all()
    for k, _ in enumerate(PROCESSES):
        yearly = returns[k :: len(PROCESSES)].std(axis=1) * np.sqrt(252)
        assert ((yearly > 0.08) & (yearly < 1.2)).all()
    assert np.abs(returns).max() < RAW_RETURN_BOUND


def test_high_and_low_bound_the_day_and_measure_its_variance():
    rng = np.random.default_rng(3)
    variances = np.full((4, 5000), 1e-4)
    returns = rng.standard_normal((4, 5000)) * 1e-2
    high, low = intraday_extremes(rng, returns, variances)
    assert (high >= np.maximum(returns, 0)).all() and (low <= np.minimum(returns, 0)).all()
    # Parkinson's estimator reads the variance from the range, a little under it on a discrete path
    parkinson = ((high - low) ** 2 / (4 * np.log(2))).mean()
    assert 0.75e-4 < parkinson < 1.05e-4
    series = synthetic_series(3, 200, ("returns", "range"), 2, seed=0)
    assert all((s.features[:, 1] >= np.abs(s.features[:, 0]) - 1e-12).all() for s in series)


def test_volume_and_too_short_paths_are_refused_by_name():
    with pytest.raises(ConfigError) as err:
        synthetic_series(2, 100, ("returns", "range", "volume"), 2, seed=0)
    assert (
        str(err.value) == "synthetic paths have no volume: features returns,range,volume cannot be pretrained on them"
    )
    with pytest.raises(ConfigError, match="at least 1 path of 2 days, got 0 of 10"):
        synthetic_returns(0, 10, seed=0)
