"""Many streams' states as arrays: read, stepped, forecast and written as each stream alone would be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import sources
from data.features import Scaler, build_series
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from models.series import Observation, SeriesState, Stepped, StoredStep
from models.series_batch import batch_from_bytes, batch_to_bytes
from tests.factories import FEATURES, real_bars

CASES = [
    ("GRU", 1, "global"),
    ("LSTM", 3, "global"),
    ("RNN", 2, "volatility"),
    ("GRU", 3, "volatility"),
]


def predictor(cell: str, n_features: int, scaling: str, mode: str = "latent", offsets: bool = False) -> Predictor:
    torch.manual_seed(5)
    config = ModelConfig(
        mode=mode,
        cell=cell,
        n_features=n_features,
        conv_channels=4,
        hidden_size=8,
        num_layers=2,
        horizon=3,
        window=6,
        scaling=scaling,
    )
    [series] = build_series(sources.bundled(["IBM"]), FEATURES[n_features], horizon=3)
    scaler = Scaler.fit(series.features[:1000], FEATURES[n_features])
    shape = (config.horizon, len(config.quantiles))
    shift = np.linspace(-0.4, 0.6, shape[0] * shape[1]).reshape(shape) if offsets else None
    return Predictor(Forecaster(config), scaler, version="test", offsets=shift)


def live_states(p: Predictor, count: int) -> list[SeriesState]:
    """``count`` streams of real bars, each of its own length and start (a live state each)."""
    return [p.advance(SeriesState(), real_bars("IBM", 2 + 3 * k, start=17 * k)) for k in range(count)]


def same_state(got: SeriesState, want: SeriesState) -> None:
    assert (got.n_obs, got.last_close, got.last_volume, got.window) == (
        want.n_obs,
        want.last_close,
        want.last_volume,
        None,
    )
    assert got.output is not None and want.output is not None and want.stream is not None
    np.testing.assert_array_equal(got.output, want.output)
    assert got.stream is not None and got.stream.packed().tobytes() == want.stream.packed().tobytes()


@pytest.mark.parametrize(("cell", "n_features", "scaling"), CASES)
def test_states_read_and_written_together_are_those_read_and_written_one_by_one(cell, n_features, scaling):
    p = predictor(cell, n_features, scaling)
    states = live_states(p, 7)
    blobs = [p.state_to_bytes(s) for s in states]
    batch, read = batch_from_bytes(blobs, p.config)
    assert read == list(range(7))
    for i, blob in enumerate(blobs):
        same_state(batch.state(i, p.config), p.state_from_bytes(blob))
    assert batch_to_bytes(batch, p.config) == blobs


def test_states_that_are_not_live_streams_of_the_model_are_left_out():
    closes = [bar.close for bar in real_bars("IBM", 30)]
    p = predictor("GRU", 1, "global")
    other = predictor("GRU", 1, "volatility")
    ar = predictor("GRU", 1, "global", mode="ar")
    live = p.state_to_bytes(p.advance(SeriesState(), [Observation(c) for c in closes[:30]]))
    blobs = [
        p.state_to_bytes(SeriesState()),  # nothing yet
        p.state_to_bytes(p.advance(SeriesState(), [Observation(closes[0])])),  # one close, no return yet
        live,
        other.state_to_bytes(other.advance(SeriesState(), [Observation(c) for c in closes[:30]])),
        ar.state_to_bytes(ar.advance(SeriesState(), [Observation(c) for c in closes[:30]])),
        b"LCSS" + live[4:],  # another magic of the same length
        live[:-1],
        live,
    ]
    batch, read = batch_from_bytes(blobs, p.config)
    assert read == [2, 7] and len(batch) == 2
    assert batch_to_bytes(batch, p.config) == [live, live]
    empty, none = batch_from_bytes([], p.config)
    assert (len(empty), none) == (0, [])


@pytest.mark.parametrize(("cell", "n_features", "scaling"), CASES)
def test_streams_stepped_and_forecast_together_equal_each_alone(cell, n_features, scaling):
    p = predictor(cell, n_features, scaling, offsets=True)
    states = live_states(p, 6)
    bars = real_bars("IBM", 6, start=300)
    steps = [StoredStep(p.state_to_bytes(s), s.n_obs, [bar], s.n_obs, 1) for s, bar in zip(states, bars, strict=True)]
    together = p.advance_stored(steps)
    # each alone through the torch forward: the kernel's arithmetic, rounded apart in float32
    for got, state, bar in zip(together, states, bars, strict=True):
        assert isinstance(got, Stepped)
        want, read = p.advance(state, [bar]), p.state_from_bytes(got.state)
        assert (got.n_obs, got.last_close) == (read.n_obs, read.last_close)
        assert (read.n_obs, read.last_close, read.last_volume) == (want.n_obs, want.last_close, want.last_volume)
        assert read.stream is not None and want.stream is not None
        assert read.output is not None and want.output is not None and got.output is not None
        np.testing.assert_array_equal(got.output, read.output)
        np.testing.assert_allclose(read.stream.packed(), want.stream.packed(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(read.output, want.output, rtol=1e-5, atol=1e-6)
        assert got.forecast == p.forecast(read)  # made for all at once, as for each alone
