from __future__ import annotations

import numpy as np

from data import sources
from models.predictor import Predictor
from tests.factories import tiny_checkpoint
from training.costs import forecast_costs, synthetic_history


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
        ("latent_session", 20),
        ("latent_session", 200),
        ("latent_step", 20),
        ("latent_step", 200),
    ]
    assert all(c.median_us > 0 and c.repeats >= 5 for c in costs)
