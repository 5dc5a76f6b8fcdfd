from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from latentcast.errors import ConfigError, DataError
from training.evaluate import SpanForecasts
from training.significance import Weights, compare_losses, diebold_mariano, hln_statistic, origin_losses

# d = a - b = [0.5, -0.5, 1, 1, 1.5]: mean 0.7, deviations [-0.2, -1.2, 0.3, 0.3, 0.8]
A = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
B = np.array([0.5, 2.5, 2.0, 3.0, 3.5])


def test_one_step_statistic_worked_by_hand():
    # gamma_0 = (0.04 + 1.44 + 0.09 + 0.09 + 0.64) / 5 = 0.46; V = 0.46 / 5 = 0.092
    # DM = 0.7 / sqrt(0.092) = 2.30783; HLN factor sqrt((5 + 1 - 2) / 5) = sqrt(0.8)
    result = diebold_mariano(A, B, horizon=1)
    assert result.statistic == pytest.approx(0.7 / math.sqrt(0.092) * math.sqrt(0.8))
    assert result.statistic == pytest.approx(2.06419, abs=1e-5)
    assert result.p_value == pytest.approx(2 * stats.t.sf(2.06419, df=4), abs=1e-5)
    assert result.mean_difference == pytest.approx(0.7) and (result.n, result.lags) == (5, 0)


def test_two_step_statistic_weighs_its_one_lag_fully():
    # gamma_1 = (0.24 - 0.36 + 0.09 + 0.24) / 5 = 0.042, weight 1 (equal weights, not Bartlett's 1 - 1/2)
    # V = (0.46 + 2 * 0.042) / 5 = 0.1088; HLN factor sqrt((5 + 1 - 4 + 2 / 5) / 5) = sqrt(0.48)
    result = diebold_mariano(A, B, horizon=2)
    assert result.statistic == pytest.approx(0.7 / math.sqrt(0.1088) * math.sqrt(0.48))
    assert result.statistic == pytest.approx(1.47029, abs=1e-5)
    assert (result.lags, result.weights) == (1, "equal")


def test_bartlett_weights_stand_in_only_where_the_equal_weight_variance_is_not_positive():
    # centred d alternates +1, -1: gamma_0 = 1, gamma_1 = -(n - 1) / n, so the equal-weight variance
    # 1 - 2 (n - 1) / n is negative and Bartlett's 1 - (n - 1) / n = 1 / n is not
    n = 40
    d = 0.1 + (-1.0) ** np.arange(n)
    result = diebold_mariano(d, np.zeros(n), horizon=2)
    assert result.weights == "bartlett"
    correction = math.sqrt((n + 1 - 4 + 2 / n) / n)
    assert result.statistic == pytest.approx(correction * 0.1 / math.sqrt((1 / n) / n))


def rejection_rate(horizon: int, weights: Weights, draws: int = 4000, n: int = 500) -> float:
    """How often the DM test rejects a true null at 5% on MA(h - 1) loss differentials, all draws at once.

    d_t = e_t + ... + e_{t-h+1} (equal coefficients: h-step forecasts sharing h - 1 shocks, the strongest
    overlap), e iid normal; the draws whose equal-weight variance is not positive fall back as
    ``diebold_mariano`` does.
    """
    rng = np.random.default_rng(horizon)
    shocks = rng.standard_normal((draws, n + horizon - 1))
    d = np.sum([shocks[:, j : j + n] for j in range(horizon)], axis=0)  # (draws, n)
    statistic, variance = hln_statistic(d, horizon, weights)
    if weights == "equal" and horizon > 1:
        fallback, _ = hln_statistic(d, horizon, "bartlett")
        statistic = np.where(variance > 0, statistic, fallback)
    critical = stats.t.ppf(0.975, df=n - 1)
    return float(np.mean(np.abs(statistic) > critical))


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_the_test_rejects_a_true_null_five_percent_of_the_time(horizon):
    assert 0.035 <= rejection_rate(horizon, "equal") <= 0.065


def test_bartlett_weights_with_the_hln_correction_reject_too_often_past_one_step():
    assert rejection_rate(5, "bartlett") > 0.065


