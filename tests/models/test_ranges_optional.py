"""A model whose variance reads the range where sent and the squared return where not: closes and bars alike."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data import sources
from data.features import Scaler, build_series, without_ranges
from latentcast.errors import DataError
from models.config import CELLS, ModelConfig
from models.forecaster import Forecaster
from models.kernel import StepKernel
from models.predictor import Predictor
from models.series import Observation, SeriesState, StoredStep
from models.volatility import PARKINSON, day_squares, ewma_variances, range_inputs, range_ratio, steady_weight
from tests.factories import real_bars
from tests.models.test_state import in_pieces_through_bytes
from training.evaluate import model_outputs

STEPS = 30
BARS = ("returns", "range")  # what a session of closes only or of bars sends


def mixed(
    cell: str = "GRU", layers: int = 1, kernel: int = 4, ratio: float = 1.7, scales: tuple[float, ...] = ()
) -> Forecaster:
    """A range_or_returns model; with ``scales``, variance scales too and its quantiles in a mix of them."""
    torch.manual_seed(5)
    config = ModelConfig(
        cell=cell,
        n_features=3,
        conv_channels=6,
        conv_kernel=kernel,
        hidden_size=10,
        num_layers=layers,
        horizon=4,
        scaling="volatility",
        variance_source="range_or_returns",
        range_ratio=ratio,
        variance_scales=scales,
        quantile_scale="mix" if scales else "main",
    )
    return Forecaster(config).eval()


def sessions(seed: int, length: int = STEPS) -> torch.Tensor:
    """Three streams of scaled rows: bars, closes only (ranges NaN), and a mix, one in three without a range."""
    x = torch.randn(3, length, 3, generator=torch.Generator().manual_seed(seed)) * 2
    x[..., 1] = x[..., 1].abs()
    x[1, :, 1] = float("nan")
    x[2, ::3, 1] = float("nan")
    return x


def test_the_day_reads_the_scaled_range_where_sent_and_the_squared_return_where_not():
    config = ModelConfig(n_features=2, scaling="volatility", variance_source="range_or_returns", range_ratio=2.5)
    returns = np.array([[1.5, -2.0]], np.float32)
    ranges = np.array([[0.8, np.nan]], np.float32)
    squares = day_squares(returns, ranges, config)
    assert squares.dtype == np.float32
    assert squares[0, 0] == pytest.approx(2.5 * 0.8**2 / (4 * np.log(2)), rel=1e-6) and squares[0, 1] == 4.0
    v, w = np.array([2.0], np.float32), np.array([steady_weight(config)], np.float32)
    variances, _ = ewma_variances(returns, v, w, config, ranges)
    d = config.ewma_decay
    first = d * 2.0 + (1 - d) * squares[0, 0]
    assert variances[0, 1] == pytest.approx(first, rel=1e-6)
    assert variances[0, 2] == pytest.approx(d * first + (1 - d) * 4.0, rel=1e-6)
    scaled, [sent] = range_inputs(ranges, variances[:, :-1], config)
    assert scaled[0, 0] == pytest.approx(0.8 / np.sqrt(2.0), rel=1e-6) and scaled[0, 1] == 0.0
    assert sent.tolist() == [[1.0, 0.0]]
    # a Parkinson model reads no presence column, and its ranges unscaled by the ratio
    parkinson = replace(config, variance_source="parkinson")
    assert range_inputs(ranges[:, :1], variances[:, :1], parkinson)[1] == []
    assert day_squares(returns[:, :1], ranges[:, :1], parkinson)[0, 0] == pytest.approx(0.64 * PARKINSON, rel=1e-6)


def test_the_ratio_is_the_mean_squared_return_over_the_mean_parkinson_variance_of_the_days_with_a_range():
    returns = np.array([0.02, -0.01, 0.03, 0.05])
    ranges = np.array([0.03, 0.02, np.nan, 0.04])
    expected = np.mean(returns[[0, 1, 3]] ** 2) / np.mean(ranges[[0, 1, 3]] ** 2 * float(PARKINSON))
    assert range_ratio(returns, ranges) == pytest.approx(expected)
    with pytest.raises(DataError) as err:
        range_ratio(returns, np.full(4, np.nan))
    assert "needs training days with a high and a low" in str(err.value)


def test_the_conv_reads_one_more_column_and_the_state_carries_it():
    config = mixed().config
    assert config.conv_inputs == 4 and config.derived_columns == 1 and config.raw_columns == 2
    assert replace(config, variance_source="parkinson").conv_inputs == 3
    state = mixed().initial_state(2)
    assert tuple(state.conv.shape) == (2, 4, 3)
    # the range's flag, then one column per variance scale
    assert mixed(scales=(0.5, 0.8)).config.conv_inputs == 6


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("scales", [(), (0.5, 0.8)])
def test_the_kernel_steps_closes_bars_and_a_mix_as_the_forward_reads_them(cell, layers, scales):
    forecaster = mixed(cell, layers, scales=scales)
    kernel = StepKernel(forecaster)
    x = sessions(11)
    with torch.no_grad():
        whole, state = forecaster(x)
    assert torch.isfinite(whole).all()
    packed = kernel.zeros(3)
    for t in range(STEPS):
        out, packed = kernel.step(x[:, t].numpy(), packed)
        assert np.abs(out - whole[:, t].numpy()).max() <= 1e-5
    assert np.abs(packed - state.packed()).max() <= 1e-5
    # the closes-only stream is the forward's on NaN ranges, and differs from the same rows with their ranges
    bars = x.clone()
    bars[1, :, 1] = x[0, :, 1]
    with torch.no_grad():
        ranged, _ = forecaster(bars)
    assert not torch.allclose(ranged[1], whole[1], atol=1e-4)
    torch.testing.assert_close(ranged[0], whole[0], rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    cell=st.sampled_from(CELLS),
    kernel=st.integers(1, 5),
    length=st.integers(1, 60),
    scales=st.sampled_from([(), (0.5, 0.8, 0.955)]),
    data=st.data(),
)
def test_one_call_equals_pieces_with_the_state_carried_through_bytes(cell, kernel, length, scales, data):
    model = mixed(cell, 1, kernel, scales=scales)
    x = sessions(data.draw(st.integers(0, 2**31 - 1)), length)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(length - 1, 1)), max_size=6)) - {length})
    with torch.no_grad():
        whole, _ = model(x)
        pieces = in_pieces_through_bytes(model, x, cuts)
    assert (pieces - whole).abs().max().item() <= 1e-5


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(3)
    config = ModelConfig(
        n_features=2,
        conv_channels=8,
        hidden_size=16,
        scaling="volatility",
        variance_source="range_or_returns",
        range_ratio=1.4,
    )
    [series] = build_series(sources.bundled(["IBM"]), BARS, horizon=config.horizon)
    return Predictor(Forecaster(config), Scaler.fit(series.features[:1000], BARS))


def closes_only(bars: list[Observation]) -> list[Observation]:
    return [replace(o, high=None, low=None, open=None, volume=None) for o in bars]


def test_a_session_may_mix_closes_and_bars_and_streams_what_the_whole_history_gives(predictor):
    bars = real_bars("IBM", 60)
    history = [closes_only([o])[0] if i % 4 == 1 else o for i, o in enumerate(bars)]
    whole = predictor.forecast_history(history)
    state = SeriesState()
    for obs in history:
        state = predictor.state_from_bytes(predictor.state_to_bytes(predictor.advance(state, [obs])))
    streamed = predictor.forecast(state)
    assert whole is not None and streamed is not None
    np.testing.assert_allclose(streamed.log_return, whole.log_return, atol=1e-5)
    # the same stream stepped by the kernel, as a live session's one new observation is
    blob, n = predictor.state_to_bytes(predictor.advance(SeriesState(), history[:2])), 2
    for i, obs in enumerate(history[2:], start=2):
        [stepped] = predictor.advance_stored([StoredStep(blob, n, [obs], i, 1)])
        assert not isinstance(stepped, Exception) and stepped is not None
        blob, n = stepped.state, stepped.n_obs
    assert stepped.forecast is not None
    np.testing.assert_allclose(stepped.forecast.log_return, whole.log_return, atol=1e-5)
    # closes alone read other forecasts than the bars: the ranges were read where sent
    barred = predictor.forecast_history(bars)
    assert barred is not None and not np.allclose(barred.log_return, whole.log_return, atol=1e-5)


def test_a_closes_only_session_gets_the_offline_forward_on_nan_ranges(predictor):
    [series] = build_series(sources.bundled(["IBM"]).iloc[:61], BARS, horizon=predictor.config.horizon)
    _, offline = model_outputs(predictor.model, predictor.scaler, without_ranges(series), 0)
    session = predictor.forecast_history(closes_only(real_bars("IBM", 61)))
    assert session is not None
    np.testing.assert_allclose(session.log_return, offline[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (Observation(close=10.0, high=11.0), "observation 5: low is missing while high is sent"),
        (Observation(close=10.0, low=9.0), "observation 5: high is missing while low is sent"),
        (Observation(close=10.0, high=9.5, low=10.5), "observation 5: high 9.5 is below low 10.5"),
    ],
)
def test_a_bar_sends_its_high_and_low_together_or_neither(predictor, obs, message):
    good = [Observation(close=10.0), Observation(close=10.2, high=10.4, low=9.9)]
    assert predictor.required == ("close",)
    predictor.validate(good, 3)
    with pytest.raises(DataError) as err:
        predictor.validate([*good, obs], 3)
    assert str(err.value).startswith(message) and err.value.details == {"seq": 5}
