from __future__ import annotations

import numpy as np

from data import sources
from models.predictor import Predictor
from models.series import Forecast, SeriesState
from tests.factories import tiny_checkpoint
from training.costs import _advance_session, _advance_state, forecast_costs, synthetic_history


def test_synthetic_history_repeats_real_returns():
    prices = sources.bundled(["IBM"])
    history = synthetic_history(prices, 8000)
    assert len(history) == 8000
    real = np.diff(np.log(prices["close"].to_numpy()))
    made = np.diff(np.log([o.close for o in history]))
    np.testing.assert_allclose(made[: len(real)], real)
    np.testing.assert_allclose(made[len(real) : 2 * len(real)], real)
    assert all(o.high >= o.close >= o.low > 0 for o in history[:50] if o.high and o.low)


def test_every_method_is_timed_at_every_length():
    latent = Predictor.from_checkpoint(tiny_checkpoint("latent"))
    ar = Predictor.from_checkpoint(tiny_checkpoint("ar"))
    costs = forecast_costs(latent, ar, sources.bundled(["IBM"]), lengths=(20, 200), budget=0.01)
    assert sorted((c.method, c.history) for c in costs) == [
        ("ar_window", 20),
        ("ar_window", 200),
        ("full_rerun", 20),
        ("full_rerun", 200),
        ("latent_step", 20),
        ("latent_step", 200),
        ("latent_torch", 20),
        ("latent_torch", 200),
    ]
    assert all(c.median_us > 0 and c.repeats >= 5 for c in costs)


def test_the_session_step_timed_is_the_served_step_and_forecasts_as_the_state_in_memory():
    latent = Predictor.from_checkpoint(tiny_checkpoint("latent"))
    history = synthetic_history(sources.bundled(["IBM"]), 101)
    state = latent.advance(SeriesState(), history[:100])
    served = _advance_session(latent, latent.state_to_bytes(state), 100, history[100:])
    in_memory = _advance_state(latent, state, history[100:])
    assert isinstance(served, Forecast) and isinstance(in_memory, Forecast)
    assert served.as_of_seq == in_memory.as_of_seq == 100
    np.testing.assert_allclose(served.log_return, in_memory.log_return, rtol=1e-4, atol=1e-6)