def test_the_vectorised_statistic_is_the_one_diebold_mariano_reports():
    d = np.random.default_rng(3).standard_normal((3, 60))
    statistic, _ = hln_statistic(d, 3)
    for row, value in zip(d, statistic, strict=True):
        assert diebold_mariano(row, np.zeros(60), horizon=3).statistic == pytest.approx(value)


def test_identical_forecasters_give_p_one_and_no_verdict():
    losses = np.random.default_rng(0).random(50)
    result = diebold_mariano(losses, losses.copy(), horizon=3)
    assert result.p_value == 1.0 and result.statistic == 0.0
    assert result.verdict("latent", "ar") == "no significant difference between latent and ar (p = 1.000)"


def test_a_clearly_lower_loss_is_called_and_nan_origins_are_left_out():
    rng = np.random.default_rng(1)
    worse = rng.random(300) + 0.5
    better = worse - 0.2 + 0.05 * rng.standard_normal(300)
    worse[3] = np.nan
    result = diebold_mariano(better, worse)
    assert result.n == 299 and result.statistic < 0 and result.p_value < 1e-6
    assert result.verdict("latent", "GARCH").startswith("latent has a significantly lower loss than GARCH (p = ")


def test_too_few_origins_are_refused():
    with pytest.raises(DataError) as err:
        diebold_mariano(A[:4], B[:4], horizon=2)
    assert str(err.value) == "too few origins for a Diebold-Mariano test at horizon 2: 4"


def span(ticker: str, days: list[str], actual: list[float], point: list[float], spread: float = 0.1) -> SpanForecasts:
    """One-step forecasts with quantiles [point - spread, point, point + spread] at levels 0.1, 0.5, 0.9."""
    y, m = np.array(actual)[:, None], np.array(point)[:, None]
    return SpanForecasts(
        ticker,
        np.array(days, dtype="datetime64[D]"),
        np.ones(len(days)),
        y,
        m,
        np.stack([m - spread, m, m + spread], -1),
    )


def test_origin_losses_are_the_mean_over_the_tickers_of_each_day():
    first = span("AAA", ["2020-01-02", "2020-01-03"], [1.0, 2.0], [0.0, 0.0])
    second = span("BBB", ["2020-01-03"], [-1.0], [0.0])
    losses = origin_losses([[first, second]], [0.1, 0.5, 0.9], 1, "absolute_error")
    assert losses.index.tolist() == list(np.array(["2020-01-02", "2020-01-03"], dtype="datetime64[ns]"))
    assert losses.tolist() == [1.0, 1.5]  # 2020-01-03: mean of |2| and |-1|
    # pinball of y = 1 against [-0.1, 0, 0.1]: (0.1 * 1.1 + 0.5 * 1 + 0.9 * 0.9) / 3
    pinball = origin_losses([[first]], [0.1, 0.5, 0.9], 1)
    assert pinball.iloc[0] == pytest.approx((0.11 + 0.5 + 0.81) / 3)
    with pytest.raises(ConfigError, match="unknown loss 'squared'"):
        origin_losses([[first]], [0.1, 0.5, 0.9], 1, "squared")  # type: ignore[arg-type]


def test_compare_losses_scores_each_forecaster_at_its_own_levels():
    rng = np.random.default_rng(0)
    days = [str(d) for d in np.arange("2020-01-01", "2020-05-01", dtype="datetime64[D]")]
    y = rng.normal(size=len(days)).tolist()
    a, b = span("AAA", days, y, [0.0] * len(days)), span("AAA", days, y, [0.0] * len(days))
    same = compare_losses([[a]], [[b]], [0.1, 0.5, 0.9], 1, levels_b=[0.1, 0.5, 0.9])
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    # b's quantiles read at levels 0.45, 0.5, 0.55: a pinball loss of their own, a different one
    other = compare_losses([[a]], [[b]], [0.1, 0.5, 0.9], 1, levels_b=[0.45, 0.5, 0.55])
    assert other.mean_difference != 0.0
