from __future__ import annotations

import json

import numpy as np
import pytest

from data import sources
from latentcast.errors import ConfigError, DataError
from tests.factories import tiny_config
from training.backtest import BacktestConfig, fold_trials, make_folds, run_backtest
from training.backtest_report import BASELINES, write_report
from training.config import TrainConfig

FAST = TrainConfig(epochs=1, streams=4, bptt=25, batch_size=64, threads=1, progress=False)
SMALL = BacktestConfig(folds=2, test_days=40, validation_days=40, seeds=(0, 1, 2), epoch_steps=5)
BANDED = ("ar", "garch_t", "riskmetrics_t", "har_range", "riskmetrics_normal", "random_walk")


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["IBM"], start="2010-06-01")


def test_folds_expand_and_their_test_blocks_follow_one_another(prices):
    days = np.unique(prices["date"].to_numpy())
    folds = make_folds(prices, SMALL)
    assert [f.test_start for f in folds] == [days[-80], days[-40]]
    assert folds[0].test_end == days[-40] and folds[1].test_end is None
    assert [f.validation_start for f in folds] == [days[-120], days[-80]]
    with pytest.raises(DataError) as err:
        make_folds(prices, BacktestConfig(folds=20, test_days=40, validation_days=40))
    assert str(err.value) == (
        f"too few trading days for 20 folds of 40 test days after 40 validation days: {len(days)}"
    )


def test_backtest_scores_every_fold_and_seed_and_judges_every_method(prices, tmp_path):
    backtest = run_backtest(prices, ("returns",), tiny_config(horizon=2), FAST, SMALL, "bundled")
    report = backtest.to_json()
    assert [f["fold"] for f in report["folds"]] == [0, 1]
    for fold in report["folds"]:
        assert len(fold["scores"]["latent"]["h1"]["pinball"]) == 3  # one per seed
        assert len(fold["scores"]["garch_t"]["h1"]["pinball"]) == 1  # fit once per fold
    # every test day of both blocks is scored, but the last of each: its return lies past the fold's prices
    assert report["pooled"]["latent"]["h1"]["count"] == [78, 78, 78]
    assert report["pooled"]["random_walk"]["h1"]["count"] == [78]
    tests = {(t["horizon"], t["a"], t["b"]) for t in report["diebold_mariano"]}
    expected = {(h, "latent", b) for h in (1, 2) for b in BANDED} | {(h, "ar", b) for h in (1, 2) for b in BANDED[1:]}
    assert tests == expected
    raw = [t["p_value"] for t in report["diebold_mariano"]]
    for test in report["diebold_mariano"]:
        # Holm: never below the raw p-value, at most 22 times it
        assert test["p_value"] <= test["adjusted_p"] <= min(1.0, 22 * test["p_value"]) + 1e-12
        assert len(test["seeds"]) == 3  # a model's seeds, each paired with the other's or with the baseline
        called = test["verdict"].startswith(("latent has", "ar has", "GARCH", "RiskMetrics", "HAR", "random walk"))
        assert called == (test["adjusted_p"] < 0.05 and "no verdict" not in test["verdict"])
    assert min(t["adjusted_p"] for t in report["diebold_mariano"]) >= min(raw)
    # one model confidence set per horizon, over every method with quantiles
    assert [m["horizon"] for m in report["confidence_sets"]] == [1, 2]
    for mcs in report["confidence_sets"]:
        assert set(mcs["p_values"]) == {"latent", *BANDED} and mcs["included"]
        assert all((mcs["p_values"][m] > 0.1) == (m in mcs["included"]) for m in mcs["p_values"])
    assert {m: len(r) for m, r in report["coverage_tests"].items()} == {
        "latent": 3,
        "ar": 3,
        **dict.fromkeys(BANDED[1:], 1),
    }
    # equal budgets: every training of either mode took 5 steps an epoch, one epoch here
    assert {r["steps"] for m in ("ar", "latent") for r in report["trainings"][m]} == {5}
    assert len(report["trainings"]["latent"]) == 6 and report["failures"] == []
    paths = write_report(backtest, tmp_path)
    assert sorted(p.name for p in paths) == ["backtest.json", "backtest.md", "backtest_folds.png"]
    assert json.loads((tmp_path / "backtest.json").read_text()) == json.loads(json.dumps(report))
    text = (tmp_path / "backtest.md").read_text()
    assert "## Verdict: ar against latent" in text and "## Model confidence sets" in text
    assert "at most 1 epochs of 5 optimiser steps each in both modes (equal budgets: 5 steps)" in text
    assert "## Diebold-Mariano tests" in text and "![backtest_folds](backtest_folds.png)" in text
    assert (tmp_path / "backtest_folds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_closes_only_prices_leave_har_range_out_and_judge_the_rest(prices):
    closes = prices.assign(high=np.nan, low=np.nan, open=np.nan)
    one = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), epoch_steps=2)
    report = run_backtest(closes, ("returns",), tiny_config(horizon=2), FAST, one, "bundled").to_json()
    assert "har_range" not in report["pooled"] and "garch_t" in report["pooled"]
    assert all("har_range" not in (t["a"], t["b"]) for t in report["diebold_mariano"])
    assert len(report["diebold_mariano"]) == 2 * 9  # latent against ar and 4 baselines, ar against 4
    assert all("har_range" not in m["p_values"] for m in report["confidence_sets"])


