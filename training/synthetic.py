"""Synthetic daily price paths from known volatility processes, to pretrain a forecaster on.

Each path is drawn, with its own parameters, from one of three processes
(in turn: path ``i`` from ``PROCESSES[i % 3]``):

- ``garch_t``: GARCH(1,1) with standardised Student t innovations;
- ``regime``: a two-state Markov switch between a calm and a turbulent
  variance, with t innovations;
- ``sv``: a stochastic-volatility model, the log variance an AR(1), with
  normal innovations (its returns are fat-tailed by the mixing alone).

With ``jumps``, a path also has Poisson jumps in its returns. Parameters are
drawn per path from ranges (``PARAMETERS``) around what GARCH(1,1)-t fits to
daily stock returns give (the bundled stocks' fits are in docs/backtest.md):
an annualised volatility of 15-45%, a persistence alpha + beta of
0.95-0.995 with alpha 0.03-0.12, and 4-10 degrees of freedom, wide enough
to hold quieter and wilder stocks than the bundled ones.

Each day's high and low come from an intraday Brownian bridge of
``INTRADAY_STEPS`` steps from the previous close to the day's close at the
day's volatility (no overnight gap), so that a range-reading model has a
range as plausible as the returns. Paths have no volume: features reading
it are refused.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: the
same seed gives the same paths, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data.features import Series, bar_features, check_features, cumulative_targets
from latentcast.errors import ConfigError

PROCESSES = ("garch_t", "regime", "sv")
TRADING_DAYS = 252
INTRADAY_STEPS = 26  # quarter hours of a 6.5-hour session
FIRST_DAY = "2000-01-03"  # the paths' dates are business days from here: only their order matters
# (low, high) of the uniform each path's parameter is drawn from
PARAMETERS: dict[str, tuple[float, float]] = {
    "annual_vol": (0.15, 0.45),  # long-run volatility of a path (a calm regime's in ``regime``)
    "alpha": (0.03, 0.12),  # GARCH: the weight of yesterday's squared return
    "persistence": (0.95, 0.995),  # GARCH: alpha + beta
    "nu": (4.0, 10.0),  # Student t degrees of freedom (garch_t, regime)
    "turbulence": (2.0, 3.5),  # regime: the turbulent volatility over the calm one
    "stay_calm": (0.98, 0.995),  # regime: the daily probability of staying calm
    "stay_turbulent": (0.90, 0.98),  # regime: of staying turbulent
    "phi": (0.95, 0.99),  # sv: the log variance's autoregression
    "vol_of_vol": (0.10, 0.30),  # sv: the log variance's innovation std
    "jump_rate": (0.0, 0.02),  # jumps per day (up to about five a year)
    "jump_std": (0.02, 0.06),  # a jump's std, as a log return
}


def _draw(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    low, high = PARAMETERS[name]
    return rng.uniform(low, high, size)


def _t(rng: np.random.Generator, nu: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Student t draws with unit variance, ``nu`` per row."""
    return rng.standard_t(nu[:, None], size) * np.sqrt((nu[:, None] - 2) / nu[:, None])


