"""Training data: every ticker's series, their chronological split and the train-only scaler.

``TrainingData`` is what both modes train on; ``training/batches.py`` serves it
as batches. ``first_unseen_day`` reads, from a registered model's data span,
the first day it never saw (a retrain's newest prices start there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from data.feature_cache import FeatureCache, FeatureSpec
from data.features import (
    DEFAULT_FRACTIONS,
    Scaler,
    Series,
    Split,
    check_features,
    fit_scaler,
    split_dates,
)
from data.universe import frame_series


@dataclass(frozen=True)
class TrainingData:
    """Series of every ticker, their chronological split and the train-only scaler."""

    series: list[Series]
    split: Split
    scaler: Scaler
    horizon: int

    @classmethod
    def prepare(
        cls,
        frame: pd.DataFrame,
        features: Sequence[str],
        horizon: int,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        split: Callable[[Sequence[Series]], Split] | None = None,
        cache: FeatureCache | None = None,
    ) -> TrainingData:
        """Build features and targets (each ticker's from ``cache`` when given), then ``from_series``."""
        spec = FeatureSpec(check_features(features), horizon)
        return cls.from_series(frame_series(frame, spec, cache), spec.names, horizon, fractions, split)

    @classmethod
    def from_series(
        cls,
        series: list[Series],
        features: Sequence[str],
        horizon: int,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        split: Callable[[Sequence[Series]], Split] | None = None,
    ) -> TrainingData:
        """Split ``series`` by date and fit the scaler on training rows.

        ``split`` picks the cut (``recent_split``, ``through_end``); without it the
        pooled days are cut at ``fractions``.
        """
        names = check_features(features)
        cut = split(series) if split is not None else split_dates(series, fractions)
        return cls(series, cut, fit_scaler(series, cut, names), horizon)

    @property
    def features(self) -> tuple[str, ...]:
        return self.scaler.features

    def scaled(self, series: Series, raw_columns: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(T, F) scaled inputs and (T, H) scaled targets of one series (``Scaler.transform`` says how)."""
        x = self.scaler.transform(series.features, raw_columns)
        return x, (series.targets / self.scaler.target_scale).astype(np.float32)

    def span(self, source: str) -> dict[str, Any]:
        """What the model was trained on, saved with it."""
        first = min(s.dates[0] for s in self.series)
        last = max(s.dates[-1] for s in self.series)
        return {
            "source": source,
            "tickers": [s.ticker for s in self.series],
            "features": list(self.features),
            "first": str(np.datetime_as_string(first, unit="D")),
            "last": str(np.datetime_as_string(last, unit="D")),
            "seen_until": str(np.datetime_as_string(self.seen_until(), unit="D")),
            **self.split.to_dict(),
        }

    def seen_until(self) -> np.datetime64:
        """The newest day whose price training or validation read (early stopping reads validation)."""
        return max(s.dates[self.split.bounds(s)[1] - 1] for s in self.series if self.split.bounds(s)[1] > 0)


def first_unseen_day(span: dict[str, Any]) -> np.datetime64:
    """The first day whose price a model with this data ``span`` never read in training or validation.

    A span without ``seen_until`` (an older version) is bounded by its test
    start; one without either is taken to have read every day it lists.
    """
    if "seen_until" in span:
        return np.datetime64(span["seen_until"]) + np.timedelta64(1, "D")
    if "test_start" in span:
        return np.datetime64(span["test_start"])
    return np.datetime64(span.get("last", "9999-12-31")) + np.timedelta64(1, "D")