def test_other_scalings_train_both_modes_beside_and_are_tested_against_them(prices, tmp_path):
    config = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), scalings=("global",), epoch_steps=5)
    backtest = run_backtest(prices, ("returns",), tiny_config(horizon=2, scaling="volatility"), FAST, config, "bundled")
    report = backtest.to_json()
    assert set(report["pooled"]) == {"latent", "ar", "latent_global", "ar_global", *BASELINES, "previous_return"}
    assert report["config"]["backtest"]["scalings"] == ["global"]
    # the same seed and data, another scaling: other forecasts
    assert report["pooled"]["latent"]["h1"]["pinball"] != report["pooled"]["latent_global"]["h1"]["pinball"]
    pairs = [(t["horizon"], t["a"], t["b"]) for t in report["diebold_mariano"]]
    assert pairs[-2:] == [(2, "ar", "ar_global"), (2, "latent", "latent_global")]
    assert report["diebold_mariano"][-1]["verdict"].count("latent, global scaling") == 1
    write_report(backtest, tmp_path)
    text = (tmp_path / "backtest.md").read_text()
    assert "volatility scaling, learning rate 0.003, bptt 25; at most 1 epochs of 5" in text
    assert "Beside them, ar and latent with global scaling, same data and seeds." in text
    assert "| 1 | latent (model) | latent, global scaling |" in text
    with pytest.raises(ConfigError) as err:
        run_backtest(prices, ("returns",), tiny_config(scaling="global"), FAST, config, "bundled")
    assert str(err.value) == "the models' own scaling 'global' cannot be an other scaling too"
    with pytest.raises(ConfigError) as err:
        BacktestConfig(scalings=("local",))
    assert str(err.value) == "unknown scaling 'local'; valid scalings: global, volatility"


def test_closes_only_scores_the_range_or_returns_models_without_ranges_beside_models_of_closes(prices, tmp_path):
    config = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), epoch_steps=5, closes_only=True)
    model = tiny_config(horizon=2, n_features=2, scaling="volatility", variance_source="range_or_returns")
    backtest = run_backtest(prices, ("returns", "range"), model, FAST, config, "bundled")
    report = backtest.to_json()
    models = {"latent", "ar", "latent_unranged", "ar_unranged", "latent_closes", "ar_closes"}
    assert models <= set(report["pooled"]) and not report["failures"]
    # the same trained model, read without its ranges: other forecasts, as many
    bars, unranged = report["pooled"]["latent"]["h1"], report["pooled"]["latent_unranged"]["h1"]
    assert bars["pinball"] != unranged["pinball"] and bars["count"] == unranged["count"]
    pairs = [(t["horizon"], t["a"], t["b"]) for t in report["diebold_mariano"]]
    for mode in ("ar", "latent"):
        assert (1, mode, f"{mode}_closes") in pairs and (1, f"{mode}_unranged", f"{mode}_closes") in pairs
    write_report(backtest, tmp_path)
    text = (tmp_path / "backtest.md").read_text()
    assert "| 1 | latent, ranges not sent | latent, model of closes |" in text
    assert "Each model also read with every range removed, and beside them models of closes" in text
    with pytest.raises(ConfigError) as err:
        run_backtest(prices, ("returns", "range"), tiny_config(horizon=2, n_features=2), FAST, config, "bundled")
    assert str(err.value) == ("closes-only scoring removes ranges: it needs models of variance_source range_or_returns")


def test_models_with_variance_scales_are_tested_against_each_mode_without_them(prices):
    config = BacktestConfig(folds=1, test_days=40, validation_days=40, seeds=(0,), epoch_steps=5)
    model = tiny_config(horizon=2, scaling="volatility", variance_scales=(0.5, 0.8))
    report = run_backtest(prices, ("returns",), model, FAST, config, "bundled").to_json()
    assert {"latent_onevariance", "ar_onevariance"} <= set(report["pooled"])
    # the same seed and data without the scales: other forecasts
    assert report["pooled"]["latent"]["h1"]["pinball"] != report["pooled"]["latent_onevariance"]["h1"]["pinball"]
    pairs = [(t["horizon"], t["a"], t["b"]) for t in report["diebold_mariano"]]
    assert pairs[-2:] == [(2, "ar", "ar_onevariance"), (2, "latent", "latent_onevariance")]
    assert report["diebold_mariano"][-1]["verdict"].count("latent, no variance scales") == 1
    assert report["config"]["model"]["variance_scales"] == [0.5, 0.8]


def test_each_mode_without_scales_has_nothing_to_mix_and_other_scalings_have_no_scales(prices):
    model = tiny_config(scaling="volatility", variance_scales=(0.5, 0.8), quantile_scale="mix")
    trials = fold_trials(make_folds(prices, SMALL)[0], model, FAST, (0,), ("global",))
    configs = {t.method: t.model_config for t in trials}
    assert sorted(configs) == ["ar", "ar_global", "ar_onevariance", "latent", "latent_global", "latent_onevariance"]
    assert configs["latent"].variance_scales == (0.5, 0.8) and configs["latent"].quantile_scale == "mix"
    for method in ("latent_onevariance", "ar_global"):
        assert configs[method].variance_scales == () and configs[method].quantile_scale == "main"