def garch_t(rng: np.random.Generator, paths: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """(paths, days) returns and their conditional variances from GARCH(1,1)-t."""
    variance = (_draw(rng, "annual_vol", paths) ** 2 / TRADING_DAYS)[:, None]
    alpha = _draw(rng, "alpha", paths)[:, None]
    beta = _draw(rng, "persistence", paths)[:, None] - alpha
    omega = variance[:, 0] * (1 - alpha[:, 0] - beta[:, 0])
    z = _t(rng, _draw(rng, "nu", paths), (paths, days))
    returns, variances = np.empty((paths, days)), np.empty((paths, days))
    v = variance[:, 0].copy()
    for t in range(days):
        variances[:, t] = v
        returns[:, t] = np.sqrt(v) * z[:, t]
        v = omega + alpha[:, 0] * returns[:, t] ** 2 + beta[:, 0] * v
    return returns, variances


def regime(rng: np.random.Generator, paths: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and variances from a two-state Markov switch of the variance, t innovations."""
    calm = _draw(rng, "annual_vol", paths) ** 2 / TRADING_DAYS
    levels = np.stack([calm, calm * _draw(rng, "turbulence", paths) ** 2], axis=1)  # (paths, 2)
    stay = np.stack([_draw(rng, "stay_calm", paths), _draw(rng, "stay_turbulent", paths)], axis=1)
    z = _t(rng, _draw(rng, "nu", paths), (paths, days))
    switches = rng.uniform(size=(paths, days))
    state = np.zeros(paths, dtype=np.int64)
    variances = np.empty((paths, days))
    rows = np.arange(paths)
    for t in range(days):
        variances[:, t] = levels[rows, state]
        state = np.where(switches[:, t] < stay[rows, state], state, 1 - state)
    return np.sqrt(variances) * z, variances


def stochastic_volatility(rng: np.random.Generator, paths: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and variances from log-variance AR(1) stochastic volatility, normal innovations."""
    phi, eta = _draw(rng, "phi", paths), _draw(rng, "vol_of_vol", paths)
    # the mean of exp(h) is exp(mean + var / 2): centred so that the long-run variance is the drawn one
    spread = eta**2 / (1 - phi**2)
    mean = np.log(_draw(rng, "annual_vol", paths) ** 2 / TRADING_DAYS) - spread / 2
    shocks = rng.standard_normal((paths, days))
    h = mean + np.sqrt(spread) * rng.standard_normal(paths)
    log_variances = np.empty((paths, days))
    for t in range(days):
        log_variances[:, t] = h
        h = mean + phi * (h - mean) + eta * shocks[:, t]
    variances = np.exp(log_variances)
    return np.sqrt(variances) * rng.standard_normal((paths, days)), variances


GENERATORS = {"garch_t": garch_t, "regime": regime, "sv": stochastic_volatility}


def synthetic_returns(paths: int, days: int, seed: int, jumps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(paths, days) daily log returns and the variance of their diffusion part, path ``i`` from
    ``PROCESSES[i % 3]``, with Poisson jumps when ``jumps``."""
    if paths < 1 or days < 2:
        raise ConfigError(f"synthetic paths need at least 1 path of 2 days, got {paths} of {days}")
    rng = np.random.default_rng(seed)
    returns, variances = np.empty((paths, days)), np.empty((paths, days))
    for k, name in enumerate(PROCESSES):
        rows = np.arange(k, paths, len(PROCESSES))
        if len(rows):
            returns[rows], variances[rows] = GENERATORS[name](rng, len(rows), days)
    if jumps:
        rate, size = _draw(rng, "jump_rate", paths)[:, None], _draw(rng, "jump_std", paths)[:, None]
        returns += (rng.uniform(size=(paths, days)) < rate) * size * rng.standard_normal((paths, days))
    return returns, variances


def intraday_extremes(
    rng: np.random.Generator, returns: np.ndarray, variances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The log high and low of each day over its previous close: a Brownian bridge to its return."""
    steps = INTRADAY_STEPS
    walk = np.cumsum(rng.standard_normal((*returns.shape, steps)), axis=-1) * np.sqrt(variances / steps)[..., None]
    fraction = np.arange(1, steps + 1) / steps
    bridge = walk - fraction * walk[..., -1:] + fraction * returns[..., None]  # ends at the day's return
    return np.maximum(bridge.max(axis=-1), 0.0), np.minimum(bridge.min(axis=-1), 0.0)


def synthetic_series(
    paths: int, days: int, features: Sequence[str], horizon: int, seed: int, jumps: bool = True
) -> list[Series]:
    """``paths`` synthetic tickers of ``days`` rows each, with ``features`` and targets as ``build_series``
    makes them from prices (closes starting at 100)."""
    names = check_features(features)
    if "volume" in names:
        raise ConfigError(f"synthetic paths have no volume: features {','.join(names)} cannot be pretrained on them")
    returns, variances = synthetic_returns(paths, days + 1, seed, jumps)
    high, low = intraday_extremes(np.random.default_rng([seed, 1]), returns, variances)
    log_close = np.log(100.0) + np.cumsum(returns, axis=1)
    dates = pd.bdate_range(FIRST_DAY, periods=days + 1).to_numpy()
    out = []
    for i in range(paths):
        close = np.exp(log_close[i])
        previous = np.exp(log_close[i, :-1])
        # a day's high and low sit around the previous close (its open): row t reads bar t
        feats = bar_features(
            names, close[1:], previous, np.exp(log_close[i, :-1] + high[i, 1:]), np.exp(log_close[i, :-1] + low[i, 1:])
        )
        out.append(Series(f"synthetic-{i}", dates[1:], close[1:], feats, cumulative_targets(feats[:, 0], horizon)))
    return out
