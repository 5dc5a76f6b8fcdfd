from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from data import sources
from latentcast.errors import ConfigError, DataError
from tests.factories import tiny_config
from training import distributed
from training.batches import Batch, batches_for
from training.config import TrainConfig
from training.dataset import TrainingData
from training.distributed import Shard, World
from training.pipeline import fit

CONFIG = TrainConfig(
    epochs=2, streams=4, bptt=25, burn_in=9, batch_size=32, windows_per_epoch=192, threads=1, progress=False
)
# an ar epoch whose last batch holds one window: fewer than the processes
ODD = TrainConfig(**{**CONFIG.to_dict(), "windows_per_epoch": 193})


def prices_data() -> TrainingData:
    prices = sources.load("bundled", tickers=["AAPL", "IBM", "MSFT"], start="2004-01-01", end="2007-01-01")
    return TrainingData.prepare(prices, ("returns", "range"), horizon=3)


def fit_rank(folder: Path, mode: str, cell: str, exchange: str) -> None:
    """One of the processes the test spawns: trains its shard and saves what it ended with.

    ``exchange``: ``gather`` as set up (the tiny model's gradients are one small
    bucket), or ``all-reduce``, as for a bucket over ``distributed.GATHERED``.
    """
    if exchange == "all-reduce":
        distributed.GATHERED = 0
    gathers = []
    all_gather_single = distributed.dist.all_gather_single

    def counted(*args: Any, **kwargs: Any) -> Any:
        gathers.append(args)
        return all_gather_single(*args, **kwargs)

    distributed.dist.all_gather_single = counted
    world = distributed.join("cpu")
    try:
        trained = fit(tiny_config(mode, cell=cell, n_features=2), prices_data(), ODD, world=world)
        result = {"val_loss": trained.result.best_val_loss, "rows": trained.result.rows, "gathers": len(gathers)}
        torch.save({"weights": trained.model.state_dict(), **result}, folder / f"rank{world.rank}.pt")
    finally:
        distributed.leave()


@pytest.mark.slow
# the LSTM too: on the CPU torch runs it through oneDNN's fused kernels, not the GRU's one op at a time
@pytest.mark.parametrize(
    ("mode", "cell", "exchange"),
    [("ar", "GRU", "gather"), ("latent", "GRU", "gather"), ("latent", "LSTM", "gather"), ("ar", "GRU", "all-reduce")],
)
def test_two_processes_end_with_the_weights_of_one_on_the_same_global_batches(tmp_path, mode, cell, exchange):
    distributed.spawn(2, fit_rank, tmp_path, mode, cell, exchange)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    gathers = [rank["gathers"] for rank in ranks]  # every step's gradients: one all-gather, or none
    assert gathers[0] == gathers[1] and (gathers[0] > 0) == (exchange == "gather")
    for name, value in ranks[0]["weights"].items():  # the processes agree exactly, not only within 1e-5
        assert torch.equal(ranks[1]["weights"][name], value), name
    alone = fit(tiny_config(mode, cell=cell, n_features=2), prices_data(), ODD)
    expected = alone.model.state_dict()
    for rank in ranks:
        assert rank["weights"].keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(rank["weights"][name], value, rtol=0, atol=1e-5, msg=name)
        assert rank["val_loss"] == pytest.approx(alone.result.best_val_loss, abs=1e-6)
        assert rank["rows"] == alone.result.rows
    untrained = fit(
        tiny_config(mode, cell=cell, n_features=2), prices_data(), TrainConfig(**{**ODD.to_dict(), "epochs": 1})
    )
    changed = max(float((expected[k] - v).abs().max()) for k, v in untrained.model.state_dict().items())
    assert changed > 1e-3  # the second epoch moved the weights: the comparison above is not of untouched weights


