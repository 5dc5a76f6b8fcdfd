"""Variances at several time scales: the torch forward, the numpy kernel and the state bytes agree."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data import sources
from data.features import Scaler, build_series
from latentcast.errors import ConfigError, StateError
from models.config import CELLS, ModelConfig
from models.forecaster import Forecaster
from models.kernel import StepKernel
from models.predictor import Predictor
from models.series import SeriesState, Stepped, StoredStep
from models.state import SCALES_FORMAT_VERSION, VOLATILITY_FORMAT_VERSION, StreamState
from models.volatility import ewma_variances, initial_volatility, scale_columns, scaled_variances
from tests.factories import real_bars
from tests.models.test_state import in_pieces_through_bytes

SCALES = (0.5, 0.8, 0.955)
STEPS = 30
MODELS: dict[tuple[str, int, str, tuple[float, ...], str], Forecaster] = {}


def model(
    cell: str, layers: int = 2, source: str = "returns", scales: tuple[float, ...] = SCALES, mix: str = "main"
) -> Forecaster:
    key = (cell, layers, source, scales, mix)
    if key not in MODELS:
        torch.manual_seed(7)
        config = ModelConfig(
            cell=cell,
            n_features=3,
            conv_channels=6,
            conv_kernel=4,
            hidden_size=10,
            num_layers=layers,
            horizon=4,
            scaling="volatility",
            variance_source=source,
            variance_scales=scales,
            quantile_scale=mix,
        )
        MODELS[key] = Forecaster(config).eval()
        if mix == "mix":
            with torch.no_grad():
                MODELS[key].scale_mix.copy_(torch.tensor([0.5, -1.0, 0.2, 1.0]))
    return MODELS[key]


def moves(batch: int, steps: int, seed: int) -> torch.Tensor:
    """(B, T, 3) rows whose second column, a range, is positive as a range is."""
    x = torch.randn(batch, steps, 3, generator=torch.Generator().manual_seed(seed)) * 2
    x[..., 1] = x[..., 1].abs()
    return x


def test_each_scale_is_its_own_ewma_of_the_same_squared_moves_from_the_same_prior():
    config = model("GRU").config
    returns = np.random.default_rng(0).standard_normal((2, 40)).astype(np.float32) * 3
    start = initial_volatility(2, config)
    assert start.shape == (2, 8) and (start[:, 0::2] == 1).all() and (start[:, 1::2] == config.variance_prior).all()
    every, after = scaled_variances(returns, start, config)
    assert every.shape == (2, 41, 4) and after.shape == (2, 8)
    main, weight = ewma_variances(returns, start[:, 0], start[:, 1], config)
    np.testing.assert_array_equal(every[..., 0], main)
    np.testing.assert_array_equal(after[:, :2], np.stack([main[:, -1], weight[:, -1]], axis=1))
    for k, decay in enumerate(SCALES, start=1):
        v, _ = ewma_variances(returns, start[:, 0], start[:, 1], config, decay=decay)
        np.testing.assert_array_equal(every[..., k], v)
        steady = decay**40 * config.variance_prior + (1 - decay**40) / (1 - decay)
        np.testing.assert_allclose(after[:, 2 * k + 1], steady, rtol=1e-6)
    # a month of calm, then a week of storm: the faster the scale, the more of the storm it has taken in
    calm_then_storm = np.concatenate([np.full(22, 0.5), np.full(5, 4.0)]).astype(np.float32)[None]
    every, _ = scaled_variances(calm_then_storm, initial_volatility(1, config), config)
    after_storm = every[0, -1]  # main (0.94), then 0.5, 0.8, 0.955
    assert after_storm[1] > after_storm[2] > after_storm[0] > after_storm[3]


def test_the_inputs_are_log_volatility_ratios_that_a_rescaled_copy_reads_the_same():
    config = model("GRU").config
    returns = np.random.default_rng(1).standard_normal((1, 300)).astype(np.float32)
    warm = initial_volatility(1, config)
    warm[:, 1::2] = 1e6  # the prior's share gone: the variances scale exactly with the returns
    columns = {}
    for k in (0.3, 1.0, 3.0):
        every, _ = scaled_variances(returns * np.float32(k), warm * np.array([k * k, 1] * 4, np.float32), config)
        columns[k] = scale_columns(every, config)
        assert columns[k].shape == (1, 300, 3) and columns[k].dtype == np.float32
    np.testing.assert_allclose(columns[0.3], columns[1.0], atol=1e-5)
    np.testing.assert_allclose(columns[3.0], columns[1.0], atol=1e-5)
    every, _ = scaled_variances(returns, warm, config)
    np.testing.assert_allclose(columns[1.0], 0.5 * np.log(every[:, :-1, 1:] / every[:, :-1, :1]), rtol=1e-6)
    huge = np.stack([np.ones((1, 2)), np.full((1, 2), 1e12)], axis=2).astype(np.float32)
    assert (scale_columns(huge, config) == config.input_clip).all()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("source", ["returns", "parkinson"])
@pytest.mark.parametrize("mix", ["main", "mix"])
def test_the_kernel_steps_as_the_forward_and_each_continues_the_others_state(cell, layers, source, mix):
    forecaster = model(cell, layers, source, mix=mix)
    kernel = StepKernel(forecaster)
    x = moves(3, STEPS, 11)
    with torch.no_grad():
        whole, state = forecaster(x)
        _, warm = forecaster(x[:, :6])
    assert state.volatility is not None and state.volatility.shape == (3, 8)
    packed = kernel.zeros(3)
    for t in range(STEPS):
        out, packed = kernel.step(x[:, t].numpy(), packed)
        assert np.abs(out - whole[:, t].numpy()).max() <= 1e-5
    assert np.abs(packed - state.packed()).max() <= 1e-5
    with torch.no_grad():
        out, packed = kernel.step(x[:, 6].numpy(), warm.packed())
        rest, _ = forecaster(x[:, 7:], StreamState.from_packed(packed, forecaster.config))
    assert np.abs(out - whole[:, 6].numpy()).max() <= 1e-5
    assert (rest - whole[:, 7:]).abs().max().item() <= 1e-5


@settings(max_examples=30, deadline=None)
@given(cell=st.sampled_from(CELLS), length=st.integers(1, 60), data=st.data())
def test_one_call_equals_pieces_with_the_scales_carried_through_bytes(cell, length, data):
    forecaster = model(cell)
    x = moves(2, length, data.draw(st.integers(0, 2**31 - 1)))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(length - 1, 1)), max_size=6)) - {length})
    with torch.no_grad():
        whole, _ = forecaster(x)
        pieces = in_pieces_through_bytes(forecaster, x, cuts)
    assert (pieces - whole).abs().max().item() <= 1e-5


def test_the_scales_change_the_forecast_through_the_inputs():
    forecaster = copy.deepcopy(model("GRU"))
    x = moves(1, STEPS, 3)
    with torch.no_grad():
        whole, _ = forecaster(x)
        forecaster.conv.weight[:, 3:] = 0  # the conv no longer reads the scales' columns
        blind, _ = forecaster(x)
    assert forecaster.conv.weight.shape[1] == forecaster.config.conv_inputs == 6
    assert not torch.allclose(whole, blind, atol=1e-4)


def test_the_state_is_format_4_and_a_model_without_scales_writes_format_3_and_refuses_it():
    with_scales, plain = model("LSTM"), model("LSTM", scales=())
    with torch.no_grad():
        _, state = with_scales(moves(1, 9, 5))
        _, plain_state = plain(moves(1, 9, 5))
    blob, plain_blob = state.to_bytes(with_scales.config), plain_state.to_bytes(plain.config)
    assert blob[4] == SCALES_FORMAT_VERSION and plain_blob[4] == VOLATILITY_FORMAT_VERSION
    assert len(blob) - len(plain_blob) == 4 * (3 * 3 + 2 * 3)  # a conv column and a (v, w) pair per scale
    np.testing.assert_array_equal(StreamState.from_bytes(blob, with_scales.config).packed(), state.packed())
    with pytest.raises(StateError, match="carries variances at several scales; the model's variance_scales are"):
        StreamState.from_bytes(blob, plain.config)
    with pytest.raises(StateError, match=r"does not carry variances at several scales.*\[0.5, 0.8, 0.955\]"):
        StreamState.from_bytes(plain_blob, with_scales.config)
    two = model("LSTM", scales=(0.5, 0.9))
    with pytest.raises(StateError, match="bytes, expected"):
        StreamState.from_bytes(blob, two.config)


def test_the_config_keeps_its_scales_and_one_saved_without_them_has_none():
    config = model("GRU").config
    saved = config.to_dict()
    assert saved["variance_scales"] == [0.5, 0.8, 0.955] and ModelConfig.from_dict(saved) == config
    older = {k: v for k, v in saved.items() if k != "variance_scales"}
    assert ModelConfig.from_dict(older).variance_scales == () and ModelConfig.from_dict(older).conv_inputs == 3
    with pytest.raises(ConfigError, match="variance_scales need volatility scaling"):
        ModelConfig(scaling="global", variance_scales=(0.5,))
    for bad in [(1.0,), (0.5, 0.5), (-0.2,), ("x",)]:
        with pytest.raises(ConfigError, match="variance_scales must be"):
            ModelConfig(variance_scales=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_a_predictor_with_scales_streams_through_state_bytes_what_it_forecasts_on_the_whole_history(mode):
    torch.manual_seed(3)
    config = ModelConfig(mode=mode, n_features=1, conv_channels=8, hidden_size=16, window=20, variance_scales=SCALES)
    [series] = build_series(sources.bundled(["IBM"]), ("returns",), horizon=config.horizon)
    p = Predictor(Forecaster(config), Scaler.fit(series.features[:1000], ("returns",)))
    history = real_bars("IBM", 60)
    whole = p.forecast_history(history)
    blob, streamed = p.state_to_bytes(SeriesState()), None
    for seq, obs in enumerate(history):
        [stepped] = p.advance_stored([StoredStep(blob, seq, [obs], seq, 1)])
        assert isinstance(stepped, Stepped)
        blob, streamed = stepped.state, stepped.forecast
    assert whole is not None and streamed is not None
    np.testing.assert_allclose(streamed.log_return, whole.log_return, atol=1e-5)


def test_a_mixed_scale_learns_its_weights_and_scales_the_quantiles_by_the_mixed_volatility():
    forecaster = model("GRU", mix="mix")
    x = moves(2, STEPS, 9)
    with torch.no_grad():
        out, _, volatility = forecaster(x, with_volatility=True)
    every, _ = scaled_variances(x[..., 0].numpy(), initial_volatility(2, forecaster.config), forecaster.config)
    weights = torch.softmax(torch.tensor([0.5, -1.0, 0.2, 1.0]), 0).numpy()
    assert volatility is not None
    np.testing.assert_allclose(volatility.numpy(), np.sqrt(every[:, 1:] @ weights), rtol=1e-5)
    main = copy.deepcopy(forecaster)
    main.config = ModelConfig.from_dict({**forecaster.config.to_dict(), "quantile_scale": "main"})
    with torch.no_grad():
        plain, _, plain_volatility = main(x, with_volatility=True)
    assert plain_volatility is not None
    torch.testing.assert_close(out / volatility[..., None, None], plain / plain_volatility[..., None, None])
    trained = copy.deepcopy(forecaster).train()
    trained(x)[0].sum().backward()
    assert trained.scale_mix.grad is not None and trained.scale_mix.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="mix needs variance_scales"):
        ModelConfig(quantile_scale="mix")
