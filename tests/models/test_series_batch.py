"""Many streams' states as arrays: read, stepped, forecast and written as each stream alone would be."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import torch

from data import sources
from data.features import Scaler, build_series
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from models.series import Observation, SeriesState, Stepped, StoredStep
from models.series_batch import (
    SeriesBatch,
    _layout,
    _records_from_bytes,
    _records_to_bytes,
    batch_from_bytes,
    batch_to_bytes,
)
from tests.factories import FEATURES, real_bars

CASES = [
    ("GRU", 1, "global"),
    ("LSTM", 3, "global"),
    ("RNN", 2, "volatility"),
    ("GRU", 3, "volatility"),
]


def predictor(
    cell: str, n_features: int, scaling: str, mode: str = "latent", offsets: bool = False, **fields: Any
) -> Predictor:
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
        **fields,
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


# the model kinds a lone stream is read and written for: closes; bars with their range and volume; a model whose
# variance reads the range where sent, streams of bars and of closes only; variances at several scales
LONE: dict[str, tuple[tuple[str, int, str], dict[str, Any]]] = {
    "closes": (("GRU", 1, "global"), {}),
    "bars": (("LSTM", 3, "volatility"), {}),
    "range_or_returns": (("GRU", 2, "volatility"), {"variance_source": "range_or_returns"}),
    "variance_scales": (("RNN", 1, "volatility"), {"variance_scales": (0.5, 0.9), "quantile_scale": "mix"}),
}


def same_batch(got: SeriesBatch, want: SeriesBatch) -> None:
    """The same arrays: dtypes, shapes, bytes, and writable alike."""
    for name in ("n_obs", "last_close", "last_volume", "output", "packed"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a.dtype, a.shape, a.flags.writeable) == (b.dtype, b.shape, b.flags.writeable), name
        assert a.tobytes() == b.tobytes(), name


def lone_states(p: Predictor, ranges: bool) -> list[bytes]:
    """Live states of ``p`` after real bars (without their high and low unless ``ranges``) of a few lengths."""
    bars = real_bars("IBM", 40, start=200)
    if not ranges:
        bars = [Observation(bar.close, volume=bar.volume) for bar in bars]
    return [p.state_to_bytes(p.advance(SeriesState(), bars[:count])) for count in (2, 3, 40)]


@pytest.mark.parametrize("kind", LONE)
def test_a_lone_stream_is_read_and_written_as_the_record_array_reads_and_writes_it(kind):
    args, fields = LONE[kind]
    p = predictor(*args, **fields)
    for ranges in (True, False) if kind == "range_or_returns" else (True,):
        for blob in lone_states(p, ranges):
            batch, read = batch_from_bytes([blob], p.config)
            want, want_read = _records_from_bytes([blob], p.config)
            assert read == want_read == [0]
            same_batch(batch, want)
            assert batch_to_bytes(batch, p.config) == _records_to_bytes(batch, p.config) == [blob]
            # an output in float64 is cast by the record array, as before
            wide = batch.output.astype(np.float64)
            assert batch_to_bytes(
                SeriesBatch(batch.n_obs, batch.last_close, batch.last_volume, wide, batch.packed), p.config
            ) == [blob]


def test_a_lone_state_that_is_not_a_live_stream_of_the_model_is_left_out_as_among_many():
    closes = [Observation(bar.close) for bar in real_bars("IBM", 30)]
    p = predictor("GRU", 1, "global")
    live = p.state_to_bytes(p.advance(SeriesState(), closes))
    fields = _layout(p.config)[0].fields
    assert fields is not None

    def changed(name: str, value: bytes) -> bytes:
        at = fields[name][1]
        return live[:at] + value + live[at + len(value) :]

    others = [predictor("GRU", 1, "volatility"), predictor("RNN", 1, "global"), predictor("GRU", 1, "global", "ar")]
    refused = {
        "shorter": live[:-1],
        "longer": live + b"\0",
        "NaN close": changed("last_close", struct.pack("<d", float("nan"))),
        "magic": b"LCSS" + live[4:],
        "format": changed("head", live[:4] + bytes([live[4] + 1])),
        "no output": changed("flags", b"\0"),
        "stream header": changed("stream_head", bytes([live[fields["stream_head"][1]] ^ 1])),
        "nothing yet": p.state_to_bytes(SeriesState()),
        "one close": p.state_to_bytes(p.advance(SeriesState(), closes[:1])),
        **{f"model {i}": o.state_to_bytes(o.advance(SeriesState(), closes)) for i, o in enumerate(others)},
    }
    for name, blob in refused.items():
        batch, read = batch_from_bytes([blob], p.config)
        want, want_read = _records_from_bytes([blob], p.config)
        assert (len(batch), read) == (0, want_read) == (0, []), name
        same_batch(batch, want)