@pytest.mark.parametrize("mode", ["ar", "latent"])
def test_the_shards_of_a_batch_are_the_whole_batch(mode):
    data, config = prices_data(), tiny_config(mode, n_features=2)
    whole = list(batches_for(config, data, CONFIG).epoch(np.random.default_rng(3)))
    parts = [list(batches_for(config, data, CONFIG, Shard(r, 2)).epoch(np.random.default_rng(3))) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for batch, first, second in zip(whole, *parts, strict=True):
        assert first.reset == second.reset == batch.reset
        # every shard knows the count of the whole batch, the divisor of the step's loss
        assert first.targets == second.targets == batch.targets == int(torch.isfinite(batch.y).sum())
        shared_x, shared_y = torch.cat([first.x, second.x]), torch.cat([first.y, second.y])
        assert shared_x.shape == batch.x.shape
        # the same rows, in another order: compare them sorted by their bytes
        order = sorted(range(len(batch.x)), key=lambda i: batch.x[i].numpy().tobytes())
        shared_order = sorted(range(len(shared_x)), key=lambda i: shared_x[i].numpy().tobytes())
        torch.testing.assert_close(shared_x[shared_order], batch.x[order])
        torch.testing.assert_close(shared_y[shared_order], batch.y[order], equal_nan=True)


def test_a_last_batch_of_fewer_windows_than_processes_is_kept_and_the_others_read_a_window_without_loss():
    data, config = prices_data(), tiny_config("ar", n_features=2)
    whole = list(batches_for(config, data, ODD).epoch(np.random.default_rng(3)))
    parts = [list(batches_for(config, data, ODD, Shard(r, 2)).epoch(np.random.default_rng(3))) for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 7
    assert len(whole[-1].x) == 1

    def scored(batch: Batch) -> int:
        return int(torch.isfinite(batch.y).any(-1).sum())

    assert [scored(p[-1]) for p in parts] == [1, 0]  # the window, and one that carries no loss
    assert parts[0][-1].targets == parts[1][-1].targets == int(torch.isfinite(whole[-1].y).sum()) > 0
    assert len(parts[1][-1].x) == 1
    torch.testing.assert_close(parts[0][-1].x, whole[-1].x)
    assert sum(scored(b) for p in parts for b in p) == sum(scored(b) for b in whole) == 193


def test_validation_is_shared_by_ticker():
    data, config = prices_data(), tiny_config("ar", n_features=2)
    whole = sum(int(torch.isfinite(b.y).any(-1).sum()) for b in batches_for(config, data, CONFIG).validation())
    parts = [
        sum(int(torch.isfinite(b.y).any(-1).sum()) for b in batches_for(config, data, CONFIG, Shard(r, 2)).validation())
        for r in range(2)
    ]
    assert min(parts) > 0
    assert sum(parts) == whole


def test_more_processes_than_streams_or_windows_of_a_batch_is_refused():
    data = prices_data()
    few = TrainConfig(**{**CONFIG.to_dict(), "batch_size": 2, "streams": 1})
    with pytest.raises(DataError, match="batches of 2 windows cannot be shared by 3 processes"):
        batches_for(tiny_config("ar", n_features=2), data, few, Shard(0, 3))
    with pytest.raises(DataError, match="3 streams cannot be shared by 4 processes"):
        batches_for(tiny_config("latent", n_features=2), data, few, Shard(0, 4))


def test_shard_and_device_names_are_checked():
    assert Shard(1, 3).take(list(range(7))) == [1, 4]
    with pytest.raises(ConfigError, match=r"shard rank 2 is outside 0\.\.1"):
        Shard(2, 2)
    with pytest.raises(ConfigError, match="device must be one of cpu, cuda, auto, got 'tpu'"):
        distributed.resolve_device("tpu")
    assert distributed.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert World().wrap(torch.nn.Linear(1, 1)).__class__ is torch.nn.Linear  # one process: not wrapped
    assert World().sum([1, 2.5]) == [1.0, 2.5]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scaling", ["global", "volatility"])
def test_a_model_trained_on_cuda_comes_back_on_the_cpu(scaling):
    config = tiny_config("latent", n_features=2, scaling=scaling)
    one_epoch = TrainConfig(**{**CONFIG.to_dict(), "epochs": 1})
    trained = fit(config, prices_data(), one_epoch, world=World(device=torch.device("cuda")))
    assert {p.device.type for p in trained.model.parameters()} == {"cpu"}
    assert trained.result.best_val_loss > 0
