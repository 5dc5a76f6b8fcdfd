"""From prices to model inputs and targets: features, scaler, splits, batches.

Row ``t`` of a series is the trading day ``t`` (the first day of each ticker is
dropped: it has no return). Its inputs use bars ``t-1`` and ``t`` only:

- ``returns``: log(close_t / close_{t-1}), the target variable;
- ``range``:   log(high_t / low_t), a volatility proxy; NaN on a day without
  its high or low (a model whose variance reads ``range_or_returns`` takes
  such days; the others need every day's);
- ``volume``:  log((volume_t + 1) / (volume_{t-1} + 1)).

Its targets are, for h = 1..H, the cumulative log return from t to t+h,
log(close_{t+h} / close_t). The same function computes the features for a whole
history and for one new observation in a live session, so both agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from latentcast.errors import ConfigError, DataError

FEATURES = ("returns", "range", "volume")
# Closes alone, so that a client can send bare prices; add "range" for bars.
DEFAULT_FEATURES = ("returns",)
FIELDS_NEEDED = {"returns": ("close",), "range": ("high", "low"), "volume": ("volume",)}
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
# Training stds: far beyond any real return, yet small enough that its square stays finite in float32.
RAW_RETURN_BOUND = 1e6


def check_features(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a feature list: known names, no repeats, ``returns`` first."""
    names = tuple(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature {unknown[0]!r}; valid features: {', '.join(FEATURES)}")
    if not names or names[0] != "returns" or len(set(names)) != len(names):
        raise ConfigError(f"features must start with 'returns' and not repeat, got {list(names)}")
    return names


def fields_needed(names: Sequence[str]) -> tuple[str, ...]:
    """The observation fields (close, high, low, volume) that ``names`` read."""
    needed: list[str] = []
    for name in names:
        needed += [f for f in FIELDS_NEEDED[name] if f not in needed]
    return tuple(needed)


def feature_rows(
    names: Sequence[str],
    close: np.ndarray,
    prev_close: float,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
    volume: np.ndarray | None = None,
    prev_volume: float | None = None,
) -> np.ndarray:
    """Features of ``len(close)`` consecutive bars, given the bar before them.

    Returns an array of shape (T, F), F = len(names), float64.
    """
    close = np.asarray(close, dtype=np.float64)
    previous = np.concatenate([[prev_close], close[:-1]])
    prev_vol = None
    if volume is not None and prev_volume is not None:
        volume = np.asarray(volume, dtype=np.float64)
        prev_vol = np.concatenate([[prev_volume], volume[:-1]])
    return bar_features(names, close, previous, high, low, volume, prev_vol)


def bar_features(
    names: Sequence[str],
    close: np.ndarray,
    prev_close: np.ndarray,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
    volume: np.ndarray | None = None,
    prev_volume: np.ndarray | None = None,
) -> np.ndarray:
    """Features of N bars, each given the bar before it: (N,) arrays -> (N, F) float64.

    The bars may follow one another (``feature_rows``) or be the newest bars of
    N streams (a batch of live sessions): the arithmetic is the same.
    """
    out = np.empty((len(close), len(names)))
    # A ratio of two extreme prices (1e-300 after 1e300) overflows to 0 or inf and its log to
    # -inf or inf: the scaler clips those, so they are expected values, not warnings.
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        for j, name in enumerate(names):
            # written in place: np.stack costs more than the arithmetic for a batch of one bar
            if name == "returns":
                np.log(np.divide(close, prev_close, dtype=np.float64), out=out[:, j])
            elif name == "range":
                assert high is not None and low is not None
                np.log(np.divide(high, low, dtype=np.float64), out=out[:, j])
            else:
                assert volume is not None and prev_volume is not None
                np.subtract(np.log1p(volume, dtype=np.float64), np.log1p(prev_volume, dtype=np.float64), out=out[:, j])
    return out


def cumulative_targets(returns: np.ndarray, horizon: int) -> np.ndarray:
    """(T,) log returns -> (T, H) sums of the next 1..H returns; NaN past the end."""
    padded = np.concatenate([[0.0], np.cumsum(returns)])
    out = np.full((len(returns), horizon), np.nan)
    for h in range(1, horizon + 1):
        out[: len(returns) - h, h - 1] = padded[1 + h :] - padded[1 : len(returns) + 1 - h]
    return out


@dataclass(frozen=True)
class Series:
    """One ticker's rows: dates, adjusted close, raw features and targets."""

    ticker: str
    dates: np.ndarray  # (T,) datetime64[ns]
    close: np.ndarray  # (T,) adjusted close of day t
    features: np.ndarray  # (T, F) unscaled
    targets: np.ndarray  # (T, H) unscaled cumulative log returns, NaN past the end

    def __len__(self) -> int:
        return len(self.dates)


def without_ranges(series: Series) -> Series:
    """``series`` with every day's range not sent (NaN, column 1): what a session of closes only gives."""
    features = series.features.copy()
    features[:, 1] = np.nan
    return Series(series.ticker, series.dates, series.close, features, series.targets)


def columns_needed(names: Sequence[str]) -> str:
    """The price columns ``names`` read, for an error message: ``date, close, high, low``."""
    return ", ".join(("date", *fields_needed(names)))


def build_series(frame: pd.DataFrame, names: Sequence[str], horizon: int) -> list[Series]:
    """Features and targets for every ticker of a tidy frame, ticker order kept.

    ``DataError`` when a ticker lacks a column the features read (a source
    without it leaves it empty: ``data.prices``), naming the columns they need.
    """
    names = check_features(names)
    out = []
    for ticker, rows in frame.groupby("ticker", sort=True):
        if len(rows) < 2:
            raise DataError(f"{ticker}: too few rows, {len(rows)} < 2 needed (one return)")
        lacking = [f for f in fields_needed(names) if rows[f].isna().all()]
        if lacking:
            raise DataError(
                f"{ticker}: no {', '.join(lacking)} in the prices; features {','.join(names)} need the columns "
                f"{columns_needed(names)} (features returns alone need date, close)"
            )
        close = rows["close"].to_numpy(np.float64)
        volume = rows["volume"].to_numpy(np.float64)
        feats = feature_rows(
            names,
            close[1:],
            close[0],
            high=rows["high"].to_numpy(np.float64)[1:],
            low=rows["low"].to_numpy(np.float64)[1:],
            volume=volume[1:],
            prev_volume=volume[0],
        )
        out.append(
            Series(
                ticker=str(ticker),
                dates=rows["date"].to_numpy()[1:],
                close=close[1:],
                features=feats,
                targets=cumulative_targets(feats[:, 0], horizon),
            )
        )
    return out


@dataclass(frozen=True)
class Split:
    """Chronological split by date: train < validation_start <= val < test_start <= test."""

    validation_start: np.datetime64
    test_start: np.datetime64

    def bounds(self, series: Series) -> tuple[int, int]:
        """Row indices (validation_start, test_start) within ``series``."""
        v = int(np.searchsorted(series.dates, self.validation_start))
        t = int(np.searchsorted(series.dates, self.test_start))
        return v, t

    def to_dict(self) -> dict[str, str]:
        return {
            "validation_start": str(np.datetime_as_string(self.validation_start, unit="D")),
            "test_start": str(np.datetime_as_string(self.test_start, unit="D")),
        }


def split_dates(series: Sequence[Series], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> Split:
    """Cut the pooled trading days at the given fractions (default 70/15/15)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    days = np.unique(np.concatenate([s.dates for s in series]))
    if len(days) < 3:
        raise DataError(f"too few trading days to split: {len(days)}")
    v = max(1, round(len(days) * fractions[0]))
    t = max(v + 1, round(len(days) * (fractions[0] + fractions[1])))
    return Split(days[v], days[min(t, len(days) - 1)])


def recent_split(series: Sequence[Series], holdout_days: int) -> Split:
    """Hold out the newest ``holdout_days`` pooled trading days, validate on the ones before.

    Training is everything older: a retrain learns from all but the newest
    ``2 * holdout_days`` days, and its verdict rests on the newest ones.
    """
    if holdout_days < 1:
        raise ConfigError(f"holdout_days must be at least 1, got {holdout_days}")
    days = np.unique(np.concatenate([s.dates for s in series]))
    if len(days) <= 2 * holdout_days + 1:
        raise DataError(
            f"too few trading days for a holdout and a validation of {holdout_days} days each: "
            f"{len(days)} <= {2 * holdout_days + 1}"
        )
    return Split(days[-2 * holdout_days], days[-holdout_days])


def through_end(series: Sequence[Series]) -> Split:
    """A split with every row in training: a refit through the newest price, no validation."""
    last = max(s.dates[-1] for s in series)
    after = last + np.timedelta64(1, "D")
    return Split(after, after)


@dataclass
class Scaler:
    """Standardises features; scales targets by the std of training returns.

    Fit on training rows only. Scaled inputs are clipped to ``±clip`` so that a
    freak day (a zero-volume print, a bad tick) cannot blow up the state.
    """

    features: tuple[str, ...]
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))
    target_scale: float = 1.0
    clip: float = 10.0

    @classmethod
    def fit(cls, rows: np.ndarray, features: Sequence[str], clip: float = 10.0) -> Scaler:
        """Fit on (N, F) unscaled training rows; NaN (a range not sent) is left out of its column's moments."""
        if len(rows) < 2:
            raise DataError(f"cannot fit a scaler on {len(rows)} rows")
        seen = (~np.isnan(rows)).sum(axis=0)
        if (seen < 2).any():
            lacking = features[int(np.argmax(seen < 2))]
            raise DataError(f"cannot fit a scaler: feature {lacking!r} has fewer than 2 values")
        std = np.nanstd(rows, axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(features), np.nanmean(rows, axis=0), std, float(std[0]), clip)

    def transform(self, rows: np.ndarray, raw_columns: int = 0) -> np.ndarray:
        """(..., F) unscaled -> (..., F) float32 scaled and clipped.

        For a volatility-scaled model the returns (column 0) are only divided by
        ``target_scale``, neither centred nor clipped: the model divides them by
        their own volatility and clips them then, so that a series with every
        return multiplied by k reads the same. ``raw_columns``: how many leading
        columns are so treated (``ModelConfig.raw_columns``: 1 the returns, 2
        the returns and the range of a model whose variance reads it; a bool
        reads as 0 or 1). NaN (a range not sent) stays NaN.
        """
        if rows.ndim == 2 and rows.shape[0] == 1 and rows.dtype == np.float64:
            return self._transform_row(rows[0].tolist(), raw_columns)
        scaled = (rows - self.mean) / self.std
        # np.clip's dispatch costs twice the two ufuncs it stands for, at every request
        np.maximum(scaled, -self.clip, out=scaled)
        out = np.minimum(scaled, self.clip, out=scaled).astype(np.float32)
        if raw_columns:
            moves = rows[..., :raw_columns] / self.target_scale
            out[..., :raw_columns] = np.minimum(np.maximum(moves, -RAW_RETURN_BOUND), RAW_RETURN_BOUND)
        return out

    def _transform_row(self, row: list[float], raw_columns: int) -> np.ndarray:
        """``transform`` of one row (a lone append's), (1, F) float32: numpy's fixed cost per call exceeds the
        work, and Python's float arithmetic rounds as numpy's does; ``max`` and ``min`` keep a NaN first."""
        moments = zip(row, self.mean.tolist(), self.std.tolist(), strict=True)
        out = [min(max((value - mean) / std, -self.clip), self.clip) for value, mean, std in moments]
        for j in range(raw_columns):
            out[j] = min(max(row[j] / self.target_scale, -RAW_RETURN_BOUND), RAW_RETURN_BOUND)
        return np.array([out], np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "target_scale": self.target_scale,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scaler:
        try:
            features = check_features(raw["features"])
            mean = np.asarray(raw["mean"], dtype=np.float64)
            std = np.asarray(raw["std"], dtype=np.float64)
            scale, clip = float(raw["target_scale"]), float(raw["clip"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed scaler: {exc}") from exc
        if mean.shape != (len(features),) or std.shape != mean.shape or (std <= 0).any() or scale <= 0:
            raise ConfigError("malformed scaler: mean/std do not match the features or are not positive")
        return cls(features, mean, std, scale, clip)


def fit_scaler(series: Sequence[Series], split: Split, features: Sequence[str]) -> Scaler:
    """A scaler fit on the rows before ``split.validation_start`` of every series."""
    rows = [s.features[: split.bounds(s)[0]] for s in series]
    return Scaler.fit(np.concatenate(rows), features)


def mask_after(targets: np.ndarray, stop: int) -> np.ndarray:
    """Targets of rows [0, stop) with every entry reaching row ``stop`` or later set to NaN.

    A training target must not read a validation price: row t's horizon h needs
    row t+h, so it is kept only when t + h < stop.
    """
    out = targets[:stop].copy()
    for h in range(1, out.shape[1] + 1):
        out[max(stop - h, 0) :, h - 1] = np.nan
    return out


def window_ends(start: int, stop: int, window: int) -> np.ndarray:
    """Indices t in [start, stop) that have ``window`` rows ending at t (t >= window - 1)."""
    return np.arange(max(start, window - 1), stop)


def windows(x: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """(T, F) and window ends (N,) -> (N, window, F), rows ends-window+1 .. ends."""
    offsets = np.arange(-window + 1, 1)
    return x[ends[:, None] + offsets[None, :]]
