from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentcast.errors import ConfigError
from tests.training.retrain_setup import FAST, break_prices, config
from training.config import TrainConfig
from training.promotion import decide, newer_days
from training.registry import Registry
from training.retrain import RetrainConfig, run_retrain
from training.significance import diebold_mariano

DAYS = pd.bdate_range("2012-01-02", periods=120)


def losses(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=DAYS[: len(values)])


def noise(seed: int) -> np.ndarray:
    return 0.01 + 0.002 * np.random.default_rng(seed).standard_normal(len(DAYS))


def test_one_sided_p_values_split_the_two_sided_one():
    a, b = noise(1) - 0.0006, noise(2)
    test = diebold_mariano(a, b, 3)
    assert test.statistic < 0
    assert test.p_lower == pytest.approx(test.p_value / 2, rel=1e-12)
    assert test.p_lower + test.p_higher == pytest.approx(1.0, rel=1e-12)


def test_a_clearly_lower_loss_fires_the_better_rule():
    verdict = decide(losses(noise(1) - 0.002), losses(noise(2)), 3, level=0.10, stale_days=126, newer_days=0)
    assert verdict.promote and verdict.rule == "better"
    assert verdict.p_better < 0.10 and verdict.statistic < 0 and verdict.days == len(DAYS)
    assert verdict.reason.startswith("the challenger is better at level 0.1: DM statistic ")


def test_no_difference_keeps_a_fresh_champion_and_replaces_a_stale_one():
    challenger, champion = losses(noise(1)), losses(noise(2))
    fresh = decide(challenger, champion, 3, level=0.10, stale_days=126, newer_days=125)
    assert not fresh.promote and fresh.rule == "kept"
    assert fresh.p_better >= 0.10 and fresh.p_worse >= 0.10
    assert "has read only 125 newer days (stale after 126)" in fresh.reason
    stale = decide(challenger, champion, 3, level=0.10, stale_days=126, newer_days=126)
    assert stale.promote and stale.rule == "stale"
    assert stale.reason.startswith(
        "the challenger is not significantly worse at level 0.1 and has read 126 trading days the champion never did"
    )


def test_a_worse_challenger_is_kept_out_however_stale_the_champion():
    verdict = decide(losses(noise(1) + 0.002), losses(noise(2)), 3, level=0.10, stale_days=0, newer_days=500)
    assert not verdict.promote and verdict.rule == "kept" and verdict.p_worse < 0.10
    assert "and is worse: " in verdict.reason


def test_only_the_days_both_scored_are_compared():
    challenger = losses(noise(1))
    champion = losses(noise(2)).iloc[10:]
    champion.iloc[0] = np.nan
    assert decide(challenger, champion, 1, 0.1, 126, 0).days == len(DAYS) - 11


def test_newer_days_counts_the_trading_days_the_champion_never_read():
    prices = pd.DataFrame({"date": pd.to_datetime(["2012-01-02", "2012-01-03", "2012-01-03", "2012-01-05"])})
    assert newer_days(prices, np.datetime64("2012-01-03"), np.datetime64("2012-01-05")) == 1
    assert newer_days(prices, np.datetime64("2012-01-01"), np.datetime64("2012-01-06")) == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"level": 0.0}, "the promotion level must lie strictly between 0 and 1, got 0.0"),
        ({"level": 1.5}, "the promotion level must lie strictly between 0 and 1, got 1.5"),
        ({"stale_days": -1}, "stale_days must not be negative, got -1"),
    ],
)
def test_a_bad_rule_is_refused_when_configured(tmp_path, fields, message):
    with pytest.raises(ConfigError) as caught:
        RetrainConfig(artifacts=tmp_path, **fields)
    assert str(caught.value) == message


@pytest.mark.slow
def test_a_challenger_that_differs_only_by_seed_is_not_promoted(tmp_path):
    # the same prices but the newest day (without which the second job would have nothing new), another seed
    prices = break_prices(tmp_path / "prices.csv", 700, ((0, 0.6),))
    shorter = tmp_path / "shorter.csv"
    pd.read_csv(prices).groupby("ticker").head(699).to_csv(shorter, index=False)
    train = TrainConfig(**{**FAST.to_dict(), "epochs": 30, "seed": 1})
    setup = {"source": "csv", "tickers": ("AAA", "BBB"), "modes": ("ar",), "refit": False, "history_years": 5}
    first = run_retrain(config(tmp_path, path=str(shorter), train=train, **setup))
    job = run_retrain(config(tmp_path, path=str(prices), train=TrainConfig(**{**train.to_dict(), "seed": 2}), **setup))
    [outcome] = job.modes
    assert outcome["champion_scored"] == first.modes[0]["champion_after"]
    assert not outcome["promoted"], outcome["reason"]
    assert outcome["test"]["rule"] == "kept" and outcome["test"]["newer_days"] == 1
    assert Registry(tmp_path).champion("ar") == first.modes[0]["champion_after"]


@pytest.mark.slow
def test_a_challenger_trained_on_the_newer_regime_is_promoted(tmp_path):
    # the champion knows only the first regime; two years later the challenger has learned the second one
    prices = break_prices(tmp_path / "prices.csv", 1200, ((0, 0.6), (600, -0.6)))
    older = tmp_path / "older.csv"
    pd.read_csv(prices).groupby("ticker").head(600).to_csv(older, index=False)
    train = TrainConfig(**{**FAST.to_dict(), "epochs": 8})
    setup = {"source": "csv", "tickers": ("AAA", "BBB"), "modes": ("ar",), "refit": False, "history_years": 2}
    first = run_retrain(config(tmp_path, path=str(older), train=train, **setup))
    job = run_retrain(config(tmp_path, path=str(prices), train=train, stale_days=10_000, **setup))
    [outcome] = job.modes
    assert outcome["champion_scored"] == first.modes[0]["champion_after"]
    assert outcome["promoted"], outcome["reason"]
    assert outcome["test"]["rule"] == "better" and outcome["test"]["p_better"] < 0.10
    assert outcome["reason"] == outcome["test"]["reason"]
    assert Registry(tmp_path).champion("ar") == outcome["challenger"]


@pytest.mark.slow
def test_a_challenger_trained_on_another_regime_than_the_holdouts_is_kept_out_however_stale(tmp_path):
    # the holdout (its last 60 days) returns to the champion's regime, after the one the challenger was trained
    # and validated on
    prices = break_prices(tmp_path / "prices.csv", 1200, ((0, 0.6), (600, -0.6), (1140, 0.6)))
    older = tmp_path / "older.csv"
    pd.read_csv(prices).groupby("ticker").head(600).to_csv(older, index=False)
    train = TrainConfig(**{**FAST.to_dict(), "epochs": 30})
    setup = {"source": "csv", "tickers": ("AAA", "BBB"), "modes": ("ar",), "refit": False, "history_years": 2}
    first = run_retrain(config(tmp_path, path=str(older), train=train, **setup))
    job = run_retrain(config(tmp_path, path=str(prices), train=train, stale_days=0, **setup))
    [outcome] = job.modes
    assert not outcome["promoted"], outcome["reason"]
    assert outcome["test"]["rule"] == "kept" and outcome["test"]["p_worse"] < 0.10
    assert "and is worse: DM statistic " in outcome["reason"]
    assert Registry(tmp_path).champion("ar") == first.modes[0]["champion_after"]
