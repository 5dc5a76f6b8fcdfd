"""Batches of ``TrainingData`` for either mode.

A ``Batch`` is ``(x, y, reset, targets)``: scaled inputs (B, T, F), scaled
targets (B, S, H) of the last S <= T steps with NaN wherever no loss is due,
whether to start from a zero state, and the finite targets of the whole step
over every process (``Batch.targets``). With that, one training loop serves
both modes, and both score exactly the same rows: every training row of every
ticker from its row ``first_row`` on (the burn-in before it has too little
history for either mode).

- ``StreamBatches`` (latent): each ticker's training rows, cut into pieces of
  at most ``rows / streams`` rows, become contiguous streams read ``bptt``
  steps at a time, the state flowing along each stream. A piece re-reads the
  ``first_row`` rows before it as warm-up (no loss): every row after a
  ticker's burn-in carries a loss once per epoch, however many tickers and
  however long or short. Each epoch shifts the chunk boundaries by a random
  phase drawn from the epoch's rng.
- A model whose variance reads the range or the returns (``range_or_returns``)
  learns from closes as from bars: each piece (latent) or window (ar) of an
  epoch is read with its ranges not sent (NaN) with probability ``DROPPED``,
  drawn from the epoch's rng, and validation reads every ticker both ways.
- ``WindowBatches`` (ar): windows of ``window`` steps ending at every scored
  row in random order (or ``windows_per_epoch`` of them), each from a zero
  state, loss on the last step only: its targets are those of that step
  (S = 1), so the model forecasts after it alone.

Validation batches cover the validation span in the same way for both modes
(the latent model reads each ticker from its first row), so validation losses
of the two modes are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from data.features import mask_after, windows
from latentcast.errors import DataError
from models.config import ModelConfig
from training.config import TrainConfig
from training.dataset import TrainingData
from training.distributed import Shard

# The chance that a range_or_returns model reads a piece or window of an epoch as closes only: each kind
# half the steps, as validation weighs them
DROPPED = 0.5


@dataclass(frozen=True)
class Batch:
    x: Tensor  # (B, T, F) scaled inputs
    y: Tensor  # (B, S, H) scaled targets of the last S <= T steps (all T in latent, 1 in ar), NaN where no loss is due
    reset: bool  # start from a zero state instead of the previous batch's state
    # finite targets of the step's whole batch, every process's shard together (a validation batch is not
    # shared: its own): the divisor of the step's mean loss, known to each process without asking the others
    targets: int


class BatchSource(Protocol):
    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]: ...

    def validation(self) -> Iterator[Batch]: ...

    @property
    def train_rows(self) -> int:
        """Distinct training rows that carry a loss in one epoch."""
        ...

    @property
    def validation_rows(self) -> int:
        """Validation rows that carry a loss."""
        ...


def first_scored_row(config: ModelConfig, train: TrainConfig) -> int:
    """The first row of each ticker that carries a loss, the same in both modes.

    Row ``window - 1`` is the first with a full ar window, ``burn_in`` the first
    whose latent state has seen enough history: both modes start at the later one.
    """
    return max(train.burn_in, config.window - 1)


def batches_for(config: ModelConfig, data: TrainingData, train: TrainConfig, shard: Shard | None = None) -> BatchSource:
    """The batch source that trains ``config.mode``, reading ``shard`` of every batch (default: all of it)."""
    first_row = first_scored_row(config, train)
    if config.mode == "latent":
        return StreamBatches(data, train, first_row, shard or Shard(), config.raw_columns, config.ranges_optional)
    return WindowBatches(
        data, config.window, train, first_row, shard or Shard(), config.raw_columns, config.ranges_optional
    )


def _scored(y: np.ndarray) -> int:
    """Rows of (T, H) targets with at least one finite entry."""
    return int(np.isfinite(y).any(axis=-1).sum())


@dataclass(frozen=True)
class _Rows:
    """One ticker's scaled rows with the targets each split may see.

    ``y_train`` holds NaN before the first scored row and wherever a target
    reads a validation price; ``y_valid`` NaN outside the validation span and
    wherever a target reads a test price.
    """

    x: np.ndarray  # (T, F)
    y_train: np.ndarray  # (valid, H)
    y_valid: np.ndarray  # (test, H)
    valid: int  # first validation row
    test: int  # first test row


def _rows(data: TrainingData, first_row: int, raw_columns: int, closes_too: bool = False) -> list[_Rows]:
    """Every ticker's rows; with ``closes_too`` each also once more with its ranges not sent (NaN): what a
    range_or_returns model validates on."""
    out = []
    for series in data.series:
        valid, test = data.split.bounds(series)
        x, y = data.scaled(series, raw_columns)
        y_train, y_valid = mask_after(y, valid), mask_after(y, test)
        y_train[:first_row] = np.nan
        y_valid[: max(valid, first_row)] = np.nan
        out.append(_Rows(x, y_train, y_valid, valid, test))
        if closes_too:
            closes = x.copy()
            closes[:, 1] = np.nan
            out.append(_Rows(closes, y_train, y_valid, valid, test))
    return out


class StreamBatches:
    """Contiguous streams for truncated BPTT (latent mode)."""

    def __init__(
        self,
        data: TrainingData,
        train: TrainConfig,
        first_row: int,
        shard: Shard,
        raw_columns: int = 0,
        drop_ranges: bool = False,
    ) -> None:
        self.bptt, self.first_row, self.group, self.shard = train.bptt, first_row, train.batch_size, shard
        self.rows = _rows(data, first_row, raw_columns)
        self.drop_ranges = drop_ranges
        self.valid_rows = _rows(data, first_row, raw_columns, drop_ranges)  # both ways when ranges are dropped
        self.train_rows = sum(_scored(r.y_train) for r in self.rows)
        self.validation_rows = sum(_scored(r.y_valid) for r in self.valid_rows)
        self.finite = [np.isfinite(r.y_train).sum(axis=-1) for r in self.rows]  # (valid,) targets of each row
        if self.train_rows == 0:
            raise DataError(f"no training rows after the burn-in of {first_row} rows of each ticker")
        # at least ``streams`` pieces: a long ticker is cut, a short one is a piece of its own
        self.piece = math.ceil(sum(max(r.valid - first_row, 0) for r in self.rows) / train.streams)
        if len(self._segments(0)) < shard.count:
            raise DataError(f"{len(self._segments(0))} streams cannot be shared by {shard.count} processes")

    def _segments(self, phase: int) -> list[tuple[int, int, int, int]]:
        """(ticker, first row read, first row scored, end) of every piece."""
        out = []
        for i, rows in enumerate(self.rows):
            for start in range(self.first_row, rows.valid, self.piece):
                out.append((i, start - self.first_row - phase, start, min(start + self.piece, rows.valid)))
        return out

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        """Chunks of every stream in time order; the state flows from one to the next.

        One piece per stream; a piece shorter than the longest is padded at its
        end with rows that carry no loss. The phase pads the start of a
        ticker's first piece (or lengthens a later piece's warm-up), so the
        chunk boundaries fall on other rows each epoch.
        """
        phase = int(rng.integers(self.bptt))
        every = self._segments(phase)
        # the length of every process's chunks is that of the longest piece of all: all take as many steps
        length = math.ceil(max(stop - lead for _, lead, _, stop in every) / self.bptt) * self.bptt
        segments = self.shard.take(every)
        # the targets of every piece, not only this shard's, so each step's count is that of the whole batch
        targets = np.zeros(length, dtype=np.int64)
        for i, lead, start, stop in every:
            targets[start - lead : stop - lead] += self.finite[i][start:stop]
        per_step = targets.reshape(-1, self.bptt).sum(axis=1)
        features, horizon = self.rows[0].x.shape[1], self.rows[0].y_train.shape[1]
        x = np.zeros((len(segments), length, features), dtype=np.float32)
        y = np.full((len(segments), length, horizon), np.nan, dtype=np.float32)
        for b, (i, lead, start, stop) in enumerate(segments):
            # row r of the ticker sits at step r - lead; steps before its first row stay zero (the scaled mean)
            begin = max(lead, 0)
            x[b, begin - lead : stop - lead] = self.rows[i].x[begin:stop]
            # the warm-up before ``start`` is read, not scored: another piece scores it
            y[b, start - lead : stop - lead] = self.rows[i].y_train[start:stop]
        if self.drop_ranges:  # every process draws every piece's, so that their rngs stay one
            dropped = self.shard.take((rng.random(len(every)) < DROPPED).tolist())
            x[np.flatnonzero(dropped), :, 1] = np.nan
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for step, start in enumerate(range(0, length, self.bptt)):
            stop = start + self.bptt
            yield Batch(xt[:, start:stop], yt[:, start:stop], reset=start == 0, targets=int(per_step[step]))

    def validation(self) -> Iterator[Batch]:
        """Each ticker read from its first row; loss on validation rows only.

        Up to ``batch_size`` tickers at a time, each padded at its end (the model
        is causal: what follows a row never changes its forecast).
        """
        scored = self.shard.take([r for r in self.valid_rows if _scored(r.y_valid)])
        for first in range(0, len(scored), self.group):
            group = scored[first : first + self.group]
            length = max(r.test for r in group)
            x = np.zeros((len(group), length, group[0].x.shape[1]), dtype=np.float32)
            y = np.full((len(group), length, group[0].y_valid.shape[1]), np.nan, dtype=np.float32)
            for b, rows in enumerate(group):
                x[b, : rows.test], y[b, : rows.test] = rows.x[: rows.test], rows.y_valid
            yield Batch(torch.from_numpy(x), torch.from_numpy(y), reset=True, targets=int(np.isfinite(y).sum()))


class WindowBatches:
    """Fixed-length windows from a zero state, in random order (ar mode)."""

    def __init__(
        self,
        data: TrainingData,
        window: int,
        train: TrainConfig,
        first_row: int,
        shard: Shard,
        raw_columns: int = 0,
        drop_ranges: bool = False,
    ) -> None:
        if first_row < window - 1:
            raise DataError(f"first scored row {first_row} comes before the first full window of {window} rows")
        if train.batch_size < shard.count:
            raise DataError(f"batches of {train.batch_size} windows cannot be shared by {shard.count} processes")
        self.window, self.train, self.shard = window, train, shard
        self.rows = _rows(data, first_row, raw_columns)
        self.drop_ranges = drop_ranges
        self.valid_rows = _rows(data, first_row, raw_columns, drop_ranges)  # both ways when ranges are dropped
        train_ends = [np.flatnonzero(np.isfinite(r.y_train).any(axis=-1)) for r in self.rows]
        self.valid_ends = [np.flatnonzero(np.isfinite(r.y_valid).any(axis=-1)) for r in self.valid_rows]
        self.owner = np.concatenate([np.full(len(e), i) for i, e in enumerate(train_ends)])
        self.ends = np.concatenate(train_ends)
        self.finite = np.concatenate(
            [np.isfinite(r.y_train[e]).sum(axis=-1) for r, e in zip(self.rows, train_ends, strict=True)]
        )  # the targets of the window at each end
        if len(self.ends) == 0:
            raise DataError(f"too few training rows for windows of {window} steps")
        cap = train.windows_per_epoch
        self.train_rows = len(self.ends) if cap is None else min(cap, len(self.ends))
        self.validation_rows = sum(len(e) for e in self.valid_ends)

    def _windows(self, x: np.ndarray, y: np.ndarray, ends: np.ndarray) -> tuple[Tensor, Tensor]:
        inputs = windows(x, ends, self.window)  # (N, W, F)
        targets = y[ends][:, None]  # (N, 1, H): the ar model is scored at the end of its window only
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        chosen = rng.permutation(len(self.ends))[: self.train_rows]
        for start in range(0, len(chosen), self.train.batch_size):
            batch = np.sort(chosen[start : start + self.train.batch_size])
            # every process draws the whole batch's, so that their rngs stay one
            dropped = rng.random(len(batch)) < DROPPED if self.drop_ranges else None
            picks = batch[self.shard.rank :: self.shard.count]
            targets = int(self.finite[batch].sum())
            if len(picks) == 0:
                # a last batch of fewer windows than processes: every process must still take the step
                # (DDP's all-reduce waits for all), so this one reads a window that carries no loss
                rows = self.rows[self.owner[batch[0]]]
                x, y = self._windows(rows.x, rows.y_train, self.ends[batch[:1]])
                yield Batch(x, torch.full_like(y, math.nan), reset=True, targets=targets)
                continue
            parts = [
                self._windows(self.rows[i].x, self.rows[i].y_train, self.ends[picks[self.owner[picks] == i]])
                for i in np.unique(self.owner[picks])
            ]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            if dropped is not None:  # the parts hold the picks ticker by ticker
                owners = self.owner[picks]
                order = np.concatenate([np.flatnonzero(owners == i) for i in np.unique(owners)])
                x[torch.from_numpy(dropped[self.shard.rank :: self.shard.count][order]), :, 1] = math.nan
            yield Batch(x, y, reset=True, targets=targets)

    def validation(self) -> Iterator[Batch]:
        for rows, ends in self.shard.take(list(zip(self.valid_rows, self.valid_ends, strict=True))):
            if len(ends):
                inputs, targets = self._windows(rows.x, rows.y_valid, ends)
                yield Batch(inputs, targets, reset=True, targets=int(torch.isfinite(targets).sum()))
