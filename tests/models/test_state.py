"""The streaming invariant: one call equals any split into pieces, state carried."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentcast.errors import StateError
from models.config import CELLS, SCALINGS, ModelConfig
from models.forecaster import Forecaster
from models.state import UNWEIGHTED_FORMAT_VERSION, StreamState
from models.volatility import steady_weight

MODELS: dict[tuple[str, int, int, str], Forecaster] = {}


def model_for(cell: str, kernel: int, layers: int, scaling: str = "global") -> Forecaster:
    key = (cell, kernel, layers, scaling)
    if key not in MODELS:
        torch.manual_seed(1)
        config = ModelConfig(
            cell=cell,
            n_features=3,
            conv_channels=6,
            conv_kernel=kernel,
            hidden_size=10,
            num_layers=layers,
            scaling=scaling,
        )
        MODELS[key] = Forecaster(config).eval()
    return MODELS[key]


def in_pieces_through_bytes(model: Forecaster, x: torch.Tensor, cuts: list[int]) -> torch.Tensor:
    """``model``'s outputs over ``x`` cut at ``cuts`` (time steps), the state carried from piece to piece
    through its bytes, joined in time."""
    pieces, state, start = [], None, 0
    for stop in [*cuts, x.shape[1]]:
        out, state = model(x[:, start:stop], state)
        state = StreamState.from_bytes(state.to_bytes(model.config), model.config)
        pieces.append(out)
        start = stop
    return torch.cat(pieces, dim=1)


@settings(max_examples=60, deadline=None)
@given(
    cell=st.sampled_from(CELLS),
    kernel=st.integers(1, 5),
    layers=st.integers(1, 2),
    scaling=st.sampled_from(SCALINGS),
    length=st.integers(1, 80),
    data=st.data(),
)
def test_one_call_equals_pieces_with_state_carried_through_bytes(cell, kernel, layers, scaling, length, data):
    model = model_for(cell, kernel, layers, scaling)
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = torch.randn(2, length, 3, generator=torch.Generator().manual_seed(seed)) * 2
    cuts = sorted(data.draw(st.sets(st.integers(1, max(length - 1, 1)), max_size=6)) - {length})
    with torch.no_grad():
        whole, _ = model(x)
        pieces = in_pieces_through_bytes(model, x, cuts)
    assert (pieces - whole).abs().max().item() <= 1e-5


def test_stacked_states_carry_each_stream_as_its_own_forward_would():
    model = model_for("LSTM", 3, 2)
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        parts = [model(x[i : i + 1])[1] for i in range(3)]
        _, whole = model(x)
    again = StreamState.stack(parts)
    assert again.batch_size == 3
    for a, b in zip(again.tensors(), whole.tensors(), strict=True):
        torch.testing.assert_close(a, b)


def test_bytes_are_compact_float32():
    model = model_for("GRU", 3, 1)
    _, state = model(torch.randn(1, 4, 3))
    blob = state.to_bytes(model.config)
    assert len(blob) == 20 + 4 * (3 * 2 + 10)


def test_state_from_another_architecture_is_refused():
    gru = model_for("GRU", 3, 1)
    _, state = gru(torch.randn(1, 4, 3))
    blob = state.to_bytes(gru.config)
    lstm = model_for("LSTM", 3, 2)
    with pytest.raises(StateError) as err:
        StreamState.from_bytes(blob, lstm.config)
    assert (
        str(err.value) == "stream state does not fit this model: cell GRU (model has LSTM), num_layers 1 (model has 2)"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:10], "stream state too short: 10 bytes, header needs 20"),
        (lambda b: b"XXXX" + b[4:], "not a stream state: bad magic bytes"),
        (
            lambda b: b[:4] + bytes([9]) + b[5:],
            "stream state format 9 is not supported (this build reads 1, 2, 3 and 4)",
        ),
        (lambda b: b[:-4], "stream state has 80 bytes, expected 84"),
    ],
)
def test_malformed_bytes_are_refused(mutate, message):
    model = model_for("GRU", 3, 1)
    _, state = model(torch.randn(1, 4, 3))
    with pytest.raises(StateError) as err:
        StreamState.from_bytes(mutate(state.to_bytes(model.config)), model.config)
    assert str(err.value) == message


def test_a_volatility_state_carries_its_variance_and_a_global_model_refuses_it():
    scaled = model_for("GRU", 3, 1, "volatility")
    _, state = scaled(torch.randn(1, 4, 3))
    blob = state.to_bytes(scaled.config)
    assert len(blob) == 20 + 4 * (3 * 2 + 10 + 2)  # the variance and its weight
    again = StreamState.from_bytes(blob, scaled.config)
    assert again.volatility is not None and state.volatility is not None
    assert torch.equal(again.volatility, state.volatility)
    with pytest.raises(StateError) as err:
        StreamState.from_bytes(blob, model_for("GRU", 3, 1).config)
    assert str(err.value) == "stream state carries a volatility estimate; the model's scaling is global"
    _, plain = model_for("GRU", 3, 1)(torch.randn(1, 4, 3))
    with pytest.raises(StateError) as err:
        StreamState.from_bytes(plain.to_bytes(model_for("GRU", 3, 1).config), scaled.config)
    assert str(err.value) == "stream state does not carry a volatility estimate; the model's scaling is volatility"


def _unweighted(blob: bytes, streams: int, per_stream: int) -> bytes:
    """The format-2 bytes of a format-3 state: each stream's weight left out, the version byte 2."""
    header, body = bytearray(blob[:20]), np.frombuffer(blob[20:], "<f4")
    header[4] = UNWEIGHTED_FORMAT_VERSION
    if streams == 1:
        return bytes(header) + body[:-1].tobytes()
    # tensor by tensor: conv and hidden as they are, then the (B, 2) volatility's first column
    return bytes(header) + body[: -2 * streams].tobytes() + body[-2 * streams :].reshape(streams, 2)[:, 0].tobytes()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("streams", [1, 3])
