"""What one more forecast costs, as the history grows.

After a history of L observations, one new observation arrives. Three ways to
produce the next forecast, timed side by side in one run:

- ``latent_step``: the step the service makes (``Predictor.advance_stored``):
  the latent model's carried state read from bytes, as a session store keeps
  it between requests, stepped once by the numpy kernel and written back;
- ``latent_torch``: the same step through the torch forward, the state held in
  memory (a stateless forecast's and training's evaluations' path);
- ``ar_window``: the ar model re-reads its last ``window`` rows from zero;
- ``full_rerun``: the latent model re-reads the whole history from zero, as a
  stateless forecaster without carried state would.

Histories longer than the real data are built by repeating its real daily
returns (the cost of a step does not depend on the values).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from models.predictor import Predictor
from models.series import Observation, SeriesState, Stepped, StoredStep

DEFAULT_LENGTHS = (100, 1_000, 10_000)
TARGET_SECONDS_PER_CELL = 0.3  # enough repeats for a stable median, bounded time
MAX_REPEATS = 2_000


@dataclass(frozen=True)
class Cost:
    method: str
    history: int
    median_us: float
    repeats: int


def synthetic_history(prices: pd.DataFrame, length: int) -> list[Observation]:
    """``length`` bars whose returns repeat the real returns of ``prices`` (one ticker)."""
    close = prices["close"].to_numpy(np.float64)
    high = prices["high"].to_numpy(np.float64) / close
    low = prices["low"].to_numpy(np.float64) / close
    volume = prices["volume"].to_numpy(np.float64)
    returns = np.diff(np.log(close))
    reps = -(-length // len(returns)) + 1
    path = close[0] * np.exp(np.concatenate([[0.0], np.cumsum(np.tile(returns, reps))]))[:length]
    index = np.arange(length) % len(close)
    return [
        Observation(close=float(c), high=float(c * high[i]), low=float(c * low[i]), volume=float(volume[i]))
        for c, i in zip(path, index, strict=True)
    ]


def median_time(action: Callable[[], object], budget: float = TARGET_SECONDS_PER_CELL) -> tuple[float, int]:
    """Median seconds of ``action`` over as many repeats (at least 5) as fit in ``budget`` seconds."""
    action()  # warm-up: first-call allocations are not the steady state
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < MAX_REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times)


def _advance_state(predictor: Predictor, state: SeriesState, new: list[Observation]) -> object:
    return predictor.forecast(predictor.advance(state, new))


def _advance_session(predictor: Predictor, blob: bytes, n_obs: int, new: list[Observation]) -> object:
    [stepped] = predictor.advance_stored([StoredStep(blob, n_obs, new, n_obs, len(new))])
    assert isinstance(stepped, Stepped), stepped
    return stepped.forecast


def forecast_costs(
    latent: Predictor,
    ar: Predictor,
    prices: pd.DataFrame,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    budget: float = TARGET_SECONDS_PER_CELL,
) -> list[Cost]:
    """Median cost of the next forecast by each method, at each history length."""
    history = synthetic_history(prices, max(lengths) + 1)
    costs = []
    for length in lengths:
        past, new = history[:length], [history[length]]
        latent_state = latent.advance(SeriesState(), past)
        ar_state = ar.advance(SeriesState(), past)
        methods: dict[str, Callable[[], object]] = {
            "latent_step": partial(_advance_session, latent, latent.state_to_bytes(latent_state), length, new),
            "latent_torch": partial(_advance_state, latent, latent_state, new),
            "ar_window": partial(_advance_state, ar, ar_state, new),
            "full_rerun": partial(latent.forecast_history, [*past, *new]),
        }
        for method, action in methods.items():
            seconds, repeats = median_time(action, budget)
            costs.append(Cost(method, length, seconds * 1e6, repeats))
    return costs
