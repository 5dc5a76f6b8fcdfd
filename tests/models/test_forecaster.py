from __future__ import annotations

import pytest
import torch

from models.config import CELLS, ModelConfig
from models.forecaster import Forecaster, monotone_quantiles


def tiny(cell: str = "GRU", **fields) -> Forecaster:
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, n_features=2, conv_channels=4, conv_kernel=3, hidden_size=8, **fields)
    return Forecaster(config).eval()


@pytest.mark.parametrize("cell", CELLS)
def test_output_shape_and_non_crossing_quantiles(cell):
    model = tiny(cell, horizon=4, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    out, state = model(torch.randn(3, 11, 2) * 5)
    assert out.shape == (3, 11, 4, 5)
    assert (out.diff(dim=-1) > 0).all()
    assert state.conv.shape == (3, 2, 2)


@pytest.mark.parametrize("cell", CELLS)
def test_conv_front_end_is_causal(cell):
    model = tiny(cell, num_layers=2)
    x = torch.randn(2, 20, 2)
    out, _ = model(x)
    for t in (0, 7, 18):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :]) * 100
        out_changed, _ = model(changed)
        torch.testing.assert_close(out_changed[:, : t + 1], out[:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(out_changed[:, t + 1 :], out[:, t + 1 :])


def test_monotone_quantiles_keeps_the_median_and_orders_the_rest():
    raw = torch.tensor([[3.0, -1.0, 2.0, -5.0, 0.0]])
    out = monotone_quantiles(raw, median=2)
    assert out[0, 2] == 2.0
    assert (out.diff(dim=-1) > 0).all()


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_at_a_time_equals_the_whole_sequence(cell):
    model = tiny(cell, num_layers=2, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    x = torch.randn(3, 12, 2)
    with torch.no_grad():
        whole, whole_state = model(x)
        state, outs = None, []
        for t in range(12):
            out, state = model(x[:, t : t + 1], state)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), whole, rtol=0, atol=1e-5)
    assert state is not None
    for a, b in zip(state.tensors(), whole_state.tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_training_mode_applies_dropout():
    model = tiny("GRU", num_layers=2, dropout=0.5).train()
    x = torch.randn(1, 1, 2)
    torch.manual_seed(0)
    first, _ = model(x)
    torch.manual_seed(1)
    second, _ = model(x)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("scaling", ["global", "volatility"])
def test_forecasting_after_the_last_steps_equals_the_tail_of_every_step(scaling):
    model = tiny("GRU", scaling=scaling)
    x = torch.randn(3, 9, 2)
    with torch.no_grad():
        every, every_state = model(x)
        tail, tail_state = model(x, last=2)
    torch.testing.assert_close(tail, every[:, -2:], rtol=0, atol=1e-6)  # the head multiplies fewer rows
    for a, b in zip(tail_state.tensors(), every_state.tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        out, _, volatility = model(x, with_volatility=True)
        tail_out, _, tail_volatility = model(x, last=2, with_volatility=True)
    torch.testing.assert_close(out, every, rtol=0, atol=0)
    torch.testing.assert_close(tail_out, tail, rtol=0, atol=0)
    if scaling == "global":
        assert volatility is None and tail_volatility is None
    else:
        assert volatility is not None and tail_volatility is not None
        torch.testing.assert_close(tail_volatility, volatility[:, -2:], rtol=0, atol=0)