def test_a_state_written_before_the_weight_reads_as_a_warmed_stream_and_goes_on_as_the_plain_ewma(cell, streams):
    model = model_for(cell, 3, 2, "volatility")
    x = torch.randn(streams, 30, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, state = model(x)
        per_stream = state.packed().shape[1]
        blob = b"series header" + _unweighted(state.to_bytes(model.config), streams, per_stream)
        old = StreamState.from_bytes(blob, model.config, offset=13)  # read where a series state holds it
        assert old.volatility is not None and state.volatility is not None
        torch.testing.assert_close(old.volatility[:, 0], state.volatility[:, 0], rtol=0, atol=0)
        assert np.allclose(old.volatility[:, 1].numpy(), steady_weight(model.config))
        for a, b in zip(old.tensors()[:-1], state.tensors()[:-1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        r = torch.randn(streams, 1, 3)
        _, after = model(r, old)
    assert after.volatility is not None
    decay, v = model.config.ewma_decay, state.volatility[:, 0].numpy()
    plain = decay * v + (1 - decay) * r[:, 0, 0].numpy() ** 2  # RiskMetrics' step, as format 2 was written with
    np.testing.assert_allclose(after.volatility[:, 0].numpy(), plain, rtol=1e-5)
    assert after.to_bytes(model.config)[4] == 3  # written back in the current format


def test_a_format_2_state_of_the_wrong_length_is_refused():
    model = model_for("GRU", 3, 1, "volatility")
    _, state = model(torch.randn(1, 4, 3))
    blob = _unweighted(state.to_bytes(model.config), 1, state.packed().shape[1])
    with pytest.raises(StateError) as err:
        StreamState.from_bytes(blob[:-4], model.config)
    assert str(err.value) == "stream state has 84 bytes, expected 88"  # 16 conv and hidden floats and the variance
