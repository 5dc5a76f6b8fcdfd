from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from data import sources
from latentcast.errors import ConfigError
from tests.factories import tiny_config
from training.backtest import BacktestConfig, run_backtest
from training.backtest_report import write_report
from training.config import TrainConfig
from training.dataset import TrainingData
from training.pipeline import fit
from training.pretrain import synthetic_data

FAST = TrainConfig(epochs=2, streams=4, bptt=25, batch_size=32, windows_per_epoch=64, threads=1, progress=False)
PRETRAINED = replace(FAST, pretrain_paths=8, pretrain_steps=6, pretrain_days=150)


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["IBM", "MSFT"], start="2008-01-01", end="2011-01-01")


def _weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize(("mode", "features"), [("latent", ("returns",)), ("ar", ("returns", "range"))])
def test_pretraining_takes_its_steps_before_the_same_training_on_prices(prices, mode, features):
    data = TrainingData.prepare(prices, features, 3)
    config = tiny_config(mode, n_features=len(features), scaling="volatility")
    plain = fit(config, data, FAST)
    pretrained = fit(config, data, PRETRAINED)
    again = fit(config, data, PRETRAINED)
    assert plain.pretrained is None
    assert pretrained.pretrained is not None and pretrained.pretrained.steps == 6
    assert pretrained.result.steps == plain.result.steps  # the same budget on the prices
    assert pretrained.result.epochs_run == plain.result.epochs_run == 2
    assert not _weights_equal(plain.model, pretrained.model)
    assert _weights_equal(pretrained.model, again.model)  # seeded: the same paths, the same weights


def test_the_paths_have_the_real_datas_features_scaler_and_horizon_and_every_row_trains(prices):
    data = TrainingData.prepare(prices, ("returns", "range"), 4)
    synthetic = synthetic_data(data, PRETRAINED)
    assert synthetic.scaler is data.scaler and synthetic.horizon == 4 and synthetic.features == data.features
    assert len(synthetic.series) == 8 and all(len(s) == 150 for s in synthetic.series)
    assert all(synthetic.split.bounds(s) == (150, 150) for s in synthetic.series)


def test_volume_cannot_be_pretrained_and_the_path_count_is_checked(prices):
    data = TrainingData.prepare(prices, ("returns", "range", "volume"), 3)
    with pytest.raises(ConfigError, match="synthetic paths have no volume"):
        fit(tiny_config("latent", n_features=3), data, PRETRAINED)
    with pytest.raises(ConfigError, match="pretrain_paths must be a non-negative integer, got -1"):
        replace(FAST, pretrain_paths=-1)
    with pytest.raises(ConfigError, match="pretrain_steps must be a positive integer, got 0"):
        replace(FAST, pretrain_steps=0)


def test_a_pretrained_backtest_trains_each_mode_without_too_and_tests_the_two(prices, tmp_path):
    config = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), epoch_steps=5)
    train = replace(PRETRAINED, epochs=1)
    backtest = run_backtest(prices, ("returns",), tiny_config(horizon=2, scaling="volatility"), train, config, "b")
    report = backtest.to_json()
    assert {"latent", "ar", "latent_unpretrained", "ar_unpretrained"} <= set(report["pooled"])
    assert report["pooled"]["latent"]["h1"]["pinball"] != report["pooled"]["latent_unpretrained"]["h1"]["pinball"]
    assert [t["pretrain_steps"] for t in report["trainings"]["latent"]] == [6]
    assert [t["pretrain_steps"] for t in report["trainings"]["latent_unpretrained"]] == [0]
    pairs = [(t["horizon"], t["a"], t["b"]) for t in report["diebold_mariano"]]
    assert pairs[-2:] == [(2, "ar", "ar_unpretrained"), (2, "latent", "latent_unpretrained")]
    write_report(backtest, tmp_path)
    text = (tmp_path / "backtest.md").read_text()
    assert "first trained for 6 optimiser steps on 8 synthetic paths of 150 days" in text
    assert "| latent (model) | 1 | 5 (+6 pretraining) |" in text
    assert "| latent, not pretrained | 1 | 5 |" in text
