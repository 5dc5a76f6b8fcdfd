from __future__ import annotations

import logging
import math
from statistics import NormalDist

import numpy as np
import pytest
from arch import arch_model

from data import sources
from data.features import Series, build_series, cumulative_targets, split_dates
from latentcast.errors import ConfigError, DataError
from training.baselines import (
    BASELINES,
    RETURN_SCALE,
    ARFit,
    GarchFit,
    ar_forecast,
    fit_ar,
    fit_garch,
    garch_t,
    garch_variance,
    linear_ar,
    previous_return,
    random_walk,
    riskmetrics_normal,
    riskmetrics_t,
)
from training.metrics import coverage, evaluate_forecasts

LEVELS = np.array([0.1, 0.5, 0.9])
WIDE_LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


def simulate_ar2(n: int, intercept: float, phi: tuple[float, float], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, size=n)
    r = np.zeros(n)
    for t in range(2, n):
        r[t] = intercept + phi[0] * r[t - 1] + phi[1] * r[t - 2] + noise[t]
    return r


def simulate_garch_t(n: int, fit: GarchFit, seed: int = 0) -> np.ndarray:
    """Daily log returns from a GARCH(1,1)-t in percent, started at its unconditional variance."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(fit.nu, size=n) * math.sqrt((fit.nu - 2) / fit.nu)
    x = np.empty(n)
    sigma2 = fit.omega / (1 - fit.alpha - fit.beta)
    for t in range(n):
        x[t] = fit.mu + math.sqrt(sigma2) * z[t]
        sigma2 = fit.omega + fit.alpha * (x[t] - fit.mu) ** 2 + fit.beta * sigma2
    return x / RETURN_SCALE


TRUE_GARCH = GarchFit(mu=0.05, omega=0.05, alpha=0.08, beta=0.9, nu=6.0, backcast=math.nan)


@pytest.fixture(scope="module")
def garch_returns() -> np.ndarray:
    return simulate_garch_t(4000, TRUE_GARCH)


@pytest.fixture(scope="module")
def bundled_series() -> list[Series]:
    return build_series(sources.bundled(), ("returns",), 5)


def test_random_walk_by_hand():
    r = np.array([0.5, -0.5, 0.01, 0.02, 0.03])  # the last three have sample std 0.01
    forecast = random_walk(r, 5, np.array([4]), 2, LEVELS, window=3)
    assert forecast.point.tolist() == [[0.0, 0.0]]
    assert forecast.quantiles is not None and forecast.quantiles.shape == (1, 2, 3)
    z = NormalDist().inv_cdf(0.9)
    expected = [[-0.01 * z, 0.0, 0.01 * z], [-0.01 * z * math.sqrt(2), 0.0, 0.01 * z * math.sqrt(2)]]
    np.testing.assert_allclose(forecast.quantiles[0], expected, rtol=1e-12)


def test_random_walk_needs_a_full_window():
    with pytest.raises(ConfigError) as info:
        random_walk(np.zeros(30), 30, np.array([18, 19]), 1, LEVELS)
    assert str(info.value) == "origin 18 is outside 19..29"


def test_previous_return_by_hand():
    forecast = previous_return(np.array([0.01, -0.02]), 2, np.array([1, 0]), 3, LEVELS)
    np.testing.assert_allclose(forecast.point, [[-0.02, -0.04, -0.06], [0.01, 0.02, 0.03]], rtol=1e-15)
    assert forecast.quantiles is None


def test_ar_forecast_iterates_the_recursion_by_hand():
    fit = ARFit(intercept=0.1, coefficients=np.array([0.5, 0.25]))
    # step 1: 0.1 + 0.5 * 2 + 0.25 * 1 = 1.35; step 2: 0.1 + 0.5 * 1.35 + 0.25 * 2 = 1.275
    np.testing.assert_allclose(ar_forecast(fit, np.array([1.0, 2.0]), np.array([1]), 2), [[1.35, 2.625]])


def test_ar_recovers_a_simulated_ar2_from_its_train_span():
    r = simulate_ar2(6000, 0.0005, (0.5, -0.3))
    fit = fit_ar(r[:5000], p=2)
    assert fit.intercept == pytest.approx(0.0005, abs=3e-4)
    np.testing.assert_allclose(fit.coefficients, [0.5, -0.3], atol=0.03)
    forecast = linear_ar(r, 5000, np.arange(5000, 6000), 3, LEVELS, p=2)
    assert forecast.params == fit.params()
    assert forecast.quantiles is None
    assert forecast.name == "ar2"


def test_ar_needs_enough_training_rows():
    with pytest.raises(DataError) as info:
        fit_ar(np.zeros(11), p=5)
    assert str(info.value) == "AR(5) needs more than 11 training returns, got 11"
    with pytest.raises(ConfigError) as order:
        fit_ar(np.zeros(100), p=0)
    assert str(order.value) == "the AR order must be at least 1, got 0"


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_no_look_ahead(name, garch_returns):
    """The forecast at t is the same whatever the returns after t (and the fit ignores them)."""
    r, train_end, horizon = garch_returns[:3000], 2000, 4
    origins = np.arange(train_end, len(r))
    full = BASELINES[name](r, train_end, origins, horizon, LEVELS)
    rng = np.random.default_rng(1)
    for t in (train_end, 2001, 2500, len(r) - 2):
        changed = r.copy()
        changed[t + 1 :] = rng.normal(0.0, 0.05, size=len(r) - t - 1)
        alone = BASELINES[name](changed, train_end, np.array([t]), horizon, LEVELS)
        row = t - train_end
        # equal up to rounding: a product over one origin and over many may sum in another order
        np.testing.assert_allclose(alone.point[0], full.point[row], rtol=1e-12, atol=0)
        if full.quantiles is not None:
            assert alone.quantiles is not None
            np.testing.assert_allclose(alone.quantiles[0], full.quantiles[row], rtol=1e-12, atol=0)
        assert alone.params == full.params


def test_garch_is_fit_on_the_training_span_only(garch_returns):
    changed = garch_returns.copy()
    changed[2500:] *= 3.0
    assert fit_garch(changed[:2500]) == fit_garch(garch_returns[:2500])
    origins = np.arange(2500, 2600)
    assert garch_t(changed, 2500, origins, 1, LEVELS).params == garch_t(garch_returns, 2500, origins, 1, LEVELS).params
    inside = garch_returns.copy()
    inside[2400:2500] *= 3.0  # the same change inside the training span does move the fit
    assert fit_garch(inside[:2500]) != fit_garch(garch_returns[:2500])


def test_garch_recovers_its_parameters_and_covers_80_percent(garch_returns):
    train_end = 2500
    origins = np.arange(train_end, len(garch_returns))
    forecast = garch_t(garch_returns, train_end, origins, 5, LEVELS)
    params = forecast.params
    assert params["alpha"] == pytest.approx(TRUE_GARCH.alpha, abs=0.03)
    assert params["beta"] == pytest.approx(TRUE_GARCH.beta, abs=0.03)
    assert params["nu"] == pytest.approx(TRUE_GARCH.nu, abs=1.0)
    actual = cumulative_targets(garch_returns, 5)[origins]
    assert forecast.quantiles is not None
    # 1,500 origins: the binomial standard error of an 80% coverage is about 1%
    assert coverage(actual[:, 0], forecast.quantiles[:, 0], LEVELS) == pytest.approx(0.8, abs=0.03)
    assert coverage(actual[:, 4], forecast.quantiles[:, 4], LEVELS) == pytest.approx(0.8, abs=0.04)
    np.testing.assert_array_equal(forecast.point, np.tile(params["mu"] * np.arange(1, 6) / RETURN_SCALE, (1500, 1)))


def test_garch_variance_matches_arch(garch_returns):
    r, train_end = garch_returns, 2500
    fit = fit_garch(r[:train_end])
    params = np.array([fit.mu, fit.omega, fit.alpha, fit.beta, fit.nu])
    model = arch_model(r[:train_end] * RETURN_SCALE, mean="Constant", vol="GARCH", p=1, q=1, dist="t")
    in_sample = model.fix(params).conditional_volatility ** 2
    np.testing.assert_allclose(garch_variance(fit, r)[:train_end], in_sample, rtol=1e-12)
    # arch's own multi-step variance forecasts, parameters fixed, over the whole series
    whole = arch_model(r * RETURN_SCALE, mean="Constant", vol="GARCH", p=1, q=1, dist="t").fix(params)
    steps = whole.forecast(horizon=3, start=train_end, reindex=False).variance.to_numpy()  # (N, 3)
    origins = np.arange(train_end, len(r))
    quantiles = garch_t(r, train_end, origins, 3, LEVELS).quantiles
    assert quantiles is not None
    half_width = (quantiles[:, :, 2] - quantiles[:, :, 0]) / 2 * RETURN_SCALE  # sqrt(total variance) * z_0.9
    z = half_width[:, 0] / np.sqrt(steps[:, 0])
    np.testing.assert_allclose(half_width, np.sqrt(np.cumsum(steps, axis=1)) * z[:, None], rtol=1e-9)


def test_garch_logs_a_fit_that_does_not_converge(garch_returns, caplog):
    with caplog.at_level(logging.WARNING, logger="training.baselines"):
        fit = fit_garch(garch_returns[:2500], max_iterations=1)
    assert [r.getMessage() for r in caplog.records] == [
        "GARCH(1,1)-t fit did not converge (Iteration limit reached); keeping the last estimates"
    ]
    assert all(math.isfinite(v) for v in fit.params().values())


def test_garch_needs_enough_training_rows():
    with pytest.raises(DataError) as info:
        fit_garch(np.zeros(249))
    assert str(info.value) == "GARCH(1,1)-t needs at least 250 training returns, got 249"


def test_riskmetrics_by_hand():
    # start: the mean square of the 2 training returns, (0.01 + 0.04) / 2 = 0.025; then
    # sigma2 = 0.94 * 0.025 + 0.06 * 0.1^2 = 0.0241 after r_0, and 0.94 * 0.0241 + 0.06 * 0.2^2 after r_1
    r = np.array([0.1, 0.2, -0.3])
    forecast = riskmetrics_normal(r, 2, np.array([1]), 2, LEVELS)
    sigma2 = 0.94 * (0.94 * 0.025 + 0.06 * 0.01) + 0.06 * 0.04
    z = NormalDist().inv_cdf(0.9)
    assert forecast.quantiles is not None
    np.testing.assert_allclose(forecast.quantiles[0, :, 2], [math.sqrt(sigma2) * z, math.sqrt(2 * sigma2) * z])
    np.testing.assert_allclose(forecast.quantiles[0, :, 1], 0.0)
    assert forecast.point.tolist() == [[0.0, 0.0]] and forecast.params == {"decay": 0.94}


def test_riskmetrics_t_has_wider_outer_tails_on_fat_tailed_returns(garch_returns):
    # GARCH-t returns over their EWMA volatility are fat-tailed: the fitted t's 1% and 99% lie outside the normal's
    levels = np.array([0.01, 0.5, 0.99])
    normal = riskmetrics_normal(garch_returns, 3000, np.arange(3000, 4000), 1, levels)
    student = riskmetrics_t(garch_returns, 3000, np.arange(3000, 4000), 1, levels)
    assert normal.quantiles is not None and student.quantiles is not None
    assert student.params["nu"] < 30
    assert (student.quantiles[:, 0, 2] > normal.quantiles[:, 0, 2]).all()


@pytest.mark.parametrize("name", ["random_walk", "garch_t", "riskmetrics_normal", "riskmetrics_t"])
def test_quantiles_increase_along_levels(name, garch_returns):
    forecast = BASELINES[name](garch_returns[:3000], 2000, np.arange(2000, 3000), 5, WIDE_LEVELS)
    assert forecast.quantiles is not None and forecast.quantiles.shape == (1000, 5, 7)
    assert (np.diff(forecast.quantiles, axis=-1) > 0).all()


def test_inputs_are_checked():
    r = np.zeros(300)
    with pytest.raises(DataError) as returns:
        previous_return(np.array([0.0, math.nan]), 1, np.array([0]), 1, LEVELS)
    assert str(returns.value) == "returns row 1 is not finite (nan)"
    with pytest.raises(ConfigError) as train_end:
        previous_return(r, 0, np.array([0]), 1, LEVELS)
    assert str(train_end.value) == "train_end must be in 1..300, got 0"
    with pytest.raises(ConfigError) as origins:
        previous_return(r, 100, np.array([300]), 1, LEVELS)
    assert str(origins.value) == "origin 300 is outside 0..299"
    with pytest.raises(ConfigError) as horizon:
        previous_return(r, 100, np.array([0]), 0, LEVELS)
    assert str(horizon.value) == "horizon must be at least 1, got 0"
    with pytest.raises(ConfigError) as kind:
        previous_return(r, 100, np.array([1.5]), 1, LEVELS)
    assert str(kind.value) == "origins must be a 1-D array of row indices, got dtype float64, shape (1,)"


def test_baselines_on_the_bundled_prices(bundled_series):
    split = split_dates(bundled_series)
    for series in bundled_series:
        train_end, test_start = split.bounds(series)
        r = series.features[:, 0]
        origins = np.arange(test_start, len(series))
        actual = series.targets[origins]
        for name, baseline in BASELINES.items():
            forecast = baseline(r, train_end, origins, 5, LEVELS)
            assert forecast.point.shape == (len(origins), 5) and np.isfinite(forecast.point).all(), name
            if forecast.quantiles is not None:
                assert forecast.quantiles.shape == (len(origins), 5, 3) and np.isfinite(forecast.quantiles).all()
            metrics = evaluate_forecasts(actual, forecast.point, forecast.quantiles, LEVELS)
            assert metrics["h1"]["count"] == len(origins) - 1  # the last day has no next return
            assert all(v is None or math.isfinite(v) for h in metrics.values() for v in h.values())
            if name == "random_walk":
                assert metrics["h1"]["mae_ratio"] == 1.0 and metrics["h5"]["mae_ratio"] == 1.0
