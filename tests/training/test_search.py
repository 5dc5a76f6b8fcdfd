from __future__ import annotations

import json

import numpy as np
import pytest

from data import sources
from latentcast.errors import ConfigError
from tests.factories import tiny_config
from training.backtest import BacktestConfig, run_backtest, search_span
from training.backtest_report import write_report
from training.config import TrainConfig
from training.search import Search, SearchConfig, search, with_choice

FAST = TrainConfig(epochs=1, streams=4, bptt=25, batch_size=64, threads=1, progress=False, epoch_steps=3)
SMALL = SearchConfig(trials=2, hidden=(4, 8), window=(5, 10), bptt=(10, 25))
FOLDS = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), epoch_steps=3)


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["IBM"], start="2010-06-01")


@pytest.fixture(scope="module")
def searched(prices):
    validation_start, test_start = search_span(prices, FOLDS)
    return search(prices, ("returns",), tiny_config(horizon=2), FAST, validation_start, test_start, SMALL)


def test_each_mode_chooses_among_its_own_parameters(searched, prices):
    assert searched.choices["ar"].keys() == {"lr", "hidden_size", "window"}
    assert searched.choices["latent"].keys() == {"lr", "hidden_size", "bptt"}
    for mode in ("ar", "latent"):
        trials = searched.trials[mode]
        assert len(trials) == 2 and all(t["error"] is None for t in trials)
        best = min(trials, key=lambda t: t["val_loss"])
        assert searched.choices[mode] == best["params"]
    days = np.unique(prices["date"].to_numpy())
    assert searched.test_start == str(np.datetime_as_string(days[-40], unit="D"))  # the test block's first day


def test_the_search_reads_no_price_of_the_test_blocks(searched, prices):
    days = np.unique(prices["date"].to_numpy())
    scrambled = prices.copy()
    later = scrambled["date"] >= days[-40]
    factor = np.random.default_rng(0).uniform(0.5, 2.0, int(later.sum()))
    for column in ("open", "high", "low", "close", "adj_close"):
        scrambled.loc[later, column] *= factor
    again = search(scrambled, ("returns",), tiny_config(horizon=2), FAST, days[-80], days[-40], SMALL)
    assert again.to_json() == searched.to_json()


def test_a_search_is_written_read_and_applied(searched, tmp_path):
    path = searched.write(tmp_path / "search.json")
    assert Search.read(path).to_json() == json.loads(json.dumps(searched.to_json()))
    model, train = with_choice({"lr": 0.005, "hidden_size": 12, "window": 7}, tiny_config("ar"), FAST)
    assert (model.hidden_size, model.window, train.lr, train.bptt) == (12, 7, 0.005, FAST.bptt)
    (tmp_path / "bad.json").write_text('{"choices": {}}')
    with pytest.raises(ConfigError) as err:
        Search.read(tmp_path / "bad.json")
    assert str(err.value).startswith(f"{tmp_path / 'bad.json'}: not a search written by latentcast backtest (")


def test_the_backtest_trains_each_mode_with_its_choice_and_reports_it(searched, prices, tmp_path):
    backtest = run_backtest(prices, ("returns",), tiny_config(horizon=2), FAST, FOLDS, "bundled", search=searched)
    report = backtest.to_json()
    assert report["search"] == searched.to_json()
    write_report(backtest, tmp_path)
    text = (tmp_path / "backtest.md").read_text()
    assert f"No search trial read a price from {searched.test_start} on" in text
    assert "| latent | 1 |" in text and "| ar | 0 |" in text
    late = Search("2020-01-01", "2030-01-01", searched.choices)
    with pytest.raises(ConfigError, match="the search read prices up to 2030-01-01, past the first test block"):
        run_backtest(prices, ("returns",), tiny_config(horizon=2), FAST, FOLDS, "bundled", search=late)
