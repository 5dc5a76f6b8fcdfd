from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from data import sources
from latentcast.errors import DataError
from models.forecaster import Forecaster
from tests.factories import tiny_config
from training.batches import batches_for, first_scored_row
from training.config import TrainConfig
from training.dataset import TrainingData
from training.loop import train

ONE_EPOCH = TrainConfig(epochs=1, streams=16, bptt=50, burn_in=20, batch_size=256, threads=1, progress=False)


def copies(count: int, rows: int | None = None) -> pd.DataFrame:
    """``count`` tickers: the bundled four again and again, renamed, each copy's dates shifted.

    ``rows``: only the newest rows of each copy, to keep many tickers quick to train.
    """
    bundled = sources.bundled()
    names = sorted(bundled["ticker"].unique())
    frames = []
    for k in range(count):
        frame = bundled[bundled["ticker"] == names[k % len(names)]].copy()
        frame["ticker"] = f"{names[k % len(names)]}{k}"
        frame["date"] = frame["date"] + pd.Timedelta(days=k)
        frames.append(frame if rows is None else frame.iloc[-rows:])
    return pd.concat(frames, ignore_index=True)


def non_burn_in_rows(data: TrainingData, first_row: int) -> int:
    """Training rows of every ticker after its burn-in: the rows either mode should score."""
    return sum(max(data.split.bounds(s)[0] - first_row, 0) for s in data.series)


def scored_targets(source, rng: np.random.Generator) -> np.ndarray:
    """The finite targets of one epoch's batches, one row per scored training row."""
    rows = [batch.y[torch.isfinite(batch.y).any(dim=-1)] for batch in source.epoch(rng)]
    return torch.cat(rows).numpy()


@pytest.mark.parametrize(("count", "rows"), [(24, None), (100, 700)])
def test_both_modes_score_every_training_row_after_the_burn_in(count, rows):
    data = TrainingData.prepare(copies(count, rows), ("returns",), horizon=3)
    first_row = first_scored_row(tiny_config("latent"), ONE_EPOCH)
    expected = non_burn_in_rows(data, first_row)
    counts = {}
    for mode in ("latent", "ar"):
        config = tiny_config(mode)
        torch.manual_seed(0)
        model = Forecaster(config)
        source = batches_for(config, data, ONE_EPOCH)
        result = train(model, source, ONE_EPOCH)
        counts[mode] = result.rows
        assert result.train_rows == result.rows  # one epoch: every row once
        assert result.rows >= 0.97 * expected, (mode, result.rows, expected)
        assert result.validation_rows > 0
    assert counts["latent"] == counts["ar"]


def test_latent_streams_score_each_row_once_and_move_their_chunk_boundaries():
    data = TrainingData.prepare(copies(6), ("returns",), horizon=3)
    config = tiny_config("latent")
    source = batches_for(config, data, ONE_EPOCH)
    windows = batches_for(tiny_config("ar"), data, ONE_EPOCH)
    # the same rows as ar, each once: the multisets of their targets agree
    latent = scored_targets(source, np.random.default_rng(0))
    ar = scored_targets(windows, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(latent, axis=0), np.sort(ar, axis=0))
    first = [b.y for b in source.epoch(np.random.default_rng(1))]
    second = [b.y for b in source.epoch(np.random.default_rng(2))]
    assert not torch.equal(torch.isfinite(first[0]), torch.isfinite(second[0]))


def test_a_ticker_shorter_than_a_stream_trains_with_the_others():
    frame = copies(3)
    short = frame[frame["ticker"] == "AAPL0"].iloc[:150]
    frame = pd.concat([frame[frame["ticker"] != "AAPL0"], short], ignore_index=True)
    data = TrainingData.prepare(frame, ("returns",), horizon=3)
    config = tiny_config("latent")
    first_row = first_scored_row(config, ONE_EPOCH)
    source = batches_for(config, data, ONE_EPOCH)
    assert source.train_rows == non_burn_in_rows(data, first_row) - len(data.series)  # the last row has no target
    assert len(scored_targets(source, np.random.default_rng(0))) == source.train_rows


def test_a_single_ticker_trains():
    data = TrainingData.prepare(sources.bundled(["IBM"]), ("returns",), horizon=2)
    config = tiny_config("latent", horizon=2)
    torch.manual_seed(0)
    result = train(Forecaster(config), batches_for(config, data, ONE_EPOCH), ONE_EPOCH)
    assert result.rows == result.train_rows > 0


def test_too_short_a_history_is_refused_by_name():
    data = TrainingData.prepare(sources.bundled(["IBM"]).iloc[:25], ("returns",), horizon=2)
    with pytest.raises(DataError) as err:
        batches_for(tiny_config("latent", horizon=2), data, ONE_EPOCH)
    assert str(err.value) == "no training rows after the burn-in of 20 rows of each ticker"
