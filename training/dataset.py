"""Training data: series, split and scaler, served as batches for either mode.

A ``Batch`` is ``(x, y, reset)``: scaled inputs (B, T, F), scaled targets
(B, T, H) with NaN wherever no loss is due, and whether to start from a zero
state. With that, one training loop serves both modes:

- ``StreamBatches`` (latent): each ticker's training span is cut into
  contiguous streams (``batchify``) read ``bptt`` steps at a time; only the
  first chunk of an epoch resets, so the state flows along each stream.
- ``WindowBatches`` (ar): random windows of ``window`` steps, every batch
  from a zero state, loss on the last step only.

Validation batches cover the validation span in the same way for both modes
(the latent model reads each ticker from its first row), so validation losses
of the two modes are comparable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from data.errors import DataError
from data.features import (
    DEFAULT_FRACTIONS,
    Scaler,
    Series,
    Split,
    batchify,
    build_series,
    check_features,
    fit_scaler,
    mask_after,
    split_dates,
    window_ends,
    windows,
)
from models.config import ModelConfig
from training.config import TrainConfig


@dataclass(frozen=True)
class Batch:
    x: Tensor  # (B, T, F) scaled inputs
    y: Tensor  # (B, T, H) scaled targets, NaN where no loss is due
    reset: bool  # start from a zero state instead of the previous batch's state


class BatchSource(Protocol):
    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]: ...

    def validation(self) -> Iterator[Batch]: ...


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
    ) -> TrainingData:
        """Build features and targets, split by date, fit the scaler on training rows."""
        names = check_features(features)
        series = build_series(frame, names, horizon)
        split = split_dates(series, fractions)
        return cls(series, split, fit_scaler(series, split, names), horizon)

    @property
    def features(self) -> tuple[str, ...]:
        return self.scaler.features

    def scaled(self, series: Series, volatility_scaled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(T, F) scaled inputs and (T, H) scaled targets of one series (``Scaler.transform`` says how)."""
        x = self.scaler.transform(series.features, volatility_scaled)
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
            **self.split.to_dict(),
        }


def batches_for(config: ModelConfig, data: TrainingData, train: TrainConfig) -> BatchSource:
    """The batch source that trains ``config.mode``."""
    if config.mode == "latent":
        return StreamBatches(data, train, config.volatility_scaled)
    return WindowBatches(data, config.window, train, config.volatility_scaled)


class StreamBatches:
    """Contiguous streams for truncated BPTT (latent mode)."""

    def __init__(self, data: TrainingData, train: TrainConfig, volatility_scaled: bool = False) -> None:
        self.data, self.bptt, self.volatility_scaled = data, train.bptt, volatility_scaled
        parts = [self._training_part(s) for s in data.series]
        total = sum(len(x) for x, _ in parts)
        length = max(train.bptt, total // train.streams)
        xs, ys = [], []
        for x, y in parts:
            xs.append(batchify(x, length))
            stream_y = batchify(y, length).copy()
            stream_y[:, : train.burn_in] = np.nan
            ys.append(stream_y)
        self.x, self.y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
        if len(self.x) == 0:
            raise DataError(f"too few training rows for streams of {length} steps")

    def _training_part(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        stop, _ = self.data.split.bounds(series)
        x, y = self.data.scaled(series, self.volatility_scaled)
        return x[:stop], mask_after(y, stop)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        """Chunks of every stream in time order; the state flows from one to the next."""
        for start in range(0, self.x.shape[1], self.bptt):
            stop = start + self.bptt
            yield Batch(self.x[:, start:stop], self.y[:, start:stop], reset=start == 0)

    def validation(self) -> Iterator[Batch]:
        """Each ticker read from its first row; loss on validation rows only."""
        for series in self.data.series:
            valid, test = self.data.split.bounds(series)
            if test <= valid:
                continue
            x, y = self.data.scaled(series, self.volatility_scaled)
            y = mask_after(y, test)
            y[:valid] = np.nan
            yield Batch(torch.from_numpy(x[:test])[None], torch.from_numpy(y)[None], reset=True)


@dataclass(frozen=True)
class _Rows:
    """One ticker's scaled rows with the targets each split may see."""

    x: np.ndarray  # (T, F)
    y_train: np.ndarray  # (valid, H): no target reads a validation price
    y_valid: np.ndarray  # (test, H): no target reads a test price
    train_ends: np.ndarray  # window ends in the training span
    valid_ends: np.ndarray  # window ends in the validation span


class WindowBatches:
    """Random fixed-length windows from a zero state (ar mode)."""

    def __init__(self, data: TrainingData, window: int, train: TrainConfig, volatility_scaled: bool = False) -> None:
        self.window, self.train = window, train
        self.rows = []
        for series in data.series:
            valid, test = data.split.bounds(series)
            x, y = data.scaled(series, volatility_scaled)
            self.rows.append(
                _Rows(
                    x,
                    mask_after(y, valid),
                    mask_after(y, test),
                    window_ends(0, valid, window),
                    window_ends(valid, test, window),
                )
            )
        self.owner = np.concatenate([np.full(len(r.train_ends), i) for i, r in enumerate(self.rows)])
        self.ends = np.concatenate([r.train_ends for r in self.rows])
        if len(self.ends) == 0:
            raise DataError(f"too few training rows for windows of {window} steps")

    def _windows(self, x: np.ndarray, y: np.ndarray, ends: np.ndarray) -> tuple[Tensor, Tensor]:
        inputs = windows(x, ends, self.window)  # (N, W, F)
        targets = np.full((len(ends), self.window, y.shape[1]), np.nan, dtype=np.float32)
        targets[:, -1] = y[ends]  # the ar model is scored at the end of its window only
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        chosen = rng.permutation(len(self.ends))[: self.train.windows_per_epoch]
        for start in range(0, len(chosen), self.train.batch_size):
            picks = chosen[start : start + self.train.batch_size]
            parts = [
                self._windows(self.rows[i].x, self.rows[i].y_train, self.ends[picks[self.owner[picks] == i]])
                for i in np.unique(self.owner[picks])
            ]
            yield Batch(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), reset=True)

    def validation(self) -> Iterator[Batch]:
        for rows in self.rows:
            if len(rows.valid_ends):
                inputs, targets = self._windows(rows.x, rows.y_valid, rows.valid_ends)
                yield Batch(inputs, targets, reset=True)
