"""Streaming observations through a Predictor equals one call over the history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import sources
from data.features import Scaler, build_series
from latentcast.errors import DataError, StateError
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from models.series import MAX_PRICE, MIN_PRICE, Observation, SeriesState, Stepped, StoredStep
from tests.factories import real_bars

FEATURES = {1: ("returns",), 3: ("returns", "range", "volume")}


def predictor(mode: str, cell: str = "GRU", n_features: int = 3, window: int = 12) -> Predictor:
    torch.manual_seed(3)
    config = ModelConfig(
        mode=mode, cell=cell, n_features=n_features, conv_channels=8, hidden_size=16, horizon=3, window=window
    )
    prices = sources.bundled(["IBM"])
    [series] = build_series(prices, FEATURES[n_features], horizon=3)
    scaler = Scaler.fit(series.features[:1000], FEATURES[n_features])
    return Predictor(Forecaster(config), scaler, version="test")


def observations(n: int, start: int = 0) -> list[Observation]:
    return real_bars("IBM", n, start)


@pytest.mark.parametrize(("mode", "cell"), [("latent", "GRU"), ("latent", "LSTM"), ("ar", "RNN"), ("ar", "GRU")])
def test_one_observation_per_call_equals_the_whole_history(mode, cell):
    p = predictor(mode, cell)
    history = observations(200)
    whole = p.forecast_history(history)
    state = SeriesState()
    for obs in history:
        state = p.state_from_bytes(p.state_to_bytes(p.advance(state, [obs])))
    streamed = p.forecast(state)
    assert whole is not None and streamed is not None
    assert streamed.as_of_seq == whole.as_of_seq == 199
    np.testing.assert_allclose(streamed.log_return, whole.log_return, atol=1e-6)
    np.testing.assert_allclose(streamed.price, whole.price, rtol=1e-6)


def test_forecast_is_quantiles_of_cumulative_returns_and_prices():
    p = predictor("latent")
    history = observations(30)
    forecast = p.forecast_history(history)
    assert forecast is not None
    assert forecast.horizons == [1, 2, 3] and forecast.quantiles == [0.1, 0.5, 0.9]
    log_return = np.array(forecast.log_return)
    assert log_return.shape == (3, 3) and (np.diff(log_return, axis=1) > 0).all()
    np.testing.assert_allclose(forecast.price, history[-1].close * np.exp(log_return))


def test_too_little_history_gives_no_forecast_yet():
    latent, ar = predictor("latent"), predictor("ar", window=12)
    assert latent.min_observations == 2 and ar.min_observations == 13
    assert latent.forecast_history(observations(1)) is None
    assert latent.forecast_history(observations(2)) is not None
    assert ar.forecast_history(observations(12)) is None
    assert ar.forecast_history(observations(13)) is not None


def test_advance_does_not_change_the_state_it_is_given():
    p = predictor("latent")
    state = p.advance(SeriesState(), observations(10))
    blob = p.state_to_bytes(state)
    p.advance(state, observations(5, start=10))
    assert p.state_to_bytes(state) == blob


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (
            Observation(close=float("nan"), high=1, low=1, volume=1),
            "observation 7: close is nan; values must be finite",
        ),
        (Observation(close=-2.0, high=1, low=1, volume=1), "observation 7: close is -2.0; prices must be positive"),
        (
            Observation(close=2.0, high=1, low=1),
            "observation 7: volume is missing; this model needs close, high, low, volume",
        ),
        (Observation(close=2.0, high=1, low=1, volume=-1), "observation 7: volume is -1; volume must not be negative"),
        (Observation(close=2.0, high=1, low=3, volume=1), "observation 7: high 1 is below low 3"),
        (
            Observation(close=2.0, high=float("inf"), low=3, volume=1),
            "observation 7: high is inf; values must be finite",
        ),
    ],
)
def test_bad_observations_are_refused_by_seq_before_anything_is_applied(obs, message):
    p = predictor("latent")
    state = p.advance(SeriesState(), observations(5))
    batch = [*observations(2, start=5), obs]
    with pytest.raises(DataError) as err:
        p.advance(state, batch)
    assert str(err.value) == message
    assert err.value.details == {"seq": 7}


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (Observation(close=2.0, volume=-1.0), "observation 2: volume is -1.0; volume must not be negative"),
        (Observation(close=2.0, open=float("nan")), "observation 2: open is nan; values must be finite"),
        (Observation(close=2.0, high=1.0, low=3.0), "observation 2: high 1.0 is below low 3.0"),
        (Observation(close=2e15), "observation 2: close is 2000000000000000.0; prices must be at most 1e+15"),
        (Observation(close=2.0, low=1e16), "observation 2: low is 1e+16; prices must be at most 1e+15"),
    ],
)
def test_a_close_only_model_checks_the_values_it_does_not_read_too(obs, message):
    p = predictor("latent", n_features=1)
    with pytest.raises(DataError) as err:
        p.forecast_history([Observation(close=10.0), Observation(close=10.5), obs])
    assert str(err.value) == message


def test_the_largest_price_allowed_gives_a_finite_forecast():
    p = predictor("latent", n_features=1)
    forecast = p.forecast_history(
        [Observation(close=MAX_PRICE), Observation(close=MIN_PRICE), Observation(close=MAX_PRICE)]
    )
    assert forecast is not None and np.isfinite(forecast.price).all()


def test_a_price_under_the_smallest_allowed_is_refused():
    p = predictor("latent", n_features=1)
    with pytest.raises(DataError, match=r"^observation 1: close is 5e-324; prices must be at least 1e-12$"):
        p.forecast_history([Observation(close=10.0), Observation(close=5e-324)])


def test_close_only_model_accepts_bare_prices():
    p = predictor("latent", n_features=1)
    assert p.fields == ("close",)
    assert p.forecast_history([Observation(close=c) for c in (10.0, 10.5, 10.2)]) is not None


def test_state_bytes_from_another_mode_are_refused():
    latent, ar = predictor("latent"), predictor("ar")
    blob = latent.state_to_bytes(latent.advance(SeriesState(), observations(5)))
    with pytest.raises(StateError) as err:
        ar.state_from_bytes(blob)
    assert str(err.value) == "series state is for mode latent, model is ar"
    with pytest.raises(StateError) as err:
        latent.state_from_bytes(b"junk")
    assert str(err.value) == "not a series state: bad or missing header"


@pytest.mark.parametrize(("mode", "cell"), [("latent", "GRU"), ("latent", "LSTM"), ("ar", "GRU")])
def test_advance_many_equals_one_advance_per_stream(mode, cell):
    p = predictor(mode, cell)
    bars = observations(80)
    # streams at different points: fresh, primed only, short of a window, long; batches of 0 to 3 bars
    starts = [0, 1, 5, 13, 40, 41, 60]
    states = [p.advance(SeriesState(), bars[:n]) for n in starts]
    batches = [bars[n : n + size] for n, size in zip(starts, [1, 1, 1, 3, 1, 0, 2], strict=True)]
    many = p.advance_many(states, batches)
    for state, batch, got in zip(states, batches, many, strict=True):
        alone = p.advance(state, batch)
        assert (got.n_obs, got.last_close, got.last_volume) == (alone.n_obs, alone.last_close, alone.last_volume)
        if alone.output is None:
            assert got.output is None
        else:
            assert got.output is not None
            np.testing.assert_allclose(got.output, alone.output, atol=1e-6)
        assert len(p.state_to_bytes(got)) == len(p.state_to_bytes(alone))
        more = bars[got.n_obs : got.n_obs + 2]
        after_got, after_alone = p.forecast(p.advance(got, more)), p.forecast(p.advance(alone, more))
        if after_alone is not None:
            assert after_got is not None
            np.testing.assert_allclose(after_got.log_return, after_alone.log_return, atol=1e-6)


def test_advance_many_refuses_every_batch_when_one_is_bad():
    p = predictor("latent")
    state = p.advance(SeriesState(), observations(5))
    bad = Observation(close=-1.0, high=1, low=1, volume=1)
    with pytest.raises(DataError) as err:
        p.advance_many([state, state], [observations(1, start=5), [bad]])
    assert str(err.value) == "observation 5: close is -1.0; prices must be positive"


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_a_batch_of_stored_steps_answers_each_stream_on_its_own(mode):
    p, other = predictor(mode), predictor("ar" if mode == "latent" else "latent")
    bars = observations(40)
    state = p.advance(SeriesState(), bars[:20])
    blob = p.state_to_bytes(state)
    bad = Observation(close=-1.0, high=1, low=1, volume=1)
    steps = [
        StoredStep(blob, 20, bars[20:21], 20, 1),  # the usual append
        StoredStep(blob, 20, bars[18:23], 18, 3),  # an overlap: its last three are new
        StoredStep(blob, 20, [bars[20], bad], 20, 2),  # refused whole, by the seq of its bad observation
        StoredStep(blob, 20, [bad], 25, 0),  # nothing new: validated only
        StoredStep(blob, 20, bars[21:22], 25, 0),  # nothing new and valid
        StoredStep(blob, 21, bars[21:22], 21, 1),  # the state holds 20 observations, not 21
        StoredStep(other.state_to_bytes(other.advance(SeriesState(), bars[:20])), 20, bars[20:21], 20, 1),
    ]
    usual, overlap, refused, checked, nothing, miscounted, foreign = p.advance_stored(steps)
    for stepped, new in [(usual, bars[20:21]), (overlap, bars[20:23])]:
        want = p.advance(state, new)
        assert isinstance(stepped, Stepped) and (stepped.n_obs, stepped.last_close) == (want.n_obs, want.last_close)
        assert stepped.forecast is not None and stepped.output is not None and want.output is not None
        np.testing.assert_allclose(stepped.output, want.output, atol=1e-5)
        assert stepped.forecast == p.forecast(p.state_from_bytes(stepped.state))
    assert isinstance(refused, DataError) and str(refused) == "observation 21: close is -1.0; prices must be positive"
    assert isinstance(checked, DataError) and str(checked) == "observation 25: close is -1.0; prices must be positive"
    assert nothing is None
    assert isinstance(miscounted, StateError) and str(miscounted) == "state holds 20 observations, next_seq is 21"
    assert isinstance(foreign, StateError) and str(foreign).startswith("series state is for mode")
