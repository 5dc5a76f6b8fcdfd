"""The numpy step kernel is the torch forecaster's math: step by step equals one forward."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data import sources
from data.features import Scaler, build_series
from latentcast.errors import StateError
from models.config import CELLS, SCALINGS, ModelConfig
from models.forecaster import Forecaster
from models.kernel import StepKernel, softplus
from models.predictor import Predictor
from models.series import SeriesState, Stepped, StoredStep
from models.state import StreamState
from tests.factories import real_bars

STEPS = 30
FEATURES = {1: ("returns",), 3: ("returns", "range", "volume")}


def model(
    cell: str, layers: int, n_features: int, scaling: str = "global", variance_source: str = "returns"
) -> Forecaster:
    torch.manual_seed(7)
    config = ModelConfig(
        variance_source=variance_source,
        cell=cell,
        n_features=n_features,
        conv_channels=6,
        conv_kernel=4,
        hidden_size=10,
        num_layers=layers,
        horizon=4,
        scaling=scaling,
    )
    return Forecaster(config).eval()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("n_features", [1, 3])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("scaling", SCALINGS)
def test_stepping_one_row_at_a_time_equals_one_forward(cell, layers, n_features, batch, scaling):
    forecaster = model(cell, layers, n_features, scaling)
    kernel = StepKernel(forecaster)
    x = torch.randn(batch, STEPS, n_features, generator=torch.Generator().manual_seed(11)) * 2
    with torch.no_grad():
        whole, state = forecaster(x)
    packed = kernel.zeros(batch)
    for t in range(STEPS):
        out, packed = kernel.step(x[:, t].numpy(), packed)
        assert out.shape == (batch, 4, 3) and out.dtype == np.float32
        assert np.abs(out - whole[:, t].numpy()).max() <= 1e-5
    assert np.abs(packed - state.packed()).max() <= 1e-5
    if scaling == "volatility":  # the variance's weight: the discounted count of the prior and the returns read
        d, prior = forecaster.config.ewma_decay, forecaster.config.variance_prior
        np.testing.assert_allclose(packed[:, -1], d**STEPS * prior + (1 - d**STEPS) / (1 - d), rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_kernel_continues_a_state_torch_carried_and_torch_continues_the_kernels(cell, scaling):
    forecaster = model(cell, 2, 3, scaling)
    kernel = StepKernel(forecaster)
    x = torch.randn(3, 12, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole, _ = forecaster(x)
        _, warm = forecaster(x[:, :6])
        out, packed = kernel.step(x[:, 6].numpy(), warm.packed())
        rest, _ = forecaster(x[:, 7:], StreamState.from_packed(packed, forecaster.config))
    assert np.abs(out - whole[:, 6].numpy()).max() <= 1e-5
    assert (rest - whole[:, 7:]).abs().max().item() <= 1e-5


def test_softplus_is_torchs_also_where_exp_would_overflow():
    x = np.array([-200.0, -30.0, -1.0, 0.0, 0.5, 19.9, 20.0, 20.1, 100.0, 3e38], np.float32)
    expected = F.softplus(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(softplus(x), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_packed_state_round_trips_through_tensors_and_bytes(scaling):
    forecaster = model("LSTM", 2, 3, scaling)
    with torch.no_grad():
        _, state = forecaster(torch.randn(4, 7, 3))
    packed = state.packed()
    again = StreamState.from_packed(packed, forecaster.config)
    for a, b in zip(again.tensors(), state.tensors(), strict=True):
        assert torch.equal(a, b)
    h, c = state.hidden
    for i in range(state.batch_size):
        volatility = None if state.volatility is None else state.volatility[i : i + 1]
        one = StreamState(state.conv[i : i + 1], (h[:, i : i + 1], c[:, i : i + 1]), volatility)
        blob = one.to_bytes(forecaster.config)
        assert StreamState.from_packed(packed[i : i + 1], forecaster.config).to_bytes(forecaster.config) == blob
        np.testing.assert_array_equal(StreamState.from_bytes(blob, forecaster.config).packed(), packed[i : i + 1])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("n_features", [1, 3])
@pytest.mark.parametrize("scaling", SCALINGS)
def test_predictor_streaming_through_the_kernel_equals_the_whole_history(
    cell, layers, n_features, scaling, monkeypatch
):
    torch.manual_seed(3)
    config = ModelConfig(
        cell=cell, n_features=n_features, conv_channels=8, hidden_size=16, num_layers=layers, scaling=scaling
    )
    features = FEATURES[n_features]
    [series] = build_series(sources.bundled(["IBM"]), features, horizon=config.horizon)
    p = Predictor(Forecaster(config), Scaler.fit(series.features[:1000], features))
    history = real_bars("IBM", 60)
    whole = p.forecast_history(history)
    steps: list[int] = []
    original = StepKernel.step

    def counted(self: StepKernel, x: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        steps.append(len(x))
        return original(self, x, packed)

    monkeypatch.setattr(StepKernel, "step", counted)
    blob, streamed = p.state_to_bytes(SeriesState()), None
    for seq, obs in enumerate(history):  # as a session streams: its state's bytes in, its new state's bytes out
        [stepped] = p.advance_stored([StoredStep(blob, seq, [obs], seq, 1)])
        assert isinstance(stepped, Stepped)
        blob, streamed = stepped.state, stepped.forecast
    # every observation after the first two (a first close, then the first return) is one kernel step
    assert steps == [1] * (len(history) - 2)
    assert whole is not None and streamed is not None
    np.testing.assert_allclose(streamed.log_return, whole.log_return, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("n_features", [2, 3])
def test_a_parkinson_variance_steps_as_its_forward_and_continues_either_way(cell, n_features):
    forecaster = model(cell, 2, n_features, "volatility", "parkinson")
    kernel = StepKernel(forecaster)
    x = torch.randn(3, STEPS, n_features, generator=torch.Generator().manual_seed(11)) * 2
    with torch.no_grad():
        whole, state = forecaster(x)
        _, warm = forecaster(x[:, :6])
        rest, _ = forecaster(x[:, 6:], StreamState.from_packed(warm.packed(), forecaster.config))
    packed = kernel.zeros(3)
    for t in range(STEPS):
        out, packed = kernel.step(x[:, t].numpy(), packed)
        assert np.abs(out - whole[:, t].numpy()).max() <= 1e-5
    assert np.abs(packed - state.packed()).max() <= 1e-5
    assert (rest - whole[:, 6:]).abs().max().item() <= 1e-5
    # the variance read the ranges, not the returns: other returns, the same variance
    other = x.clone()
    other[..., 0] = -3 * other[..., 0]
    with torch.no_grad():
        _, other_state = forecaster(other)
    assert other_state.volatility is not None and state.volatility is not None
    torch.testing.assert_close(other_state.volatility, state.volatility, rtol=0, atol=0)
    returns_model = model(cell, 2, n_features, "volatility")
    with torch.no_grad():
        _, read_returns = returns_model(x)
    assert read_returns.volatility is not None and not torch.equal(read_returns.volatility, state.volatility)


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_predictor_with_a_parkinson_variance_streams_what_it_forecasts_on_the_whole_history(mode):
    torch.manual_seed(3)
    config = ModelConfig(
        mode=mode,
        n_features=3,
        conv_channels=8,
        hidden_size=16,
        window=20,
        scaling="volatility",
        variance_source="parkinson",
    )
    features = FEATURES[3]
    [series] = build_series(sources.bundled(["IBM"]), features, horizon=config.horizon)
    p = Predictor(Forecaster(config), Scaler.fit(series.features[:1000], features))
    history = real_bars("IBM", 60)
    whole = p.forecast_history(history)
    state = SeriesState()
    for obs in history:
        state = p.state_from_bytes(p.state_to_bytes(p.advance(state, [obs])))
    streamed = p.forecast(state)
    assert whole is not None and streamed is not None
    np.testing.assert_allclose(streamed.log_return, whole.log_return, atol=1e-5)
    # the same closes with every range widened: other forecasts (the range sets the scale)
    wider = [replace(o, high=o.high * 1.01, low=o.low / 1.01) if o.high and o.low else o for o in history]
    widened = p.forecast_history(wider)
    assert widened is not None and not np.allclose(widened.log_return, whole.log_return, atol=1e-5)
    with pytest.raises(StateError) as err:
        Predictor(Forecaster(config), Scaler.fit(series.features[:1000], ("returns", "volume", "range")))
    assert str(err.value) == ("a range variance reads the range as second feature, not ['returns', 'volume', 'range']")
