from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from data import sources
from data.features import through_end
from latentcast.errors import ConfigError, DataError
from tests.factories import tiny_config
from training.batches import batches_for
from training.config import TrainConfig
from training.dataset import TrainingData
from training.distributed import Shard
from training.pipeline import fit, train_and_register
from training.registry import Registry

FAST = TrainConfig(epochs=2, streams=4, bptt=25, batch_size=32, windows_per_epoch=128, threads=1, progress=False)


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["IBM", "MSFT"], start="2005-01-01", end="2009-01-01")


def test_train_and_register_promotes_only_the_first_unless_asked(tmp_path, prices):
    registry = Registry(tmp_path)
    first = train_and_register(registry, prices, "bundled", tiny_config("latent"), FAST)
    assert registry.champion("latent") == first.version
    second = train_and_register(registry, prices, "bundled", tiny_config("latent"), FAST)
    assert registry.champion("latent") == first.version
    third = train_and_register(registry, prices, "bundled", tiny_config("latent"), FAST, promote=True)
    assert registry.champion("latent") == third.version
    assert [v.version for v in registry.versions("latent")] == [first.version, second.version, third.version]


def test_registered_metrics_and_span_describe_the_training(tmp_path, prices):
    registry = Registry(tmp_path)
    version = train_and_register(
        registry, prices, "bundled", tiny_config("ar", n_features=2), FAST, features=("returns", "range")
    )
    metrics, span = version.metrics, version.data_span
    assert metrics["epochs_run"] == 2 and metrics["train_config"]["epochs"] == 2
    assert metrics["val_loss"] > 0
    test = metrics["test"]
    assert test["first"] >= span["test_start"] and test["last"] <= span["last"]
    assert 0 < test["h1"]["mae"] < 0.1 and 0 <= test["h1"]["coverage"] <= 1
    assert test["h3"]["count"] > 0
    assert span["tickers"] == ["IBM", "MSFT"] and span["features"] == ["returns", "range"]
    assert span["source"] == "bundled" and span["first"] >= "2005-01-01"
    assert registry.predictor(version.version).fields == ("close", "high", "low")


def test_a_refit_logs_its_epochs_not_a_validation_it_did_not_run(prices, caplog):
    data = TrainingData.prepare(prices, ("returns",), tiny_config("latent").horizon, split=through_end)
    with caplog.at_level("INFO", logger="training.pipeline"):
        fit(tiny_config("latent"), data, FAST, validate=False)
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("refit latent through the newest price: 2 epochs, ")
    assert "nan" not in caplog.messages[0] and "validation" not in caplog.messages[0]


def test_a_parkinson_variance_trains_on_bars_and_needs_the_range_second(tmp_path, prices):
    config = tiny_config("latent", n_features=2, scaling="volatility", variance_source="parkinson")
    version = train_and_register(Registry(tmp_path), prices, "bundled", config, FAST, features=("returns", "range"))
    assert version.metrics["val_loss"] > 0 and 0 < version.metrics["test"]["h1"]["coverage"] <= 1
    saved = Registry(tmp_path).predictor(version.version)
    assert saved.config.variance_source == "parkinson" and saved.fields == ("close", "high", "low")
    data = TrainingData.prepare(prices, ("returns", "volume"), config.horizon)
    with pytest.raises(ConfigError) as err:
        fit(config, data, FAST)
    assert (
        str(err.value)
        == "variance_source 'parkinson' reads the range as second feature, the data has ['returns', 'volume']"
    )


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_a_range_or_returns_variance_fits_its_ratio_on_training_rows_and_learns_from_closes_too(tmp_path, prices, mode):
    config = tiny_config(mode, n_features=2, scaling="volatility", variance_source="range_or_returns")
    data = TrainingData.prepare(prices, ("returns", "range"), config.horizon)
    trained = fit(config, data, FAST)
    rows = np.concatenate([s.features[: data.split.bounds(s)[0]] for s in data.series])
    expected = np.mean(rows[:, 0] ** 2) / np.mean(rows[:, 1] ** 2 / (4 * np.log(2)))
    assert trained.model.config.range_ratio == pytest.approx(expected, rel=1e-5)
    assert 1.0 < expected < 3.0  # the range misses the overnight move: it reads low
    # an epoch reads about half its pieces or windows as closes only, drawn from its rng; validation both ways
    source = batches_for(trained.model.config, data, FAST)
    unranged = [np.isnan(r.x[:, 1]).all() for r in source.valid_rows]  # type: ignore[attr-defined]
    assert unranged == [False, True] * len(data.series)

    def drops(seed: int) -> torch.Tensor:
        """Per epoch, which pieces or windows of its first batch are read as closes only."""
        rng = np.random.default_rng(seed)
        return torch.stack([next(iter(source.epoch(rng))).x[:, :, 1].isnan().all(dim=1) for _ in range(12)])

    first = next(iter(source.epoch(np.random.default_rng(0)))).x[:, :, 1]
    assert torch.equal(first.isnan().any(dim=1), first.isnan().all(dim=1))  # a piece or window whole, or not at all
    assert torch.equal(drops(0), drops(0)) and not torch.equal(drops(0), drops(1))
    assert 0.3 < drops(0).float().mean().item() < 0.7
    # the ratio is saved with the model, and serving reads it
    version = train_and_register(Registry(tmp_path), prices, "bundled", config, FAST, features=("returns", "range"))
    saved = Registry(tmp_path).predictor(version.version)
    assert saved.config.range_ratio == pytest.approx(expected, rel=1e-5)
    assert saved.fields == ("close", "high", "low") and saved.required == ("close",)


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_the_shards_of_an_epoch_drop_the_ranges_the_whole_epoch_drops(prices, mode):
    config = tiny_config(mode, n_features=2, scaling="volatility", variance_source="range_or_returns")
    data = TrainingData.prepare(prices, ("returns", "range"), config.horizon)

    def first(shard: Shard) -> torch.Tensor:
        """Which rows of the epoch's first batch this shard reads as closes only, its rng drawn on."""
        rng = np.random.default_rng(4)
        batches = [next(iter(batches_for(config, data, FAST, shard).epoch(rng))) for _ in range(3)]
        return torch.cat([b.x[:, :, 1].isnan().all(dim=1) for b in batches])

    whole, parts = first(Shard()), [first(Shard(rank, 2)) for rank in (0, 1)]
    assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist()) and whole.any() and not whole.all()
    if mode == "latent":  # shard r reads pieces r, r + 2, ...
        assert torch.equal(parts[0], torch.cat([w[0::2] for w in whole.split(len(whole) // 3)]))


def test_a_day_without_its_range_is_refused_naming_it_unless_the_model_reads_the_range_where_sent(prices):
    holed = prices.copy()
    day = (holed["ticker"] == "IBM") & (holed["date"] == pd.Timestamp("2008-03-03"))
    assert day.sum() == 1
    holed.loc[day, "high"] = np.nan
    data = TrainingData.prepare(holed, ("returns", "range"), tiny_config("latent").horizon)
    parkinson = tiny_config("latent", n_features=2, scaling="volatility", variance_source="parkinson")
    with pytest.raises(DataError) as err:
        fit(parkinson, data, FAST)
    assert str(err.value) == (
        "IBM: no range on 2008-03-03 (its price lacks a field the feature is made from), "
        "and the model needs it on every day"
    )
    mixed = replace(parkinson, variance_source="range_or_returns")
    assert np.isfinite(fit(mixed, data, FAST).result.best_val_loss)
